"""Compile recorded kernel launches for a GPU target without a GPU (Triton's ahead-of-time path), as a subprocess.

    python tests/aot_compile.py LAUNCHES.json sm_80 [sm_89 ...]   -> one JSON line per (launch, target) on stdout

The launches are recorded by tests/test_kernel_compile.py from real launcher calls in the interpreter. This
script must run with TRITON_INTERPRET unset (it sets "0" before importing triton): only then are the kernels
`JITFunction`s that `triton.compile` accepts. Each line: key, target, ok, error (first 400 characters) and the
shared memory the compiled kernel needs (bytes), which the test compares with each GPU's per-block limit.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings

os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402


def compile_one(launch: dict, arch: int) -> dict:
    kernel = getattr(importlib.import_module(launch["module"]), launch["kernel"])
    names = kernel.arg_names
    signature = dict(launch["signature"])
    signature.update({name: "constexpr" for name in launch["constexprs"]})
    constexprs = {(names.index(name),): value for name, value in launch["constexprs"].items()}
    source = ASTSource(kernel, {n: signature[n] for n in names}, constexprs=constexprs)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=launch["options"])
    return {"shared": int(compiled.metadata.shared)}


def main(argv: list[str]) -> int:
    launches = json.loads(open(argv[0]).read())
    warnings.simplefilter("ignore")
    for target in argv[1:]:
        arch = int(target.removeprefix("sm_"))
        for launch in launches:
            row = {"key": launch["key"], "target": target}
            try:
                row.update(ok=True, **compile_one(launch, arch))
            except Exception as e:  # noqa: BLE001 - reported to the test, which fails with it
                row.update(ok=False, error=f"{type(e).__name__}: {str(e).strip()[:400]}")
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
