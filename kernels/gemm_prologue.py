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
Each kernel that calls them stays batch invariant: the prologue reads only its own row, and the sum of h^2 runs
over the same K tiles in the same order whatever the batch.
"""

from __future__ import annotations

import triton
import triton.language as tl

PROLOGUE_NONE, PROLOGUE_NORM, PROLOGUE_SILU = 0, 1, 2


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
        a = (gate / (1.0 + tl.exp(-gate)) * up).to(h_ptr.dtype.element_ty)  # h_ptr: gate_up here
        sq = tl.zeros([BLOCK_M], tl.float32)
    elif PROLOGUE == 1:  # RMSNorm(x + delta) * weight, the per-row scale applied in the epilogue
        h = tl.load(a_ptr + offs, mask=ok, other=0.0)
        if HAS_DELTA:
            h = (h.to(tl.float32) + tl.load(delta_ptr + offs, mask=ok, other=0.0).to(tl.float32)).to(
                h_ptr.dtype.element_ty)
            if pid_n == 0:  # one column block writes the residual stream
                tl.store(h_ptr + offs, h, mask=ok)
        h32 = h.to(tl.float32)
        sq = tl.sum(h32 * h32, axis=1)
        nw = tl.load(norm_w_ptr + kk, mask=kk < K, other=0.0).to(tl.float32)
        a = (h32 * nw[None, :]).to(h_ptr.dtype.element_ty)
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
