"""The decode GEMMs' shared A-operand prologues and epilogue (`skinny_gemm.py`, `dequant_gemm.py`), as Triton
device functions: the step's glue folded into the GEMM that consumes it.

    a_tile(...)    the A tile `[BLOCK_M, BLOCK_K]` at columns kk, zero past M and K, after the prologue:
                   PROLOGUE_NONE  A as stored;
                   PROLOGUE_NORM  (h * norm_weight) rounded to the activation dtype, h = x + delta rounded as the
                                  torch add (written to h_ptr by the pid_n == 0 programs when there is a delta),
                                  plus the tile's per-row sum of h^2 (RMSNorm's 1/rms is a per-row scale, applied
                                  by `epilogue` once the whole row has been summed);
                   PROLOGUE_SILU  silu(gate) * up of gate_up `[M, 2K]` (gate | up halves), in fp32, rounded once
                                  (exactly `fused_norm.silu_mul`'s arithmetic).
    epilogue(...)  the fp32 accumulator -> RMSNorm's per-row 1/rms (PROLOGUE_NORM), + bias in fp32, one rounding,
                   store.
    norm_operands_problem(...)   the launchers' one check of PROLOGUE_NORM's operands (host side).
Each kernel that calls them stays batch invariant: the prologue reads only its own row, and the sum of h^2 runs
over the same K tiles in the same order whatever the batch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PROLOGUE_NONE, PROLOGUE_NORM, PROLOGUE_SILU = 0, 1, 2


def norm_operands_problem(x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor,
                          k: int) -> str | None:
    """Why x, delta `[..., K]` and norm_weight `[K]` cannot feed PROLOGUE_NORM (the kernels index them as contiguous
    rows of one stride), or None when they can."""
    if not x.is_contiguous() or (delta is not None and (delta.shape != x.shape or not delta.is_contiguous()
                                                        or delta.dtype != x.dtype)):
        return f"norm prologue: x {list(x.shape)} and delta must be contiguous, of one shape and dtype"
    if norm_weight.shape != (k,) or not norm_weight.is_contiguous():
        return f"norm prologue: norm weight must be contiguous [{k}], got {list(norm_weight.shape)}"
    return None


@triton.jit
def a_tile(a_ptr, delta_ptr, norm_w_ptr, h_ptr, rows, kk, M, K, stride_am, pid_n,
            BLOCK_M: tl.constexpr, PROLOGUE: tl.constexpr, HAS_DELTA: tl.constexpr):
    """The A operand `[BLOCK_M, BLOCK_K]` at columns kk (zeros past M and K), and this tile's sum of h^2 per row
    (PROLOGUE_NORM only; zeros otherwise)."""
    ok = (rows[:, None] < M) & (kk[None, :] < K)
    offs = rows[:, None] * stride_am + kk[None, :]
    if PROLOGUE == 2:  # silu(gate) * up, the gate | up halves of one row
        gate = tl.load(a_ptr + offs, mask=ok, other=0.0).to(tl.float32)
        up = tl.load(a_ptr + offs + K, mask=ok, other=0.0).to(tl.float32)
        a = (gate / (1.0 + tl.exp(-gate)) * up).to(a_ptr.dtype.element_ty)
        sq = tl.zeros([BLOCK_M], tl.float32)
    elif PROLOGUE == 1:  # RMSNorm(x + delta) * weight, the per-row scale applied in the epilogue
        h = tl.load(a_ptr + offs, mask=ok, other=0.0)
        if HAS_DELTA:
            h = (h.to(tl.float32) + tl.load(delta_ptr + offs, mask=ok, other=0.0).to(tl.float32)).to(
                a_ptr.dtype.element_ty)
            if pid_n == 0:  # one column block writes the residual stream
                tl.store(h_ptr + offs, h, mask=ok)
        h32 = h.to(tl.float32)
        sq = tl.sum(h32 * h32, axis=1)
        nw = tl.load(norm_w_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)
        a = (h32 * nw[None, :]).to(a_ptr.dtype.element_ty)
    else:
        a = tl.load(a_ptr + offs, mask=ok, other=0.0)
        sq = tl.zeros([BLOCK_M], tl.float32)
    return a, sq


@triton.jit
def epilogue(acc, sq, bias_ptr, y_ptr, rows, cols, M, N, K, stride_ym, eps,
              PROLOGUE: tl.constexpr, HAS_BIAS: tl.constexpr):
    """Scale (RMSNorm's per-row 1/rms), bias in fp32, one rounding, store."""
    if PROLOGUE == 1:
        acc = acc * (1.0 / tl.sqrt(sq / K + eps))[:, None]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))
