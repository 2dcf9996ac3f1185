"""Whether Triton kernels run in the interpreter (CPU, `TRITON_INTERPRET=1`) or compiled on a GPU.

Triton decides when a `@triton.jit` function is created, and its own library functions (tl.zeros, tl.rand,
...) are created when triton is imported: the interpreter works only if it was on before that import.
"""

from __future__ import annotations

import os
import sys


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
