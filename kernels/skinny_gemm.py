"""Skinny GEMM for decode: y `[M, N]` = A `[M, K]` @ W`[N, K]`^T (+ bias `[N]`), W streamed at full bandwidth.

A decode step multiplies a handful of rows (2 CFG rows per image, a few text rows) by every weight
matrix, so each linear is a weight stream: the cost is N*K*2 bytes. cuBLAS picks split-K kernels for some
of these shapes (o_proj: 10 us + a 1.7 us reduce for 8 MB on an H100, where the stream takes ~2.8 us).
Here each program owns one BLOCK_M x BLOCK_N output tile over one K range, pipelined in BLOCK_K tiles; the
A tile (zero-padded past M) feeds tl.dot, accumulation is fp32, the bias is added in fp32, then one rounding
to the output dtype. Any M: the grid is (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N), SPLIT_K), M blocks fastest, so
the blocks that share a weight tile are scheduled side by side and their re-reads can hit L2.

Split K (SPLIT_K > 1, a tuned choice per weight shape): split s reduces K tiles [s*T, (s+1)*T) with
T = cdiv(cdiv(K, BLOCK_K), SPLIT_K), writes its fp32 partial tile to a workspace, then counts itself in on
the tile's counter (atomic, acquire-release); the program that arrives last adds the partials in split order
0..SPLIT_K-1, runs the epilogue, and resets the counter to 0 for the next launch (no memset kernel, CUDA-graph
safe). One launch, and N=2048 matrices get SPLIT_K times the programs in flight (128 tiles of 16 columns fill
under one wave of an H100's 132 SMs).

Prologues (the decode step's glue folded into the GEMM that consumes it, one launch fewer each; the device code is
shared with the dequant-GEMMs in gemm_prologue.py):
    PROLOGUE_NORM  A = RMSNorm(x + delta) * norm_weight: h = x + delta is rounded to the activation dtype
                   (as the torch path's residual add) and written out by the pid_n == 0 programs (the residual
                   stream); the GEMM runs on (h * norm_weight) rounded to the activation dtype while the
                   programs sum h^2 over their K range, and the epilogue scales the fp32 accumulator by
                   rsqrt(mean(h^2) + eps) (RMSNorm is a per-row scale: it commutes with the GEMM). The
                   rounding points differ from norm-then-GEMM (one rounding of h * w instead of two), so the
                   result is as close to the float64 truth, not bitwise equal to the unfused kernels.
    PROLOGUE_SILU  A = silu(gate) * up from gate_up `[M, 2K]` (gate | up halves), computed in fp32 and rounded
                   to the activation dtype exactly as `fused_norm.silu_mul`: bitwise the unfused result.

Batch invariance: BLOCK_M is a constant (16) and the tile shape (BLOCK_N, BLOCK_K, SPLIT_K, warps, stages) is
autotuned per (N, K) only, never per M, and M is not a specialised argument, so every row of A is reduced
along K in the same order (the same K ranges, the same split order) by the same compiled kernel whatever M is
and wherever the row sits in the batch: a row's output is bitwise independent of its companions. The tile is
chosen at the first eager call for each (N, K, dtype, prologue) by the launcher's `tile_tuner.PersistentTuner`: it
reuses the choice stored in the user cache for this GPU + janus-rt + Triton versions, else times every config
once and stores the fastest, so all processes on one GPU and release run the same tile, hence the same bits
(pass `configs` with one entry to make that hold across GPUs and releases too).
BLOCK_M = 16 is the smallest tile tl.dot takes (a tensor-core MMA is 16 rows): the common 2-row CFG step
pads least, and its arithmetic intensity (<= 16 FLOP per weight byte) stays far below the ridge point, so
the kernel remains a pure weight stream; larger batches take more M blocks rather than a larger tile.

Versions: v1 row-block GEMV with tl.dot, M <= 32, tile tuned per (M, N, K); v2 a grid over fixed 16-row M
blocks (any M), autotune keyed on (N, K) only (batch invariant), optional bias; v3 its tile choice persisted
across processes (kernels/tuning.py) instead of triton.autotune re-timing it in each; v4 (this file) split-K
configs among the tuned candidates (last program reduces, one launch) and the RMSNorm / SiLU*up prologues
(CPU interpreter tested; not yet timed on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import triton
import triton.language as tl

from janus_rt.kernels.counters import ArrivalCounters
from janus_rt.kernels.gemm_prologue import PROLOGUE_NONE, PROLOGUE_NORM, PROLOGUE_SILU, a_tile, epilogue, norm_operands_problem
from janus_rt.kernels.interpret import interpreting
from janus_rt.kernels.tile_tuner import PersistentTuner
from janus_rt.kernels.tuning import Tile, TileChoices

BLOCK_M = 16  # rows per program, fixed: a row's reduction order must not depend on M (see module doc)


@triton.jit(do_not_specialize=["M"])  # one compiled kernel for every M (no M == 1 / M % 16 variant)
def _skinny_gemm_kernel(a_ptr, delta_ptr, norm_w_ptr, h_ptr, w_ptr, bias_ptr, y_ptr, part_ptr, count_ptr,
                        M, N, K, stride_am, stride_wn, stride_ym, eps,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
                        PROLOGUE: tl.constexpr, HAS_DELTA: tl.constexpr, HAS_BIAS: tl.constexpr,
                        IEEE: tl.constexpr, DOT_FP32: tl.constexpr):
    pid_m = tl.program_id(0)  # fastest-varying: the M blocks of one weight tile are scheduled together
    pid_n = tl.program_id(1)
    split = tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    tiles_per_split = tl.cdiv(tl.cdiv(K, BLOCK_K), SPLIT_K)  # a function of K and the tile only: fixed order
    k_begin = split * tiles_per_split * BLOCK_K
    k_end = tl.minimum(K, k_begin + tiles_per_split * BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    sq = tl.zeros([BLOCK_M], tl.float32)
    for k0 in range(k_begin, k_end, BLOCK_K):
        kk = k0 + ks
        a, tile_sq = a_tile(a_ptr, delta_ptr, norm_w_ptr, h_ptr, rows, kk, M, K, stride_am, pid_n, BLOCK_M,
                             PROLOGUE, HAS_DELTA)  # [BLOCK_M, BLOCK_K]
        sq += tile_sq
        w = tl.load(w_ptr + cols[:, None] * stride_wn + kk[None, :], mask=(cols[:, None] < N) & (kk[None, :] < K),
                    other=0.0)  # [BLOCK_N, BLOCK_K]
        if DOT_FP32:  # the interpreter mis-computes bf16 dots; bf16 products are exact in fp32
            a = a.to(tl.float32)
            w = w.to(tl.float32)
        if IEEE:
            acc += tl.dot(a, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(a, tl.trans(w))
    if SPLIT_K == 1:
        epilogue(acc, sq, bias_ptr, y_ptr, rows, cols, M, N, K, stride_ym, eps, PROLOGUE, HAS_BIAS)
    else:
        # workspace: [tiles, SPLIT_K, BLOCK_M, BLOCK_N] fp32 partials, then [tiles, SPLIT_K, BLOCK_M] sums of h^2
        tile = pid_n * tl.num_programs(0) + pid_m
        tiles = tl.num_programs(0) * tl.num_programs(1)
        tile_rc = tl.arange(0, BLOCK_M)[:, None] * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
        tl.store(part_ptr + (tile * SPLIT_K + split) * (BLOCK_M * BLOCK_N) + tile_rc, acc)
        sq_base = part_ptr + tiles * SPLIT_K * (BLOCK_M * BLOCK_N)
        if PROLOGUE == 1:
            tl.store(sq_base + (tile * SPLIT_K + split) * BLOCK_M + tl.arange(0, BLOCK_M), sq)
        # Ordering: every thread's partial stores complete before the barrier; the counting atomic is a release at
        # GPU scope (cumulative over what the barrier ordered). The last arriver's atomic is an acquire, and the
        # barrier after it orders its other threads' loads (which skip L1: .cg) after it.
        tl.debug_barrier()
        arrived = tl.atomic_add(count_ptr + tile, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            tl.debug_barrier()
            total = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
            total_sq = tl.zeros([BLOCK_M], tl.float32)
            for s in range(0, SPLIT_K):  # split order, whoever arrived last: the same bits every launch
                total += tl.load(part_ptr + (tile * SPLIT_K + s) * (BLOCK_M * BLOCK_N) + tile_rc, cache_modifier=".cg")
                if PROLOGUE == 1:
                    total_sq += tl.load(sq_base + (tile * SPLIT_K + s) * BLOCK_M + tl.arange(0, BLOCK_M),
                                        cache_modifier=".cg")
            epilogue(total, total_sq, bias_ptr, y_ptr, rows, cols, M, N, K, stride_ym, eps, PROLOGUE, HAS_BIAS)
            tl.atomic_xchg(count_ptr + tile, 0)  # ready for the next launch (graph replays included)


# Split K pays where N has few column tiles (o_proj / down_proj: N = 2048 or 4096); its fp32 workspace costs
# N * SPLIT_K * ~64 bytes per 16 rows, so it is a candidate only while N * SPLIT_K <= MAX_SPLIT_COLUMNS: at most
# ~2.2 MB per 16 rows, ~36 MB at 256 rows. Without the bound, lm_head (N = 102400) at SPLIT_K 8 and 256 rows would
# allocate ~0.9 GB per launch. A rule of N alone: the tile still never depends on M (batch invariance).
MAX_SPLIT_COLUMNS = 32768


def split_k_allowed(n: int) -> Callable[[Tile], bool]:
    """The split-K bound above, as the tuner's `allowed` rule for a weight of N output columns."""
    return lambda tile: (tile.SPLIT_K or 1) == 1 or n * tile.SPLIT_K <= MAX_SPLIT_COLUMNS


def split_workspace_bytes(m: int, n: int, tile: Tile) -> int:
    """Bytes of the fp32 partials + row sums of one launch: [tiles, SPLIT_K, BLOCK_M, BLOCK_N + 1]."""
    split = tile.SPLIT_K or 1
    if split == 1:
        return 0
    return triton.cdiv(m, BLOCK_M) * triton.cdiv(n, tile.BLOCK_N) * split * BLOCK_M * (tile.BLOCK_N + 1) * 4


CONFIGS = [  # (BLOCK_N, BLOCK_K, num_warps, num_stages, SPLIT_K) tried on a GPU
    (16, 256, 4, 4, 1), (16, 512, 4, 3, 1), (32, 256, 4, 4, 1), (32, 128, 4, 5, 1), (64, 128, 4, 4, 1),
    (16, 1024, 8, 2, 1),
    (16, 256, 4, 4, 2), (16, 256, 4, 4, 4), (32, 256, 4, 4, 4), (16, 128, 4, 4, 8),  # split K: more programs
]


class SkinnyLinear:
    """The launcher, owning its tile tuners (one per device and prologue, built on first use on a GPU; fixed wide
    tiles in the interpreter) and its split-K tile counters. `store`: where chosen tiles persist (default: the user
    cache for the device's GPU + versions, `tuning.TileChoices`); `bench`: the timer `tile_tuner.PersistentTuner` calls
    (default: triton.testing.do_bench); `configs`: the candidates (default CONFIGS). Passing a `bench` also sends
    interpreter / CPU calls through the tuned launch (tests, with a fake timer)."""

    def __init__(self, store: TileChoices | None = None, bench=None, configs: Sequence | None = None) -> None:
        self._store = store
        self._bench = bench
        self._configs = [Tile.parse(c) for c in (configs if configs is not None else CONFIGS)]
        if any(c.SPLIT_K is None for c in self._configs):
            raise ValueError("skinny_gemm configs are (BLOCK_N, BLOCK_K, num_warps, num_stages, SPLIT_K)")
        self._tuners: dict[tuple[torch.device, int], PersistentTuner] = {}
        self.counters = ArrivalCounters()  # split-K tiles' arrival counters

    def _tuner(self, device: torch.device, prologue: int = PROLOGUE_NONE) -> PersistentTuner:
        if (device, prologue) not in self._tuners:
            store = self._store if self._store is not None else TileChoices(device=device)
            name = ("skinny_gemm", "skinny_gemm_norm", "skinny_gemm_silu")[prologue]
            self._tuners[device, prologue] = PersistentTuner(name, _skinny_gemm_kernel, self._configs, store,
                                                             self._bench)
        return self._tuners[device, prologue]

    # ------------------------------------------------------------------------------------------- entry points
    def __call__(self, *, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x `[..., K]` (any number of rows), weight `[N, K]` contiguous rows, bias `[N]` or None -> `[..., N]`
        in x's dtype."""
        k = weight.shape[1]
        self._check(x, k, weight, bias)
        x2 = x.reshape(-1, k)  # [M, K]
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        y = self._launch(PROLOGUE_NONE, x2, None, None, None, 0.0, weight, bias)
        return y.view(*x.shape[:-1], weight.shape[0])

    def norm_linear(self, *, x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor, eps: float,
                    weight: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(linear(RMSNorm(x + delta) * norm_weight), x + delta): the residual add and the norm folded into the GEMM.
        x, delta `[..., K]` contiguous; delta None: the norm of x itself (returned as the second value)."""
        k = weight.shape[1]
        self._check(x, k, weight, bias)
        problem = norm_operands_problem(x, delta, norm_weight, k)
        if problem:
            raise ValueError(f"skinny_gemm {problem}")
        x2 = x.view(-1, k)  # [M, K]
        h = torch.empty_like(x2) if delta is not None else x2  # [M, K] the residual stream after the add
        y = self._launch(PROLOGUE_NORM, x2, None if delta is None else delta.view(-1, k), norm_weight, h, eps,
                         weight, bias)
        return y.view(*x.shape[:-1], weight.shape[0]), h.view(x.shape)

    def silu_linear(self, *, gate_up: torch.Tensor, weight: torch.Tensor,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
        """linear(silu(gate) * up) for gate_up `[..., 2K]` contiguous (gate | up halves): SiLU*up folded into the
        GEMM (bitwise the same as `fused_norm.silu_mul` then this GEMM with the same tile)."""
        k = weight.shape[1]
        if gate_up.shape[-1] != 2 * k or not gate_up.is_contiguous():
            raise ValueError(f"skinny_gemm silu prologue: gate_up must be contiguous [..., {2 * k}] for weight "
                             f"{list(weight.shape)}, got {list(gate_up.shape)}")
        self._check(gate_up[..., :k], k, weight, bias)
        g2 = gate_up.view(-1, 2 * k)  # [M, 2K]
        y = self._launch(PROLOGUE_SILU, g2, None, None, None, 0.0, weight, bias)
        return y.view(*gate_up.shape[:-1], weight.shape[0])

    # ----------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _check(x: torch.Tensor, k: int, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        n = weight.shape[0]
        if x.shape[-1] != k or weight.stride(1) != 1 or weight.dtype != x.dtype:
            raise ValueError(f"skinny_gemm: x {list(x.shape)} {x.dtype} vs weight {list(weight.shape)} {weight.dtype}")
        if bias is not None and (bias.shape != (n,) or not bias.is_contiguous() or not bias.dtype.is_floating_point):
            raise ValueError(f"skinny_gemm: bias must be a contiguous float tensor [{n}], got "
                             f"{bias.dtype} {list(bias.shape)}")

    def _launch(self, prologue: int, a: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor | None,
                h: torch.Tensor | None, eps: float, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """y `[M, N]` for A `[M, K]` (or gate_up `[M, 2K]`) after the prologue; writes h for PROLOGUE_NORM."""
        n, k = weight.shape
        m = a.shape[0]
        y = a.new_empty(m, n)  # [M, N]
        if m == 0 or n == 0:
            return y
        dev = a.device
        common = dict(BLOCK_M=BLOCK_M, PROLOGUE=prologue, HAS_DELTA=delta is not None, HAS_BIAS=bias is not None,
                      IEEE=a.dtype == torch.float32, DOT_FP32=interpreting() and a.dtype == torch.bfloat16)
        m_blocks = triton.cdiv(m, BLOCK_M)

        def args(tile: Tile) -> tuple:
            tiles = m_blocks * triton.cdiv(n, tile.BLOCK_N)
            split = tile.SPLIT_K or 1
            part = (torch.empty(split_workspace_bytes(m, n, tile) // 4, dtype=torch.float32, device=dev)
                    if split > 1 else y)  # [tiles, split, BLOCK_M, BLOCK_N] partials + [tiles, split, BLOCK_M] sums
            counters = self.counters.get(dev, tiles) if split > 1 else y
            return (a, a if delta is None else delta, weight if norm_weight is None else norm_weight,
                    y if h is None else h, weight, weight if bias is None else bias, y, part, counters,
                    m, n, k, a.stride(0), weight.stride(0), y.stride(0), eps)

        def grid(tile: Tile) -> tuple[int, int, int]:
            return m_blocks, triton.cdiv(n, tile.BLOCK_N), tile.SPLIT_K or 1

        if self._bench is None and (interpreting() or not a.is_cuda):  # the interpreter pays per program: wide
            tile = Tile(min(2048, triton.next_power_of_2(n)), 128, 4, 1, 1)  # tiles (fixed per N), no split
            _skinny_gemm_kernel[grid(tile)](*args(tile), BLOCK_N=tile.BLOCK_N, BLOCK_K=tile.BLOCK_K, SPLIT_K=1,
                                            **common)
        else:  # never M in the key: the tile (hence each row's reduction order) must not change with the batch
            tuner = self._tuner(dev, prologue)
            key = dict(N=n, K=k, dtype=str(a.dtype).removeprefix("torch."))
            tile = tuner.choose(key, lambda t: _skinny_gemm_kernel[grid(t)](*args(t), **t.kwargs(), **common),
                                split_k_allowed(n))
            _skinny_gemm_kernel[grid(tile)](*args(tile), **tile.kwargs(), **common)
        return y


def skinny_gemm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight^T (+ bias) in the inputs' dtype (upcast them for a reference)."""
    y = x @ weight.T
    return y + bias if bias is not None else y


def norm_linear_ref(x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor, eps: float,
                    weight: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The unfused arithmetic: h = x + delta, RMSNorm(h) * norm_weight, then the linear (in the inputs' dtype)."""
    h = x + delta if delta is not None else x
    h32 = h.float() if h.dtype != torch.float64 else h
    normed = norm_weight * (h32 * torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + eps)).to(h.dtype)
    return skinny_gemm_ref(normed, weight, bias), h


def silu_linear_ref(gate_up: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return skinny_gemm_ref(torch.nn.functional.silu(gate) * up, weight, bias)
