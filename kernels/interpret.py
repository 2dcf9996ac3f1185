"""Whether Triton kernels run in the interpreter (CPU, `TRITON_INTERPRET=1`) or compiled on a GPU.

Triton decides when a `@triton.jit` function is created, and its own library functions (tl.zeros, tl.rand,
...) are created when triton is imported: the interpreter works only if it was on before that import.
"""

from __future__ import annotations

import os
import sys
import threading

INTERPRETER_LOCK = threading.RLock()
"""Held by every janus-rt caller that runs Triton kernels in the interpreter (the triton backend's prefill, steps
and bucket builds). The interpreter keeps a launch's grid and builder state in module globals, so two threads
running kernels at once corrupt each other (seen: "y >= grid_dim[1]" from two engines in one process). Process-wide
for that reason, like `triton_step.CAPTURE_LOCK`; compiled kernels on a GPU launch from any thread without it."""


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
