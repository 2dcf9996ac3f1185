"""Shared helpers for kernel tests: the interpreter switch and the house tolerance rule."""

from __future__ import annotations

import os

import torch

# Kernels run in the Triton interpreter on machines without CUDA; this must be set before triton is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ATOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def assert_close_to_reference(kernel: torch.Tensor, same_dtype: torch.Tensor, reference: torch.Tensor,
                              dtype: torch.dtype, what: str) -> None:
    """flash-attention's rule: |kernel - ref| <= 2 * |torch in the same dtype - ref| + atol, elementwise,
    plus one ulp of the output dtype for fp16/bf16 (the kernel's own final rounding).

    `reference` is computed in float64 from the same inputs; `same_dtype` is plain torch in the kernel's dtype.
    The Triton interpreter converts fp32 -> bf16 by truncation (GPUs round to nearest), so there bf16 outputs
    may sit a few bf16 steps (up to 2^-5 relative after chained roundings) from the reference.
    """
    assert torch.isfinite(kernel).all(), f"{what}: non-finite values (unwritten output?)"
    err = (kernel.double() - reference).abs()
    allowed = 2 * (same_dtype.double() - reference).abs() + ATOL[dtype]
    if dtype != torch.float32:  # plus one final rounding step: where torch happens to land exactly, a kernel that
        allowed = allowed + reference.abs() * torch.finfo(dtype).eps  # sums in another order may round one ulp off
    if dtype == torch.bfloat16 and os.environ.get("TRITON_INTERPRET") == "1":
        allowed = allowed + reference.abs() * 2.0**-5
    worst = (err - allowed).max().item()
    assert worst <= 0, f"{what}: max error {err.max().item():.3g} exceeds the allowed bound by {worst:.3g}"
