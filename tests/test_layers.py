"""Imports run one way (README's house style, "Layers and homes"): read from the source tree with `ast`.

Top: the CLI (janus_rt.cli) and the benchmarks (janus_rt.bench); middle: the facade (janus_rt.api), requests,
engine, server; bottom: backends, model, checkpoint, quantization, the export stage, the kernels. Checked here:
(a) no import cycle among janus_rt's modules, imports inside functions and under `if TYPE_CHECKING:` counted;
(b) the layers: only cli/ and bench/ import janus_rt.cli; nothing but bench/ imports janus_rt.bench (the CLI
loads the bench subcommands by name); the kernels import nothing of janus_rt outside janus_rt.kernels (but the version's home, which
imports nothing); the export stage never imports the facade;
(c) an import inside a function is for an optional extra or start-up time only: at most MAX_IN_FUNCTION of them,
each with a trailing `# optional extra: ...` / `# start-up time: ...` comment saying which.
Every failure names the module and the line. A last test runs `janus-rt --help` in a subprocess and checks what
it imported: no benchmark, server, quantization evaluation, FastAPI or Ray.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> the package it is (setup.py's mapping; kernels/ is reached through runtime/kernels)
ROOTS = {"runtime": "janus_rt", "export": "janus_rt.export", "bench": "janus_rt.bench", "kernels": "janus_rt.kernels"}
MAX_IN_FUNCTION = 25  # issue 19: in-function imports only for optional extras and start-up time
REASON = re.compile(r"#.*\b(optional extra|start-up time)\b")
KERNELS_MAY_IMPORT = ("janus_rt.kernels", "janus_rt.version")  # the version's home imports nothing


@dataclass(frozen=True)
class Import:
    """One `import` / `from ... import` of a janus_rt module."""

    importer: str  # dotted module name
    path: Path  # its file, relative to the repo
    line: int
    target: str  # the deepest janus_rt module the statement names
    in_function: bool
    source_line: str

    def where(self) -> str:
        return f"{self.importer} ({self.path}:{self.line}: {self.source_line.strip()})"


def modules() -> dict[str, Path]:
    """Every janus_rt module -> its file (relative to the repo)."""
    found = {}
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            if folder == "runtime" and "kernels" in path.relative_to(REPO / folder).parts:
                continue  # the link to kernels/, listed under its own root
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path.relative_to(REPO)
    return found


def _targets(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importer's package
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def imports() -> list[Import]:
    """Every import of a janus_rt module, at any depth of every janus_rt module."""
    known = modules()
    found = []
    for importer, path in known.items():
        text = (REPO / path).read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(path))

        def visit(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    best = None
                    for target in _targets(child, importer, path.name == "__init__.py"):
                        while target and target not in known:  # `from pkg import name`: the deepest module named
                            target = target.rpartition(".")[0]
                        if target and target != importer and (best is None or len(target) > len(best)):
                            best = target
                    if best is not None:
                        found.append(Import(importer, path, child.lineno, best, in_function,
                                            lines[child.lineno - 1]))
                visit(child, inside)

        visit(tree, False)
    return found


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    edge: dict[tuple[str, str], Import] = {}
    for imp in imports():
        graph.setdefault(imp.importer, set()).add(imp.target)
        edge.setdefault((imp.importer, imp.target), imp)
    # Tarjan's strongly connected components, iteratively
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    described = []
    for component in cycles:
        members = set(component)
        links = [edge[(a, b)].where() + f" -> {b}" for a in component for b in sorted(graph.get(a, ()))
                 if b in members]
        described.append("cycle " + " <-> ".join(component) + ":\n    " + "\n    ".join(links))
    assert not cycles, "janus_rt imports run in a circle:\n" + "\n".join(described)


def test_layers() -> None:
    wrong = []
    for imp in imports():
        if _under(imp.target, "janus_rt.cli") and not (_under(imp.importer, "janus_rt.cli")
                                                       or _under(imp.importer, "janus_rt.bench")):
            wrong.append(f"{imp.where()}: only the CLI and the benchmarks import janus_rt.cli (it sits on top)")
        if _under(imp.target, "janus_rt.bench") and not _under(imp.importer, "janus_rt.bench"):
            wrong.append(f"{imp.where()}: imports janus_rt.bench, which sits on top (the CLI names its subcommands "
                         "by module name and imports them only when they run)")
        if _under(imp.importer, "janus_rt.kernels") and not any(_under(imp.target, p) for p in KERNELS_MAY_IMPORT):
            wrong.append(f"{imp.where()}: a kernel imports {imp.target}; the kernels import nothing of janus_rt "
                         "outside janus_rt.kernels (their torch references live beside them)")
        if _under(imp.importer, "janus_rt.export") and (imp.target in ("janus_rt", "janus_rt.api")):
            wrong.append(f"{imp.where()}: the export stage imports the facade; it takes what it needs as "
                         "arguments (export.source.ExportSource) and janus_rt.load builds the Janus")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_in_function_imports_are_few_and_say_why() -> None:
    inside = [imp for imp in imports() if imp.in_function]
    unexplained = [imp.where() for imp in inside if not REASON.search(imp.source_line)]
    assert not unexplained, ("in-function janus_rt imports without a reason comment ('# optional extra: fastapi', "
                             "'# start-up time: triton'):\n" + "\n".join(unexplained))
    listed = "\n".join(imp.where() for imp in inside)
    assert len(inside) <= MAX_IN_FUNCTION, (f"{len(inside)} in-function janus_rt imports, at most {MAX_IN_FUNCTION} "
                                            f"(optional extras and start-up time only):\n{listed}")


HELP_MUST_NOT_IMPORT = ("janus_rt.bench", "janus_rt.serve", "janus_rt.quant.evaluate", "fastapi", "ray", "triton")


@pytest.mark.subprocess
def test_help_imports_no_subcommand() -> None:
    """`janus-rt --help` lists every subcommand without importing their modules (start-up time)."""
    script = ("import json, sys\nfrom janus_rt.cli.main import main\ntry:\n    main(['--help'])\n"
              "except SystemExit:\n    pass\nprint(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "bench-serve" in proc.stdout and "eval-quant" in proc.stdout  # every subcommand is listed
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    wrong = [m for m in loaded if any(_under(m, p) for p in HELP_MUST_NOT_IMPORT)]
    assert not wrong, f"`janus-rt --help` imported {', '.join(wrong)} (janus_rt/cli/main.py loads subcommands lazily)"
