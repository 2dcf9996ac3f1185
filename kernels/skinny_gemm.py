"""Skinny GEMM for decode: y `[M, N]` = x `[M, K]` @ W`[N, K]`^T (+ bias `[N]`), W streamed at full bandwidth.

A decode step multiplies a handful of rows (2 CFG rows per image, a few text rows) by every weight
matrix, so each linear is a weight stream: the cost is N*K*2 bytes. cuBLAS picks split-K kernels for some
of these shapes (o_proj: 10 us + a 1.7 us reduce for 8 MB on an H100, where the stream takes ~2.8 us).
Here each program owns one BLOCK_M x BLOCK_N output tile over the whole K, pipelined in BLOCK_K tiles; the
x tile (zero-padded past M) feeds tl.dot, accumulation is fp32, the bias is added in fp32, then one rounding
to the output dtype. Any M: the grid is (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)), M blocks fastest, so the
blocks that share a weight tile are scheduled side by side and their re-reads can hit L2 (not yet measured).

Batch invariance: BLOCK_M is a constant (16) and the tile shape (BLOCK_N, BLOCK_K, warps, stages) is
autotuned per (N, K) only, never per M, and M is not a specialised argument, so every row of x is reduced
along K in the same order by the same compiled kernel whatever M is and wherever the row sits in the batch:
a row's output is bitwise independent of its companions (no split-K: that would tie the reduction order to
the launch shape). The tile is chosen at the first eager call for each (N, K, dtype) by the launcher's
`tuning.PersistentTuner`: it reuses the choice stored in the user cache for this GPU + janus-rt + Triton
versions, else times every config once and stores the fastest, so all processes on one GPU and release run the
same tile, hence the same bits (pin CONFIGS to one entry to make that hold across GPUs and releases too).
BLOCK_M = 16 is the smallest tile tl.dot takes (a tensor-core MMA is 16 rows): the common 2-row CFG step
pads least, and its arithmetic intensity (<= 16 FLOP per weight byte) stays far below the ridge point, so
the kernel remains a pure weight stream; larger batches take more M blocks rather than a larger tile.

Versions: v1 row-block GEMV with tl.dot, M <= 32, tile tuned per (M, N, K); v2 a grid over fixed 16-row M
blocks (any M), autotune keyed on (N, K) only (batch invariant), optional bias; v3 (this file) the same kernel,
its tile choice persisted across processes (kernels/tuning.py) instead of triton.autotune re-timing it in each.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .interpret import interpreting
from .tuning import PersistentTuner, TileChoices

BLOCK_M = 16  # rows per program, fixed: a row's reduction order must not depend on M (see module doc)


@triton.jit(do_not_specialize=["M"])  # one compiled kernel for every M (no M == 1 / M % 16 variant)
def _skinny_gemm_kernel(x_ptr, w_ptr, bias_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, DOT_FP32: tl.constexpr):
    pid_m = tl.program_id(0)  # fastest-varying: the M blocks of one weight tile are scheduled together
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
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
    if HAS_BIAS:
        acc += tl.load(bias_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


CONFIGS = [  # (BLOCK_N, BLOCK_K, num_warps, num_stages) tried on a GPU
    (16, 256, 4, 4), (16, 512, 4, 3), (32, 256, 4, 4), (32, 128, 4, 5), (64, 128, 4, 4), (16, 1024, 8, 2),
]


class SkinnyLinear:
    """The launcher, owning its tile tuners (one per device, built on first use on a GPU; fixed wide tiles in the
    interpreter). `store`: where chosen tiles persist (default: the user cache for the device's GPU + versions,
    `tuning.TileChoices`); `bench`: the timer `tuning.PersistentTuner` calls (default: triton.testing.do_bench).
    Passing a `bench` also sends interpreter / CPU calls through the tuned launch (tests, with a fake timer)."""

    def __init__(self, store: TileChoices | None = None, bench=None) -> None:
        self._store = store
        self._bench = bench
        self._tuners: dict[torch.device, PersistentTuner] = {}

    def _tuner(self, device: torch.device) -> PersistentTuner:
        if device not in self._tuners:
            store = self._store if self._store is not None else TileChoices(device=device)
            self._tuners[device] = PersistentTuner("skinny_gemm", _skinny_gemm_kernel, CONFIGS, store, self._bench)
        return self._tuners[device]

    def __call__(self, *, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x `[..., K]` (any number of rows), weight `[N, K]` contiguous rows, bias `[N]` or None -> `[..., N]`
        in x's dtype."""
        n, k = weight.shape
        if x.shape[-1] != k or weight.stride(1) != 1 or weight.dtype != x.dtype:
            raise ValueError(f"skinny_gemm: x {list(x.shape)} {x.dtype} vs weight {list(weight.shape)} {weight.dtype}")
        if bias is not None and (bias.shape != (n,) or not bias.is_contiguous() or not bias.dtype.is_floating_point):
            raise ValueError(f"skinny_gemm: bias must be a contiguous float tensor [{n}], got "
                             f"{bias.dtype} {list(bias.shape)}")
        x2 = x.reshape(-1, k)  # [M, K]
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        m = x2.shape[0]
        y = x2.new_empty(m, n)  # [M, N]
        if m == 0 or n == 0:
            return y.view(*x.shape[:-1], n)
        common = dict(BLOCK_M=BLOCK_M, HAS_BIAS=bias is not None, IEEE=x.dtype == torch.float32,
                      DOT_FP32=interpreting() and x.dtype == torch.bfloat16)
        args = (x2, weight, bias if bias is not None else weight, y, m, n, k, x2.stride(0), weight.stride(0),
                y.stride(0))
        if self._bench is None and (interpreting() or not x.is_cuda):  # the interpreter pays per program: wide
            block_n = min(2048, triton.next_power_of_2(n))  # tiles (fixed per N)
            _skinny_gemm_kernel[(triton.cdiv(m, BLOCK_M), triton.cdiv(n, block_n))](*args, BLOCK_N=block_n,
                                                                                     BLOCK_K=128, **common)
        else:  # never M in the key: the tile (hence each row's reduction order) must not change with the batch
            grid = lambda tile: (triton.cdiv(m, BLOCK_M), triton.cdiv(n, tile.BLOCK_N))  # noqa: E731
            self._tuner(x.device).launch(dict(N=n, K=k, dtype=str(x.dtype).removeprefix("torch.")), grid, *args,
                                         **common)
        return y.view(*x.shape[:-1], n)


def skinny_gemm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight^T (+ bias) in the inputs' dtype (upcast them for a reference)."""
    y = x @ weight.T
    return y + bias if bias is not None else y
