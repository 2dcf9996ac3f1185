"""Whether Triton kernels run in the interpreter (CPU, `TRITON_INTERPRET=1`) or compiled on a GPU.

Triton decides when a `@triton.jit` function is created, and its own library functions (tl.zeros, tl.rand,
...) are created when triton is imported: the interpreter works only if it was on before that import.
"""

from __future__ import annotations

import os
import re
import sys
import threading

INTERPRETER_LOCK = threading.RLock()
"""Held by every janus-rt caller that runs Triton kernels in the interpreter (the triton backend's prefill, steps
and bucket builds). The interpreter keeps a launch's grid and builder state in module globals, so two threads
running kernels at once corrupt each other (seen: "y >= grid_dim[1]" from two engines in one process). Process-wide
for that reason, like `backends.graph_capture.CAPTURE_LOCK`; compiled kernels on a GPU launch from any thread
without it."""


def interpreting() -> bool:
    """True when TRITON_INTERPRET asks for the interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def interpreter_usable() -> bool:
    """True when the interpreter is on and triton's own jit functions were built for it."""
    if not interpreting():
        return False
    if "triton" not in sys.modules:
        return True
    import triton.language as tl

    return type(tl.zeros).__name__ == "InterpretedFunction"


def enable_interpreter_if_no_gpu(cuda_available: bool) -> None:
    """On a machine without CUDA, turn the interpreter on (unless the user chose) before triton is imported."""
    if not cuda_available and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")


# Triton releases whose interpreter breaks with numpy >= 2.4 ("only 0-dimensional arrays can be converted to Python
# scalars": numpy 2.4 refuses int() of a 1-element array; triton-lang/triton#9171). Verified: 3.6.0 broken, 3.9.0
# fixed; 3.7 and 3.8 were not checked, so only the releases known to break are refused.
NUMPY_BREAKS_INTERPRETER_BELOW_TRITON = (3, 7)
NUMPY_BREAKING_INTERPRETER = (2, 4)


def _release(version: str) -> tuple[int, ...]:
    """'3.6.0' -> (3, 6, 0); '2.4.0rc1' -> (2, 4, 0); '3.10.1+git' -> (3, 10, 1): the release's leading numbers."""
    found = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version)
    return tuple(int(n) for n in found.groups() if n is not None) if found else ()


def interpreter_problem(triton_version: str, numpy_version: str) -> str | None:
    """Why this Triton's interpreter cannot run with this numpy (and what to do), or None when they work together."""
    if (_release(triton_version) < NUMPY_BREAKS_INTERPRETER_BELOW_TRITON
            and _release(numpy_version) >= NUMPY_BREAKING_INTERPRETER):
        return (f"the Triton {triton_version} interpreter fails with numpy {numpy_version} (numpy 2.4 refuses an "
                f"implicit array-to-scalar conversion it makes; fixed in later Triton releases): pip install "
                f"'numpy<2.4' (or a newer triton) to run the triton backend on the CPU")
    return None
