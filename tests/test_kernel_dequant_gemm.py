"""Weight-only dequant GEMMs (int8, grouped int4, fp8 e4m3fn) against a float64 "dequantize, then matmul"
reference, the int4 nibble order, the fp8 bit decode, batch invariance and argument checks (Triton interpreter on
CPU).

Inputs are fresh random draws each run; every failure message carries the seed that reproduces it.

Tolerances, relative to the output's scale (max |reference|), the reference being float64 on the same quantized
weight and the same (already rounded) x:
- float32 x: 1e-4. The dequantized weight tile is exact in fp32 and products are accumulated in fp32 over
  K <= 160 terms (worst case ~K * 2^-24 ~ 1e-5 of the scale), then one fp32 multiply by the scale.
- float16 / bfloat16 x: the weight tile in x's dtype is exact, products are exact in the fp32 accumulator, so the
  error is dominated by the one final rounding to x's dtype: 2^-11 (fp16), 2^-8 (bf16; the interpreter truncates,
  2^-7), plus fp32 accumulation. 2e-2 (bf16) and 5e-3 (fp16) leave margin for a different summation order on a
  GPU while still catching a wrong scale, group, zero point or nibble (each an O(1) relative error).
"""

from __future__ import annotations

import os

import pytest
import torch

from kernel_utils import DEVICE  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.dequant_gemm import BLOCK_M, DequantLinear, decode_e4m3fn
from janus_rt.kernels.reference_dequant import (dequant_gemm_ref, dequantize, dequantize_fp8, dequantize_int4,
                                                dequantize_int8, unpack_int4)

pytestmark = pytest.mark.interpreter

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
RTOL = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 2e-2}
SHAPES = [(1, 24, 64), (2, 40, 80), (5, 96, 160), (17, 24, 80), (33, 40, 160)]  # (M, N, K), K = in_features


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh seed per test and run (reported by failure messages through gen.initial_seed())."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))


def make_quantized(fmt: str, n: int, k: int, gen: torch.Generator, group_size: int = 128,
                   with_zeros: bool = False) -> dict:
    """Random quantized weights in the storage format (the int4 padding nibbles are random too: they must be
    ignored)."""
    if fmt == "int8":
        q = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
        return dict(qweight=q.to(DEVICE), scales=(torch.rand(n, generator=gen) * 0.02 + 1e-3).to(DEVICE))
    if fmt == "fp8":
        mag = torch.randn(n, k, generator=gen) * 2.0 ** torch.randint(-10, 7, (n, k), generator=gen).float()
        q = mag.clamp(-448, 448).to(torch.float8_e4m3fn)  # spans subnormals .. the largest finite value
        return dict(qweight=q.to(DEVICE), scales=(torch.rand(n, generator=gen) * 0.02 + 1e-3).to(DEVICE))
    groups = -(-k // group_size)
    q = torch.randint(0, 256, (n, groups * group_size // 2), generator=gen, dtype=torch.uint8)
    scales = (torch.rand(n, groups, generator=gen) * 0.1 + 1e-3).half()
    zeros = torch.randint(0, 16, (n, groups), generator=gen, dtype=torch.uint8) if with_zeros else None
    return dict(qweight=q.to(DEVICE), scales=scales.to(DEVICE), zeros=None if zeros is None else zeros.to(DEVICE),
                group_size=group_size, in_features=k)


def reference_weight(fmt: str, w: dict) -> torch.Tensor:
    if fmt == "int8":
        return dequantize_int8(w["qweight"], w["scales"])
    if fmt == "fp8":
        return dequantize_fp8(w["qweight"], w["scales"])
    return dequantize_int4(w["qweight"], w["scales"], w["zeros"], w["group_size"], w["in_features"])


def check_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert out.dtype == dtype, f"{what}: output dtype {out.dtype}"
    assert torch.isfinite(out).all(), f"{what}: non-finite values (unwritten output?)"
    scale = ref.abs().max().item()
    err = (out.double() - ref).abs().max().item()
    assert err <= RTOL[dtype] * scale, f"{what}: max error {err:.3g} > {RTOL[dtype]} * output scale {scale:.3g}"


def run_case(fmt: str, dtype: torch.dtype, m: int, n: int, k: int, with_bias: bool, gen: torch.Generator,
             **wkw) -> None:
    w = make_quantized(fmt, n, k, gen, **wkw)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype) if with_bias else None
    out = DequantLinear()(x=x, fmt=fmt, bias=bias, **w)
    assert out.shape == (m, n)
    ref = dequant_gemm_ref(x.double(), reference_weight(fmt, w).double(), None if bias is None else bias.double())
    check_close(out, ref, dtype, f"{fmt} {dtype} {m}x{n}x{k} bias={with_bias} {wkw} seed={gen.initial_seed()}")


@pytest.mark.parametrize("fmt", ["int8", "fp8"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_rowscale_formats_match_reference(fmt, dtype, m, n, k, with_bias, gen) -> None:
    run_case(fmt, dtype, m, n, k, with_bias, gen)


@pytest.mark.parametrize("group_size", [16, 32, 128])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zeros"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", SHAPES)  # K = 80 is not a multiple of 32 or 128: padded last group
def test_int4_matches_reference(group_size, with_zeros, dtype, m, n, k, gen) -> None:
    run_case("int4", dtype, m, n, k, with_bias=m % 2 == 1, gen=gen, group_size=group_size, with_zeros=with_zeros)


def test_int4_nibble_order_by_hand() -> None:
    """Byte j holds k = 2j in its low nibble, k = 2j + 1 in its high one; the kernel, the torch unpack and the
    reference dequantizer all agree on a hand-built weight with one non-zero (q - 8) at a known k per row."""
    n, k, g = 4, 32, 16
    q = torch.full((n, k // 2), 0x88, dtype=torch.uint8)  # every nibble 8: w = 0 (symmetric zero point 8)
    q[0, 2] = 0x8B   # row 0: k = 4 (low nibble of byte 2) is 11 -> w = 3
    q[1, 2] = 0xB8   # row 1: k = 5 (high nibble of byte 2) is 11 -> w = 3
    q[2, 0] = 0x8F   # row 2: k = 0 -> 15 -> w = 7
    q[3, 15] = 0x08  # row 3: k = 31 (high nibble of the last byte) is 0 -> w = -8
    scales = torch.ones(n, k // g, dtype=torch.float16)
    scales[:, 1] = 2.0  # second group (k >= 16) scaled by 2
    expect = torch.zeros(n, k)
    expect[0, 4], expect[1, 5], expect[2, 0], expect[3, 31] = 3.0, 3.0, 7.0, -16.0
    assert unpack_int4(q)[0, 4] == 11 and unpack_int4(q)[1, 5] == 11
    assert torch.equal(dequantize_int4(q, scales, None, g, k), expect)
    eye = torch.eye(k, device=DEVICE)  # x = I: y[i, n] = w[n, i]
    out = DequantLinear()(x=eye, qweight=q.to(DEVICE), scales=scales.to(DEVICE), fmt="int4", group_size=g)
    assert torch.equal(out.T.cpu(), expect), (out.T.cpu() != expect).nonzero().tolist()


@pytest.mark.parametrize("group_size", [16, 32, 128])
@pytest.mark.parametrize("with_zeros", [False, True], ids=["sym", "zeros"])
def test_int4_identity_is_exact(group_size, with_zeros, gen) -> None:
    """x = I (fp32) reads the kernel's dequantized weight back column by column: exactly the reference's, for
    K = 80 (padding columns dropped) and every nibble position."""
    k = 80
    w = make_quantized("int4", 24, k, gen, group_size=group_size, with_zeros=with_zeros)
    out = DequantLinear()(x=torch.eye(k, device=DEVICE), fmt="int4", **w)
    assert torch.equal(out.T, reference_weight("int4", w)), f"seed={gen.initial_seed()}"


def test_fp8_bit_decode_all_patterns() -> None:
    """The kernels' e4m3fn bit decode equals torch's float8_e4m3fn -> float32 for all 256 bytes (NaN for
    0x7F / 0xFF, signed zeros)."""
    bits = torch.arange(256, dtype=torch.int32).to(torch.uint8).to(DEVICE)
    got = decode_e4m3fn(bits).cpu()
    want = bits.cpu().view(torch.float8_e4m3fn).float()
    nan = want.isnan()
    assert nan.nonzero().flatten().tolist() == [0x7F, 0xFF]
    assert got[nan].isnan().all()
    assert torch.equal(got[~nan], want[~nan]) and torch.equal(got[~nan].signbit(), want[~nan].signbit())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fp8_gemm_reads_every_pattern_exactly(dtype) -> None:
    """All 254 finite e4m3fn values (plus 2 zeros) as a weight, x = I: the GEMM returns each exactly (every e4m3
    value is a bf16 / fp16 / fp32 value)."""
    bits = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    bits = bits[(bits != 0x7F) & (bits != 0xFF)]
    bits = torch.cat([bits, torch.zeros(2, dtype=torch.uint8)]).view(2, 128)
    q = bits.view(torch.float8_e4m3fn)
    out = DequantLinear()(x=torch.eye(128, device=DEVICE, dtype=dtype), qweight=q.to(DEVICE),
                          scales=torch.ones(2, device=DEVICE), fmt="fp8")
    assert torch.equal(out.T.float().cpu(), q.float())


@pytest.mark.parametrize("fmt, wkw", [("int8", {}), ("fp8", {}), ("int4", dict(group_size=32, with_zeros=True)),
                                      ("int4", dict(group_size=128))], ids=["int8", "fp8", "int4g32z", "int4g128"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rows_are_batch_invariant(fmt, wkw, dtype, gen) -> None:
    """Three probe rows alone (M = 1 each) and inside batches of M in {2, 16, 33} at random positions among random
    companions (one probe in the last M block, off its first row): bitwise the same outputs."""
    n, k = 40, 272  # K spans several K tiles (and int4 groups, with a padded last one), N is not a power of two
    w = make_quantized(fmt, n, k, gen, **wkw)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    probes = torch.randn(3, k, generator=gen).to(DEVICE, dtype)
    gemm = DequantLinear()
    alone = [gemm(x=probes[i:i + 1], fmt=fmt, bias=bias, **w)[0] for i in range(3)]
    for m in (2, 16, 33):
        x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
        where = torch.randperm(m, generator=gen)[:3].tolist()
        if m > BLOCK_M:
            where[0] = m - 1
            where = list(dict.fromkeys(where))
        for i, row in enumerate(where):
            x[row] = probes[i]
        out = gemm(x=x, fmt=fmt, bias=bias, **w)
        for i, row in enumerate(where):
            diff = (out[row] - alone[i]).abs().max().item()
            assert torch.equal(out[row], alone[i]), \
                f"{fmt} probe {i} at row {row} of M={m} seed={gen.initial_seed()}: max diff {diff:.3g}"


@pytest.mark.parametrize("fmt", ["int8", "int4", "fp8"])
def test_leading_dims_strided_x_and_empty_batch(fmt, gen) -> None:
    """x `[..., K]` keeps its leading shape; a strided x gives the same rows as a contiguous one; M = 0 works."""
    k, n = 48, 24
    w = make_quantized(fmt, n, k, gen, group_size=16)
    x = torch.randn(2, 3, 2 * k, generator=gen).to(DEVICE)[..., ::2]  # [2, 3, K], stride 2 in K
    gemm = DequantLinear()
    out = gemm(x=x, fmt=fmt, **w)
    assert out.shape == (2, 3, n)
    assert torch.equal(out, gemm(x=x.contiguous(), fmt=fmt, **w))
    ref = dequant_gemm_ref(x.double(), reference_weight(fmt, w).double())
    check_close(out, ref, torch.float32, f"{fmt} leading dims seed={gen.initial_seed()}")
    empty = gemm(x=torch.empty(0, k, device=DEVICE, dtype=torch.bfloat16), fmt=fmt, **w)
    assert empty.shape == (0, n) and empty.dtype == torch.bfloat16
    assert gemm(x=torch.empty(4, 0, k, device=DEVICE), fmt=fmt, **w).shape == (4, 0, n)


@pytest.mark.parametrize("fmt", ["int8", "int4", "fp8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_dequantize_helper(fmt, dtype, gen) -> None:
    """dequantize() is the reference dequantizer in the asked dtype; prefill's dequantize-then-GEMM agrees with
    the decode kernel."""
    w = make_quantized(fmt, 24, 80, gen, group_size=32, with_zeros=True)
    full = dequantize(w["qweight"], w["scales"], w.get("zeros"), fmt, w.get("group_size", 128),
                      w.get("in_features"), dtype)
    assert full.shape == (24, 80) and full.dtype == dtype
    assert torch.equal(full, reference_weight(fmt, w).to(dtype))
    x = torch.randn(3, 80, generator=gen).to(DEVICE)
    check_close(DequantLinear()(x=x, fmt=fmt, **w), (x.double() @ dequantize(
        w["qweight"], w["scales"], w.get("zeros"), fmt, w.get("group_size", 128), w.get("in_features"),
        torch.float64).T), torch.float32, f"{fmt} dequantize seed={gen.initial_seed()}")


def test_bad_arguments_are_refused() -> None:
    gemm = DequantLinear()
    x = torch.randn(2, 64, device=DEVICE)
    i8 = dict(qweight=torch.zeros(8, 64, dtype=torch.int8, device=DEVICE), scales=torch.ones(8, device=DEVICE))
    i4 = dict(qweight=torch.zeros(8, 32, dtype=torch.uint8, device=DEVICE),
              scales=torch.ones(8, 2, dtype=torch.float16, device=DEVICE), group_size=32)
    f8 = dict(qweight=torch.zeros(8, 64, device=DEVICE).to(torch.float8_e4m3fn), scales=torch.ones(8, device=DEVICE))
    cases = [
        (dict(x=x, fmt="int3", **i8), r"fmt must be one of"),
        (dict(x=x.to(torch.int32), fmt="int8", **i8), r"x must be a float32/bfloat16/float16 tensor"),
        (dict(x=x[:, :63], fmt="int8", **i8), r"x's last dimension must be K = 64"),
        (dict(x=x, fmt="int8", qweight=i8["qweight"].to(torch.uint8), scales=i8["scales"]),
         r"qweight must be torch.int8 \[N, K\], got torch.uint8"),
        (dict(x=x, fmt="int8", qweight=i8["qweight"], scales=i8["scales"].half()),
         r"scale must be a contiguous float32 tensor \[8\].*got torch.float16"),
        (dict(x=x, fmt="int8", qweight=i8["qweight"], scales=torch.ones(7, device=DEVICE)),
         r"scale must be .*\[8\].*got torch.float32 \[7\]"),
        (dict(x=x, fmt="int8", zeros=torch.zeros(8, 2, dtype=torch.uint8, device=DEVICE), **i8),
         r"zeros are for int4 only"),
        (dict(x=x, fmt="int8", qweight=i8["qweight"][0], scales=i8["scales"]), r"qweight must be a 2-D tensor"),
        (dict(x=x, fmt="int8", qweight=torch.zeros(64, 8, dtype=torch.int8, device=DEVICE).T, scales=i8["scales"]),
         r"qweight rows must be contiguous"),
        (dict(x=x, fmt="fp8", qweight=f8["qweight"].float(), scales=f8["scales"]),
         r"qweight must be torch.float8_e4m3fn"),
        (dict(x=x, fmt="int4", qweight=i4["qweight"].to(torch.int8), scales=i4["scales"], group_size=32),
         r"qweight must be uint8 \[N, K_pad / 2\]"),
        (dict(x=x, fmt="int4", qweight=i4["qweight"], scales=i4["scales"], group_size=24),
         r"group_size must be a power of two >= 16, got 24"),
        (dict(x=x, fmt="int4", qweight=i4["qweight"], scales=i4["scales"], group_size=8),
         r"group_size must be a power of two >= 16, got 8"),
        (dict(x=x, fmt="int4", qweight=i4["qweight"], scales=i4["scales"].float(), group_size=32),
         r"scales must be float16 \[8, 2\].*got torch.float32"),
        (dict(x=x, fmt="int4", qweight=i4["qweight"], scales=i4["scales"], group_size=16),
         r"scales must be float16 \[8, 4\]"),
        (dict(x=x, fmt="int4", zeros=torch.zeros(8, 2, dtype=torch.int32, device=DEVICE), **i4),
         r"zeros must be None or uint8 \[8, 2\].*got torch.int32"),
        (dict(x=x[:, :30], fmt="int4", **i4), r"in_features 30 does not pad to qweight's 64 columns"),
        (dict(x=x, fmt="int4", in_features=70, **i4), r"in_features 70 does not pad"),
        (dict(x=x, fmt="int8", bias=torch.ones(7, device=DEVICE), **i8),
         r"bias must be a contiguous float tensor \[8\]"),
    ]
    for kwargs, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            gemm(**kwargs)
    with pytest.raises(ValueError, match=r"group_size must be a power of two"):
        dequantize(i4["qweight"], i4["scales"], None, "int4", 48, None, torch.float32)


# ------------------------------------------------------------------------------------------ prologues
FORMATS_KW = [("int8", {}), ("fp8", {}), ("int4", dict(group_size=32, with_zeros=True)),
              ("int4", dict(group_size=128))]
FORMAT_IDS = ["int8", "fp8", "int4g32z", "int4g128"]


@pytest.mark.parametrize("fmt, wkw", FORMATS_KW, ids=FORMAT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("with_delta", [True, False], ids=["add", "noadd"])
def test_norm_prologue_matches_reference(fmt, wkw, dtype, with_delta, gen) -> None:
    """linear(RMSNorm(x + delta) * w) with the norm in the dequant-GEMM's prologue, against float64."""
    from janus_rt.kernels.skinny_gemm import norm_linear_ref

    m, n, k = 3, 40, 80  # K = 80: the last int4 group is padded
    w = make_quantized(fmt, n, k, gen, **wkw)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    delta = torch.randn(m, k, generator=gen).to(DEVICE, dtype) if with_delta else None
    norm_w = (1 + 0.3 * torch.randn(k, generator=gen)).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    out, h = DequantLinear().norm_linear(x=x, delta=delta, norm_weight=norm_w, eps=1e-6, fmt=fmt, bias=bias, **w)
    ref, ref_h = norm_linear_ref(x.double(), None if delta is None else delta.double(), norm_w.double(), 1e-6,
                                 reference_weight(fmt, w).double(), bias.double())
    what = f"{fmt} {dtype} norm prologue seed={gen.initial_seed()}"
    check_close(out, ref, dtype, what)
    check_close(h, ref_h, dtype, what + " (residual)")
    assert with_delta or h.data_ptr() == x.data_ptr()


@pytest.mark.parametrize("fmt, wkw", FORMATS_KW, ids=FORMAT_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_silu_prologue_is_bitwise_the_unfused_pair(fmt, wkw, dtype, gen) -> None:
    from janus_rt.kernels.fused_norm import silu_mul
    from janus_rt.kernels.skinny_gemm import silu_linear_ref

    m, n, k = 5, 24, 80
    w = make_quantized(fmt, n, k, gen, **wkw)
    gate_up = torch.randn(m, 2 * k, generator=gen).to(DEVICE, dtype)
    gemm = DequantLinear()
    fused = gemm.silu_linear(gate_up=gate_up, fmt=fmt, **w)
    assert torch.equal(fused, gemm(x=silu_mul(gate_up=gate_up), fmt=fmt, **w))
    ref = silu_linear_ref(gate_up.double(), reference_weight(fmt, w).double())
    check_close(fused, ref, dtype, f"{fmt} {dtype} silu prologue seed={gen.initial_seed()}")


@pytest.mark.parametrize("prologue", ["norm", "silu"])
@pytest.mark.parametrize("fmt, wkw", FORMATS_KW[1:3], ids=FORMAT_IDS[1:3])
def test_prologue_rows_are_batch_invariant(prologue, fmt, wkw, gen) -> None:
    """A probe row alone and at the end of a 17-row batch (second M block): the same bits, output and residual."""
    dtype = torch.bfloat16
    n, k = 24, 64
    w = make_quantized(fmt, n, k, gen, **wkw)
    width = 2 * k if prologue == "silu" else k
    norm_w = torch.randn(k, generator=gen).to(DEVICE, dtype)
    gemm = DequantLinear()

    def run(a: torch.Tensor, d: torch.Tensor):
        if prologue == "norm":
            return gemm.norm_linear(x=a, delta=d, norm_weight=norm_w, eps=1e-5, fmt=fmt, **w)
        return gemm.silu_linear(gate_up=a, fmt=fmt, **w), a

    probe = torch.randn(1, width, generator=gen).to(DEVICE, dtype)
    probe_d = torch.randn(1, width, generator=gen).to(DEVICE, dtype)
    alone, alone_h = run(probe, probe_d)
    a = torch.randn(17, width, generator=gen).to(DEVICE, dtype)
    d = torch.randn(17, width, generator=gen).to(DEVICE, dtype)
    a[16], d[16] = probe[0], probe_d[0]
    out, h = run(a, d)
    assert torch.equal(out[16], alone[0]) and torch.equal(h[16], alone_h[0])


def test_bad_prologue_arguments_are_refused(gen) -> None:
    w = make_quantized("int8", 8, 16, gen)
    x = torch.randn(2, 16, generator=gen)
    gemm = DequantLinear()
    with pytest.raises(ValueError, match="norm weight must be contiguous \\[16\\]"):
        gemm.norm_linear(x=x, delta=None, norm_weight=torch.ones(15), eps=1e-6, fmt="int8", **w)
    with pytest.raises(ValueError, match="of one shape and dtype"):
        gemm.norm_linear(x=x, delta=x[:1].clone(), norm_weight=torch.ones(16), eps=1e-6, fmt="int8", **w)
    with pytest.raises(ValueError, match="gate_up's last dimension must be 2K = 16"):
        gemm.silu_linear(gate_up=torch.randn(2, 30), fmt="int8", **w)
