"""Compile recorded kernel launches for a GPU target without a GPU (Triton's ahead-of-time path), as a subprocess.

    python tests/aot_compile.py LAUNCHES.json sm_80 [sm_89 ...]   -> one JSON line per (launch, target) on stdout

The launches are recorded by tests/test_kernel_compile.py from real launcher calls in the interpreter, as the
GPU JIT specializes them (types, constexprs including ints equal to 1, "D" = `tt.divisibility=16` descriptors).
This script must run with TRITON_INTERPRET unset (it sets "0" before importing triton): only then are the kernels
`JITFunction`s that `triton.compile` accepts. It may run under another Triton than the recording (PYTHONPATH at a
Triton installed aside): the descriptors are turned into attributes by this Triton's own backend, as its JIT does.
A launch whose `min_arch` is above a target (native fp8 below sm_89) is not compiled for it: no line. Each line:
key, target, ok, error (its last 500 characters), the shared memory the compiled kernel needs (bytes), which the test
compares with each GPU's per-block limit, and `hints`: the divisibility attributes on the compiled kernel's
arguments (counted in its TTIR), which must be the recorded ones.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import warnings

os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource, make_backend  # noqa: E402

HINT = re.compile(r"tt\.divisibility = 16\b")


def compile_one(launch: dict, arch: int) -> dict:
    kernel = getattr(importlib.import_module(launch["module"]), launch["kernel"])
    names = kernel.arg_names
    signature = {name: launch["signature"][name] for name in names}  # "constexpr" for every constexpr already
    constexprs = {(names.index(name),): value for name, value in launch["constexprs"].items()}
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    attrs = {(names.index(name),): backend.parse_attr(desc) for name, desc in launch["attrs"].items()}
    source = ASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=target, options=launch["options"])
    header = next(line for line in compiled.asm["ttir"].splitlines() if f"tt.func public @{launch['kernel']}" in line)
    return {"shared": int(compiled.metadata.shared), "hints": len(HINT.findall(header))}


def main(argv: list[str]) -> int:
    launches = json.loads(open(argv[0]).read())
    warnings.simplefilter("ignore")
    for target in argv[1:]:
        arch = int(target.removeprefix("sm_"))
        for launch in launches:
            if launch["min_arch"] > arch:  # a GPU this old never runs it (see the module doc)
                continue
            row = {"key": launch["key"], "target": target}
            try:
                row.update(ok=True, **compile_one(launch, arch))
            except Exception as e:  # noqa: BLE001 - reported to the test, which fails with it
                text = str(e).strip()  # a CompilationError quotes the source first, the reason last
                row.update(ok=False, error=f"{type(e).__name__}: {text if len(text) <= 500 else '...' + text[-500:]}")
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
