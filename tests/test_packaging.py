"""Packaging: a regular install ships every module, and the repo root shadows no installed package.

`janus_rt` is mapped from the top-level folders (setup.py): runtime/ is `janus_rt`, export/ and bench/ are
`janus_rt.export` and `janus_rt.bench`, and kernels/ is `janus_rt.kernels`, a namespace package reached through
the link runtime/kernels. Under `python -m pytest` or `python -c` the repo root is on sys.path, so a top-level
folder that is a regular package (an `__init__.py`) would be found before a third-party package of the same name:
kernels/ once shadowed PyPI's `kernels`, which transformers imports, and every oracle test errored.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from oracle import installed

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[1]
# source folder -> where its modules land in the wheel (runtime/kernels is the link to kernels/, not walked twice)
ROOTS = {"runtime": "janus_rt", "kernels": "janus_rt/kernels", "export": "janus_rt/export", "bench": "janus_rt/bench"}

FIND_SPECS = """
import importlib.util, json, sys
found = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    found[name] = None if spec is None else (spec.origin, list(spec.submodule_search_locations or []))
print(json.dumps(found))
"""


def in_checkout(path: Path) -> bool:
    """A file of this checkout itself (a virtual environment made inside the checkout, `.venv/`, is not)."""
    resolved = path.resolve()
    return resolved.is_relative_to(REPO) and "site-packages" not in resolved.relative_to(REPO).parts


def source_modules() -> set[str]:
    """Every .py under the roots, as its path in the wheel."""
    expected = set()
    for folder, package in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            relative = path.relative_to(REPO / folder)
            if "__pycache__" in relative.parts or relative.parts[0] == "kernels" and folder == "runtime":
                continue
            expected.add(f"{package}/{relative.as_posix()}")
    return expected | {"janus_rt_entry.py"}  # the console command's entry, outside the package (setup.py)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                           "-w", str(out), "-q"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("janus_rt-*.whl")
    return built


def test_wheel_holds_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = source_modules()
    assert {"janus_rt/engine/__init__.py", "janus_rt/kernels/skinny_gemm.py", "janus_rt/serve/app.py"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    assert "janus_rt/kernels/__init__.py" not in names  # kernels/ stays a namespace package (module docstring)
    assert "janus_rt/serve/playground.html" in names  # package data: the page `janus-rt serve` answers at GET /


def test_the_installed_wheel_imports_the_kernels(wheel: Path, tmp_path: Path) -> None:
    """The wheel's files alone (not this checkout, not the editable install) give `janus_rt.kernels`."""
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import janus_rt, janus_rt.kernels.tuning as t; "
            "print(t.__file__)")
    # -I: neither the current folder nor PYTHONPATH on sys.path; the site packages (torch, triton) stay
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(target)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(target), proc.stdout


def test_the_repo_root_shadows_no_installed_package() -> None:
    """From the repo root (on sys.path first, as under `python -m pytest`), every installed top-level package whose
    name is also a top-level entry here is found where pip put it, not in this checkout."""
    top_level = metadata.packages_distributions()  # import name -> the distributions that provide it
    clashing = sorted(name for name in top_level if ((REPO / name).is_dir() or (REPO / f"{name}.py").is_file())
                      and set(top_level[name]) != {"janus-rt"})  # our own modules (janus_rt_entry) are meant to be here
    if "kernels" in top_level:
        assert "kernels" in clashing  # the case this test was written for is checked
    if not clashing:
        pytest.skip("no installed package shares a name with a top-level entry of the repo")
    proc = subprocess.run([sys.executable, "-c", FIND_SPECS, *clashing], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    shadowed = []
    for name, found in json.loads(proc.stdout).items():
        origin, locations = found or (None, [])
        places = [Path(p) for p in [origin, *locations] if p and Path(p).is_absolute()]
        if not places or any(in_checkout(p) for p in places):
            dists = ", ".join(f"{d} {metadata.version(d)}" for d in top_level[name])
            shadowed.append(f"`import {name}` from the repo root finds {origin or locations}, not {dists}")
    assert not shadowed, "; ".join(shadowed) + " (a top-level folder with an __init__.py shadows the installed package)"


def test_transformers_janus_imports_from_the_repo_root() -> None:
    """The oracle's import, run the way a user runs it after the README's install: `python -c` in the repo root."""
    try:
        version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        pytest.skip("transformers is not installed")
    code = ("import transformers; from transformers import JanusForConditionalGeneration; "
            "import importlib.util; s = importlib.util.find_spec('kernels'); print(s.origin if s else None)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"transformers {version} (kernels {installed('kernels')}) does not import from "
                                  f"{REPO}:\n{proc.stderr[-2000:]}")
    origin = proc.stdout.strip().splitlines()[-1]
    assert origin == "None" or not in_checkout(Path(origin)), origin
