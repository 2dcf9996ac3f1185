"""Weight-only dequant GEMMs for decode: y `[M, N]` = x `[M, K]` @ dequant(W)`[N, K]`^T (+ bias `[N]`).

A decode step is a weight stream (see skinny_gemm.py): storing W in 8 or 4 bits cuts the bytes streamed per
step by 2x or 4x. These kernels read the quantized weight tile, turn it into the activation dtype in
registers and feed tl.dot; the full-precision weight never exists in memory. Prefill (many rows) is compute
bound instead: there `dequantize()` (torch) materialises the weight once and a regular GEMM runs.

Storage formats (the quantizers write exactly these):
- int8: qweight int8 `[N, K]`, scale float32 `[N]`; w[n, k] = qweight[n, k] * scale[n].
- int4, groups of G (a power of two >= 16, 128 by default) along K: K_pad = ceil(K / G) * G; qweight uint8
  `[N, K_pad / 2]`, byte j of a row holds k = 2j in its LOW nibble and k = 2j + 1 in its HIGH nibble, q in
  [0, 15]; scales float16 `[N, K_pad / G]`; zeros uint8 `[N, K_pad / G]` (0..15), or None: symmetric, zero
  point 8. w[n, k] = (q[n, k] - zero[n, k // G]) * scale[n, k // G]; columns k >= K (padding) are ignored
  (x is masked to 0 there, whatever the padding nibbles hold).
- fp8: qweight torch.float8_e4m3fn `[N, K]`, scale float32 `[N]`; w[n, k] = float(qweight[n, k]) * scale[n].

Arithmetic: one program owns a BLOCK_M x BLOCK_N output tile over the whole K, in BLOCK_K tiles.
- int8 / fp8: the weight tile is converted to x's dtype, exactly (|q| <= 128 fits bf16/fp16 mantissas; every
  e4m3 value is a bf16/fp16/fp32 value), tl.dot accumulates in fp32, the accumulator is multiplied by the
  per-column scale once at the end, the bias is added in fp32, then one rounding to x's dtype.
- int4: a K tile lies inside one group (BLOCK_K divides G). The tile's bytes `[BLOCK_N, BLOCK_K / 2]` are
  split into nibbles (low = b & 15, high = b >> 4) and interleaved back in k order with
  tl.join(low, high).reshape(BLOCK_N, BLOCK_K); the zero point is subtracted in integers (exact, in
  [-15, 15]), then partial = dot(x_tile, (q - z)^T) in fp32 and acc += partial * scale_of_this_group.
- fp8 weights are read as raw bytes and decoded arithmetically (sign, 4-bit exponent with bias 7, 3-bit
  mantissa, subnormals; 0x7F / 0xFF are NaN) into fp32 bit patterns: this path works on every GPU and in the
  interpreter (whose native float8 conversion gets NaN wrong) and is the tested one. On a GPU with compute
  capability >= 8.9 the native conversion is used by default (`DequantLinear(fp8_native=False)` keeps the decode
  path there too): the same bytes, reinterpreted as float8 (a bitcast, free) and converted by the hardware. Both
  paths load bytes: Triton cannot give a masked float8 load its `other=0` ("cannot cast int32 to fp8e4nv").
The torch references (`dequantize`, `dequant_gemm_ref`: "dequantize in fp32, matmul in fp32 or wider") and the
storage checks live beside this file in `reference_dequant.py` (torch only: `QuantLinear` runs them).

Batch invariance (as skinny_gemm.py): BLOCK_M is a constant (16), the tile (BLOCK_N, BLOCK_K, warps, stages) is
autotuned per (N, K) only (and per group size for int4, one tuner each), never per M, M is not a
specialised argument and there is no split-K: every row is reduced along K in the same order by the same
compiled kernel whatever M is and wherever the row sits in the batch, so a row's output is bitwise independent
of its companions. The launcher's `tile_tuner.PersistentTuner` picks a tile at the first eager call per (format,
N, K, dtypes): the choice stored in the user cache for this GPU + janus-rt + Triton versions, else the fastest
config, timed once and stored; so all processes on one GPU and release run the same tile, hence the same bits
(pin the CONFIGS lists to one entry to make that hold across GPUs and releases too).
In the interpreter (CPU) the tiles are fixed and wide: BLOCK_N = min(2048, next_pow2(N)), BLOCK_K = 128
(min(G, 128) for int4), unless a `bench` is passed to DequantLinear (tests of the tuned launch).

Prologues: `norm_linear` / `silu_linear` fold the residual add + RMSNorm, or SiLU(gate)*up, into the A operand
(`gemm_prologue.py`, shared with skinny_gemm.py): a quantized decode step launches as few kernels as a float one.

Versions: v1 int8 / int4 (grouped, optional zeros) / fp8 e4m3fn weight-only kernels, batch invariant; v2 the same
kernels, their tile choices persisted across processes (kernels/tuning.py) instead of triton.autotune re-timing
them in each; v3 (this file) the RMSNorm and SiLU*up prologues (CPU interpreter tested; not yet timed on a GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from janus_rt.kernels.gemm_prologue import PROLOGUE_NONE, PROLOGUE_NORM, PROLOGUE_SILU, a_tile, epilogue, norm_operands_problem
from janus_rt.kernels.interpret import interpreting
from janus_rt.kernels.reference_dequant import check_weight, describe_tensor, weight_error
from janus_rt.kernels.tile_tuner import PersistentTuner
from janus_rt.kernels.tuning import TileChoices

BLOCK_M = 16  # rows per program, fixed: a row's reduction order must not depend on M (see module doc)
ACT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# ---------------------------------------------------------------------------------------------- kernels


@triton.jit
def _e4m3fn_to_f32(bits):
    """Raw float8_e4m3fn bytes (uint8) -> fp32 values: exact, built from bit fields."""
    b = bits.to(tl.int32)  # zero-extended: 0..255
    e = (b >> 3) & 15
    m = b & 7
    normal = ((e + 120) << 23) | (m << 20)  # fp32 bits of (1 + m/8) * 2^(e - 7): exponent e - 7 + 127
    mag = tl.where(e == 0, m.to(tl.float32) * 0.001953125, normal.to(tl.float32, bitcast=True))  # subnormal m*2^-9
    nan = tl.full(mag.shape, 0x7FC00000, tl.int32).to(tl.float32, bitcast=True)
    mag = tl.where((b & 127) == 127, nan, mag)  # S.1111.111 is NaN (no infinities in e4m3fn)
    return tl.where(b >= 128, -mag, mag)


@triton.jit
def _decode_e4m3fn_kernel(bits_ptr, out_ptr, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < numel
    tl.store(out_ptr + offs, _e4m3fn_to_f32(tl.load(bits_ptr + offs, mask=ok, other=0)), mask=ok)


def decode_e4m3fn(bits: torch.Tensor) -> torch.Tensor:
    """uint8 (or float8_e4m3fn) tensor -> fp32 through the kernels' bit decode (exposed for tests)."""
    if bits.dtype == torch.float8_e4m3fn:
        bits = bits.view(torch.uint8)
    if bits.dtype != torch.uint8:
        raise ValueError(f"decode_e4m3fn: expected uint8 or float8_e4m3fn, got {bits.dtype}")
    flat = bits.contiguous().reshape(-1)
    out = torch.empty(flat.shape, dtype=torch.float32, device=bits.device)
    if flat.numel():
        _decode_e4m3fn_kernel[(triton.cdiv(flat.numel(), 1024),)](flat, out, flat.numel(), BLOCK=1024)
    return out.view(bits.shape)


@triton.jit(do_not_specialize=["M"])  # one compiled kernel for every M
def _rowscale_kernel(x_ptr, delta_ptr, norm_w_ptr, h_ptr, w_ptr, scale_ptr, bias_ptr, y_ptr, M, N, K, stride_xm,
                     stride_wn, stride_ym, eps,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                     FP8: tl.constexpr, FP8_NATIVE: tl.constexpr, PROLOGUE: tl.constexpr, HAS_DELTA: tl.constexpr,
                     HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, DOT_FP32: tl.constexpr):
    """int8 (FP8 False) or fp8 e4m3fn (FP8 True; w_ptr holds its raw bytes, decoded by the GPU's float8 conversion
    if FP8_NATIVE, else bit by bit) with a scale per row of W (per output column); x through `gemm_prologue.a_tile`
    (PROLOGUE)."""
    pid_m = tl.program_id(0)  # fastest-varying: the M blocks of one weight tile are scheduled together
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    sq = tl.zeros([BLOCK_M], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k_ok = (k0 + ks) < K
        x, tile_sq = a_tile(x_ptr, delta_ptr, norm_w_ptr, h_ptr, rows, k0 + ks, M, K, stride_xm, pid_n, BLOCK_M,
                            PROLOGUE, HAS_DELTA)  # [BLOCK_M, BLOCK_K]
        sq += tile_sq
        wq = tl.load(w_ptr + cols[:, None] * stride_wn + (k0 + ks)[None, :], mask=(cols[:, None] < N) & k_ok[None, :],
                     other=0)  # [BLOCK_N, BLOCK_K] int8, or fp8 as raw bytes (uint8)
        if FP8 and FP8_NATIVE:  # a free reinterpretation; the GPU's own e4m3 conversion follows (sm_89+).
            # Bytes, not a float8 pointer: Triton cannot cast the masked load's `other` (an int) to fp8e4nv.
            w = wq.to(tl.float8e4nv, bitcast=True)
        elif FP8:
            w = _e4m3fn_to_f32(wq)
        else:
            w = wq
        if DOT_FP32:  # the interpreter mis-computes bf16 dots; bf16 products are exact in fp32
            x = x.to(tl.float32)
            w = w.to(tl.float32)
        else:
            w = w.to(x_ptr.dtype.element_ty)  # exact: |q| <= 128, every e4m3 value fits bf16 / fp16
        if IEEE:
            acc += tl.dot(x, tl.trans(w), input_precision="ieee")
        else:
            acc += tl.dot(x, tl.trans(w))
    acc = acc * tl.load(scale_ptr + cols, mask=cols < N, other=0.0)[None, :]
    epilogue(acc, sq, bias_ptr, y_ptr, rows, cols, M, N, K, stride_ym, eps, PROLOGUE, HAS_BIAS)


@triton.jit(do_not_specialize=["M"])
def _int4_kernel(x_ptr, delta_ptr, norm_w_ptr, h_ptr, qw_ptr, scales_ptr, zeros_ptr, bias_ptr, y_ptr, M, N, K,
                 stride_xm, stride_qn, stride_sn, stride_ym, eps, GROUP: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, HAS_ZEROS: tl.constexpr, PROLOGUE: tl.constexpr,
                 HAS_DELTA: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, DOT_FP32: tl.constexpr):
    """Grouped int4 (two nibbles per byte, low nibble first); BLOCK_K divides GROUP, so a K tile has one scale."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < N
    ks = tl.arange(0, BLOCK_K)
    kb = tl.arange(0, BLOCK_K // 2)
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    sq = tl.zeros([BLOCK_M], tl.float32)
    for k0 in range(0, K, BLOCK_K):  # K = in_features; bytes up to K_pad exist, x past K is masked to 0
        x, tile_sq = a_tile(x_ptr, delta_ptr, norm_w_ptr, h_ptr, rows, k0 + ks, M, K, stride_xm, pid_n, BLOCK_M,
                            PROLOGUE, HAS_DELTA)  # [BLOCK_M, BLOCK_K]
        sq += tile_sq
        b = tl.load(qw_ptr + cols[:, None] * stride_qn + (k0 // 2 + kb)[None, :], mask=col_ok[:, None],
                    other=0)  # [BLOCK_N, BLOCK_K // 2] uint8
        q = tl.join(b & 15, b >> 4).reshape(BLOCK_N, BLOCK_K).to(tl.int32)  # k = 2j (low), 2j + 1 (high)
        g = k0 // GROUP
        if HAS_ZEROS:
            q = q - tl.load(zeros_ptr + cols * stride_sn + g, mask=col_ok, other=0).to(tl.int32)[:, None]
        else:
            q = q - 8
        s = tl.load(scales_ptr + cols * stride_sn + g, mask=col_ok, other=0.0).to(tl.float32)
        if DOT_FP32:
            x = x.to(tl.float32)
            w = q.to(tl.float32)
        else:
            w = q.to(x_ptr.dtype.element_ty)  # exact: q - z in [-15, 15]
        if IEEE:
            part = tl.dot(x, tl.trans(w), input_precision="ieee")
        else:
            part = tl.dot(x, tl.trans(w))
        acc += part * s[None, :]
    epilogue(acc, sq, bias_ptr, y_ptr, rows, cols, M, N, K, stride_ym, eps, PROLOGUE, HAS_BIAS)


# (BLOCK_N, BLOCK_K, num_warps, num_stages) tried on a GPU; 1 byte per int8/fp8 weight -> long K tiles
CONFIGS_8BIT = [
    (16, 512, 4, 3), (32, 256, 4, 4), (32, 512, 4, 3), (64, 256, 4, 3), (64, 128, 4, 4), (16, 1024, 8, 2),
]
# int4: BLOCK_K is clamped to the group size (a K tile must sit inside one group)
CONFIGS_INT4 = [
    (32, 128, 4, 4), (64, 128, 4, 3), (16, 256, 4, 4), (32, 256, 4, 3), (128, 128, 8, 3), (64, 64, 4, 4),
]


def _configs(table: list[tuple[int, int, int, int]], max_k: int | None = None) -> list[tuple[int, int, int, int]]:
    seen, out = set(), []
    for n, k, w, s in table:
        k = min(k, max_k) if max_k else k
        if (n, k, w, s) not in seen:
            seen.add((n, k, w, s))
            out.append((n, k, w, s))
    return out


class DequantLinear:
    """The launcher, owning its tile tuners (built on first use on a GPU, one per device, kernel and int4 group
    size; fixed wide tiles in the interpreter). `fp8_native`: None = native float8 conversion on GPUs with compute
    capability >= 8.9, bit decode elsewhere (the interpreter included); False = always the bit decode; True = always
    native (a GPU without float8 (< sm_89) cannot compile it; the interpreter runs it with NaN bytes decoded wrong).
    `store`: where chosen tiles persist (default: the user cache for the device's GPU + versions,
    `tuning.TileChoices`); `bench`: the timer `tile_tuner.PersistentTuner` calls (default: triton.testing.do_bench).
    Passing a `bench` also sends interpreter / CPU calls through the tuned launch (tests, with a fake timer)."""

    def __init__(self, fp8_native: bool | None = None, store: TileChoices | None = None, bench=None) -> None:
        self.fp8_native = fp8_native
        self._store = store
        self._bench = bench
        self._stores: dict[torch.device, TileChoices] = {}
        self._tuners: dict[tuple[torch.device, str, int], PersistentTuner] = {}

    def _tuner(self, device: torch.device, fmt: str, group_size: int, prologue: int = PROLOGUE_NONE) -> PersistentTuner:
        key = (device, "int4" if fmt == "int4" else "rowscale", group_size if fmt == "int4" else 0, prologue)
        suffix = ("", "_norm", "_silu")[prologue]
        if key not in self._tuners:
            if self._store is None and device not in self._stores:
                self._stores[device] = TileChoices(device=device)
            store = self._store if self._store is not None else self._stores[device]
            if fmt == "int4":
                tuner = PersistentTuner("dequant_int4" + suffix, _int4_kernel,
                                        _configs(CONFIGS_INT4, max_k=group_size), store, self._bench)
            else:
                tuner = PersistentTuner("dequant_rowscale" + suffix, _rowscale_kernel, _configs(CONFIGS_8BIT), store,
                                        self._bench)
            self._tuners[key] = tuner
        return self._tuners[key]

    def _use_fp8_native(self, x: torch.Tensor) -> bool:
        if self.fp8_native is not None:  # the caller's choice, also off a GPU (tests record / run that variant)
            return self.fp8_native
        if interpreting() or not x.is_cuda:
            return False
        return torch.cuda.get_device_capability(x.device) >= (8, 9)

    def __call__(self, *, x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                 zeros: torch.Tensor | None = None, fmt: str, group_size: int = 128, in_features: int | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
        """x `[..., K]` (any number of rows; fp32, bf16 or fp16) -> `[..., N]` in x's dtype. See the module doc for
        the formats of qweight / scales / zeros."""
        self._check_x(x, fmt)
        return self._launch(PROLOGUE_NONE, x, None, None, 0.0, qweight, scales, zeros, fmt, group_size, in_features,
                            bias)

    def norm_linear(self, *, x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor, eps: float,
                    qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None, fmt: str,
                    group_size: int = 128, in_features: int | None = None,
                    bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(linear(RMSNorm(x + delta) * norm_weight), x + delta) with the residual add and the norm in the GEMM's
        prologue (`gemm_prologue.py`), as `SkinnyLinear.norm_linear`; x, delta `[..., K]` contiguous."""
        self._check_x(x, fmt)
        problem = norm_operands_problem(x, delta, norm_weight, x.shape[-1])
        if problem:
            raise weight_error(fmt, problem)
        h = torch.empty_like(x) if delta is not None else x  # the residual stream after the add
        y = self._launch(PROLOGUE_NORM, x, delta, norm_weight, eps, qweight, scales, zeros, fmt, group_size,
                         in_features, bias, h=h)
        return y, h

    def silu_linear(self, *, gate_up: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                    zeros: torch.Tensor | None = None, fmt: str, group_size: int = 128, in_features: int | None = None,
                    bias: torch.Tensor | None = None) -> torch.Tensor:
        """linear(silu(gate) * up) for gate_up `[..., 2K]` contiguous (gate | up halves), SiLU*up in the prologue
        (bitwise `fused_norm.silu_mul` then this GEMM)."""
        self._check_x(gate_up, fmt)
        if gate_up.shape[-1] % 2 or not gate_up.is_contiguous():
            raise weight_error(fmt, f"silu prologue: gate_up must be contiguous with an even last dimension, got "
                                    f"{describe_tensor(gate_up)}")
        return self._launch(PROLOGUE_SILU, gate_up, None, None, 0.0, qweight, scales, zeros, fmt, group_size,
                            in_features, bias)

    @staticmethod
    def _check_x(x: torch.Tensor, fmt: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dtype not in ACT_DTYPES or x.dim() < 1:
            raise ValueError(f"dequant_gemm[{fmt}]: x must be a float32/bfloat16/float16 tensor [..., K], got "
                             f"{describe_tensor(x) if isinstance(x, torch.Tensor) else type(x).__name__}")

    def _launch(self, prologue: int, x: torch.Tensor, delta: torch.Tensor | None, norm_weight: torch.Tensor | None,
                eps: float, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, fmt: str,
                group_size: int, in_features: int | None, bias: torch.Tensor | None,
                h: torch.Tensor | None = None) -> torch.Tensor:
        """y `[..., N]` of A `[..., K]` (gate_up `[..., 2K]` for PROLOGUE_SILU) after the prologue."""
        width = x.shape[-1]  # A's stored width: K, or 2K (gate | up)
        k_in = width // 2 if prologue == PROLOGUE_SILU else width
        if fmt == "int4" and in_features is None:
            in_features = k_in
        n, k = check_weight(qweight, scales, zeros, fmt, group_size, in_features)
        if k_in != k:
            what = ("gate_up's last dimension must be 2K" if prologue == PROLOGUE_SILU
                    else "x's last dimension must be K")
            raise weight_error(fmt, f"{what} = {k} (in_features), got {describe_tensor(x)}")
        for name, t in (("qweight", qweight), ("scales", scales), ("zeros", zeros), ("bias", bias)):
            if t is not None and t.device != x.device:
                raise weight_error(fmt, f"{name} is on {t.device}, x on {x.device}")
        if bias is not None and (bias.shape != (n,) or not bias.is_contiguous() or not bias.dtype.is_floating_point):
            raise weight_error(fmt, f"bias must be a contiguous float tensor [{n}], got {describe_tensor(bias)}")
        x2 = x.reshape(-1, width)  # [M, K] (or [M, 2K])
        if x2.stride(1) != 1:
            x2 = x2.contiguous()
        m = x2.shape[0]
        y = x2.new_empty(m, n)  # [M, N]
        if m == 0 or n == 0:
            return y.view(*x.shape[:-1], n)
        if k == 0:
            y.copy_(bias.to(y.dtype).expand(m, n) if bias is not None else torch.zeros_like(y))
            return y.view(*x.shape[:-1], n)
        interp = self._bench is None and (interpreting() or not x.is_cuda)
        common = dict(BLOCK_M=BLOCK_M, PROLOGUE=prologue, HAS_DELTA=delta is not None, HAS_BIAS=bias is not None,
                      IEEE=x.dtype == torch.float32, DOT_FP32=interpreting() and x.dtype == torch.bfloat16)
        bias_arg = bias if bias is not None else scales
        a_args = (x2, x2 if delta is None else delta.reshape(-1, width), x2 if norm_weight is None else norm_weight,
                  x2 if h is None else h.view(-1, width))  # A, delta, norm weight, h (unused ones: any pointer)
        if fmt == "int4":
            args = (*a_args, qweight, scales, zeros if zeros is not None else scales, bias_arg, y, m, n, k,
                    x2.stride(0), qweight.stride(0), scales.stride(0), y.stride(0), eps)
            common.update(GROUP=group_size, HAS_ZEROS=zeros is not None)
            interp_k = min(group_size, 128)
        else:
            native = fmt == "fp8" and self._use_fp8_native(x)
            w = qweight.view(torch.uint8) if fmt == "fp8" else qweight  # fp8: bytes on both paths (see the kernel)
            args = (*a_args, w, scales, bias_arg, y, m, n, k, x2.stride(0), w.stride(0), y.stride(0), eps)
            common.update(FP8=fmt == "fp8", FP8_NATIVE=native)
            interp_k = 128
        if interp:  # the interpreter pays per program: wide tiles (fixed per N)
            block_n = min(2048, triton.next_power_of_2(n))
            kernel = _int4_kernel if fmt == "int4" else _rowscale_kernel
            kernel[(triton.cdiv(m, BLOCK_M), triton.cdiv(n, block_n))](*args, BLOCK_N=block_n, BLOCK_K=interp_k,
                                                                       **common)
        else:  # never M in the key: the tile (hence each row's reduction order) must not change with the batch
            grid = lambda tile: (triton.cdiv(m, BLOCK_M), triton.cdiv(n, tile.BLOCK_N))  # noqa: E731
            key = dict(fmt=fmt + ("-native" if common.get("FP8_NATIVE") else ""), N=n, K=k,
                       dtype=str(x.dtype).removeprefix("torch."))
            if fmt == "int4":
                key["group"] = group_size
            self._tuner(x.device, fmt, group_size, prologue).launch(key, grid, *args, **common)
        return y.view(*x.shape[:-1], n)
