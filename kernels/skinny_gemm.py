"""Skinny GEMM for decode: y `[M, N]` = x `[M, K]` @ W`[N, K]`^T with M <= 32 rows, W read once at full bandwidth.

A decode step multiplies a handful of rows (2 CFG rows per image, a few text rows) by every weight
matrix, so each linear is a weight stream: the cost is N*K*2 bytes. cuBLAS picks split-K kernels for some
of these shapes (o_proj: 10 us + a 1.7 us reduce for 8 MB on an H100, where the stream takes ~2.8 us).
Here each program owns BLOCK_N weight rows over the whole K, pipelined in BLOCK_K tiles; the padded x tile
(16 or 32 rows) feeds tl.dot, accumulation is fp32, one rounding to the output dtype. On a GPU the tile
shape is autotuned per (M, N, K) at the first (eager) call, before any CUDA-graph capture.

Versions: v1 row-block GEMV with tl.dot (this file).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .interpret import interpreting

MAX_ROWS = 32


@triton.jit
def _skinny_gemm_kernel(x_ptr, w_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        IEEE: tl.constexpr, DOT_FP32: tl.constexpr):
    pid = tl.program_id(0)
    rows = tl.arange(0, BLOCK_M)
    cols = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + ks) < K
        x = tl.load(x_ptr + rows[:, None] * stride_xm + (k0 + ks)[None, :], mask=(rows[:, None] < M) & k_ok[None, :],
                    other=0.0)  # [BLOCK_M, BLOCK_K]
        w = tl.load(w_ptr + cols[:, None] * stride_wn + (k0 + ks)[None, :], mask=(cols[:, None] < N) & k_ok[None, :],
                    other=0.0)  # [BLOCK_N, BLOCK_K]
        if DOT_FP32:  # the interpreter mis-computes bf16 dots; bf16 products are exact in fp32
            x = x.to(tl.float32)
            w = w.to(tl.float32)
        if IEEE:
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(w))
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


CONFIGS = [  # (BLOCK_N, BLOCK_K, num_warps, num_stages) tried on a GPU
    (16, 256, 4, 4), (16, 512, 4, 3), (32, 256, 4, 4), (32, 128, 4, 5), (64, 128, 4, 4), (16, 1024, 8, 2),
]


def _make_tuned():
    return triton.autotune(
        configs=[triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s) for n, k, w, s in CONFIGS],
        key=["M", "N", "K"],
    )(_skinny_gemm_kernel)


class SkinnyLinear:
    """The launcher, holding its autotuner (built on first use on a GPU; fixed tiles in the interpreter)."""

    def __init__(self) -> None:
        self._tuned = None

    def __call__(self, *, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x `[..., K]` with at most 32 rows in all, weight `[N, K]` contiguous -> `[..., N]` in x's dtype."""
        n, k = weight.shape
        if x.shape[-1] != k or weight.stride(1) != 1 or weight.dtype != x.dtype:
            raise ValueError(f"skinny_gemm: x {list(x.shape)} {x.dtype} vs weight {list(weight.shape)} {weight.dtype}")
        x2 = x.reshape(-1, k)  # [M, K]
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        m = x2.shape[0]
        if m > MAX_ROWS:
            raise ValueError(f"skinny_gemm takes at most {MAX_ROWS} rows, got {m}")
        y = x2.new_empty(m, n)
        block_m = 16 if m <= 16 else 32
        common = dict(BLOCK_M=block_m, IEEE=x.dtype == torch.float32,
                      DOT_FP32=interpreting() and x.dtype == torch.bfloat16)
        if interpreting() or not x.is_cuda:
            _skinny_gemm_kernel[(triton.cdiv(n, 64),)](x2, weight, y, m, n, k, x2.stride(0), weight.stride(0),
                                                        y.stride(0), BLOCK_N=64, BLOCK_K=128, **common)
        else:
            if self._tuned is None:
                self._tuned = _make_tuned()
            grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
            self._tuned[grid](x2, weight, y, m, n, k, x2.stride(0), weight.stride(0), y.stride(0), **common)
        return y.view(*x.shape[:-1], n)


def skinny_gemm_ref(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x @ weight.T
