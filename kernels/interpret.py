"""Whether Triton kernels run in the interpreter (CPU, `TRITON_INTERPRET=1`) or compiled on a GPU."""

from __future__ import annotations

import os


def interpreting() -> bool:
    """True when triton.jit functions run in the interpreter (read at kernel import, so set it before that)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
