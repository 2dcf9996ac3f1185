"""Skinny GEMM (decode linears) against a float64 reference, and its batch invariance (Triton interpreter on CPU).

Tolerance: the house rule |kernel - ref64| <= 2 |torch in the same dtype - ref64| + atol, on fresh random
inputs of odd sizes. Batch invariance: a row's output must be bitwise the same computed alone (M = 1) and
inside batches of any M, at any position, with random companions; for every prologue and split-K choice.
Split K and the prologues run through the tuned launch with pinned configs (`configs=[...]` + a timer that only
runs the config), as on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from kernel_utils import DEVICE, assert_close_to_reference  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.fused_norm import silu_mul
from janus_rt.kernels.skinny_gemm import (BLOCK_M, SkinnyLinear, norm_linear_ref, silu_linear_ref,
                                          skinny_gemm_ref)

pytestmark = pytest.mark.interpreter

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", [(1, 64, 64), (2, 100, 300), (3, 2048, 200), (17, 130, 1000), (33, 65, 129),
                                     (64, 96, 257)])
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_skinny_gemm(dtype: torch.dtype, m: int, n: int, k: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(m * n + k + with_bias)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype) if with_bias else None
    out = SkinnyLinear()(x=x, weight=w, bias=bias)
    assert out.shape == (m, n) and out.dtype == dtype
    same = torch.nn.functional.linear(x, w, bias)
    ref = skinny_gemm_ref(x.double(), w.double(), None if bias is None else bias.double())
    assert_close_to_reference(out, same, ref, dtype, f"skinny gemm {m}x{n}x{k} bias={with_bias}")


def test_leading_dimensions_and_strided_rows() -> None:
    """x `[..., K]` keeps its leading shape; a non-contiguous x gives the same rows as a contiguous one."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 2 * 70, generator=gen).to(DEVICE)[..., ::2]  # [2, 3, 70], stride 2 in K
    w = torch.randn(40, 70, generator=gen).to(DEVICE)
    bias = torch.randn(40, generator=gen).to(DEVICE)
    gemm = SkinnyLinear()
    out = gemm(x=x, weight=w, bias=bias)
    assert out.shape == (2, 3, 40)
    assert torch.equal(out, gemm(x=x.contiguous(), weight=w, bias=bias))
    torch.testing.assert_close(out.double(), skinny_gemm_ref(x.double(), w.double(), bias.double()),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rows_are_batch_invariant(dtype: torch.dtype) -> None:
    """Three probe rows alone (M = 1 each) and inside batches of M in {2, 3, 17, 33, 64} (more than one M block
    for M > BLOCK_M), placed at random positions among random companions: bitwise the same outputs."""
    gen = torch.Generator().manual_seed(21 + hash(str(dtype)) % 1000)
    n, k = 70, 300  # K spans several BLOCK_K tiles, N two BLOCK_N tiles
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    probes = torch.randn(3, k, generator=gen).to(DEVICE, dtype)
    gemm = SkinnyLinear()
    alone = [gemm(x=probes[i:i + 1], weight=w, bias=bias)[0] for i in range(3)]
    for m in (2, 3, 17, 33, 64):
        x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
        where = torch.randperm(m, generator=gen)[:3].tolist()
        if m > BLOCK_M:  # make sure one probe sits in a later M block, off the block's first row
            where[0] = m - 1
            where = list(dict.fromkeys(where))
        for i, row in enumerate(where):
            x[row] = probes[i]
        out = gemm(x=x, weight=w, bias=bias)
        for i, row in enumerate(where):
            assert torch.equal(out[row], alone[i]), f"probe {i} at row {row} of M={m}: max diff " \
                                                    f"{(out[row] - alone[i]).abs().max().item():.3g}"


def test_bad_arguments_are_refused() -> None:
    x = torch.randn(2, 16, device=DEVICE)
    w = torch.randn(8, 16, device=DEVICE)
    with pytest.raises(ValueError, match="bias must be"):
        SkinnyLinear()(x=x, weight=w, bias=torch.randn(7, device=DEVICE))
    with pytest.raises(ValueError, match="skinny_gemm: x"):
        SkinnyLinear()(x=x, weight=w.half())


def pinned(*configs: tuple) -> SkinnyLinear:
    """A launcher that runs exactly these (BLOCK_N, BLOCK_K, num_warps, num_stages, SPLIT_K) configs (the first
    when there are several: every timing ties) through the tuned launch, in the interpreter too."""
    def run_once(fn) -> float:
        fn()
        return 1.0

    return SkinnyLinear(configs=list(configs), bench=run_once)


SPLIT_CONFIGS = [(16, 64, 4, 1, 1), (16, 64, 4, 1, 2), (32, 64, 4, 1, 3), (16, 32, 4, 1, 8)]


def operands(m: int, n: int, k: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    delta = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    norm_w = (1 + 0.3 * torch.randn(k, generator=gen)).to(DEVICE, dtype)
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    gate_up = torch.randn(m, 2 * k, generator=gen).to(DEVICE, dtype)
    return x, delta, norm_w, w, bias, gate_up


def counters_are_zero(gemm: SkinnyLinear) -> bool:
    return all(not c.any() for c in gemm.counters.buffers())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", SPLIT_CONFIGS, ids=lambda c: f"split{c[-1]}")
@pytest.mark.parametrize("m, n, k", [(2, 48, 200), (17, 33, 96)])  # K=96 with split 8: some splits are empty
def test_split_k(dtype: torch.dtype, config: tuple, m: int, n: int, k: int) -> None:
    x, _, _, w, bias, _ = operands(m, n, k, dtype, seed=m + n + k + config[-1])
    gemm = pinned(config)
    out = gemm(x=x, weight=w, bias=bias)
    ref = skinny_gemm_ref(x.double(), w.double(), bias.double())
    assert_close_to_reference(out, torch.nn.functional.linear(x, w, bias), ref, dtype, f"split-K {config}")
    assert counters_are_zero(gemm), "the last program of each tile resets its counter"
    assert torch.equal(gemm(x=x, weight=w, bias=bias), out), "a second launch over the same counters"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", [None, *SPLIT_CONFIGS[1:3]],
                         ids=lambda c: "interp" if c is None else f"split{c[-1]}")
@pytest.mark.parametrize("with_delta", [True, False], ids=["add", "noadd"])
def test_norm_prologue(dtype: torch.dtype, config: tuple | None, with_delta: bool) -> None:
    """linear(RMSNorm(x + delta)) against float64; h = x + delta as the torch add (one rounding)."""
    m, n, k = 3, 70, 300
    x, delta, norm_w, w, bias, _ = operands(m, n, k, dtype, seed=7 + with_delta)
    delta = delta if with_delta else None
    gemm = SkinnyLinear() if config is None else pinned(config)
    out, h = gemm.norm_linear(x=x, delta=delta, norm_weight=norm_w, eps=1e-6, weight=w, bias=bias)
    assert out.shape == (m, n) and h.shape == (m, k)
    up = lambda t: None if t is None else t.double()  # noqa: E731
    ref, ref_h = norm_linear_ref(x.double(), up(delta), norm_w.double(), 1e-6, w.double(), bias.double())
    same, same_h = norm_linear_ref(x, delta, norm_w, 1e-6, w, bias)
    assert_close_to_reference(h, same_h, ref_h, dtype, "residual sum")
    assert_close_to_reference(out, same, ref, dtype, f"norm prologue {config}")
    if not with_delta:
        assert h.data_ptr() == x.data_ptr(), "without delta the residual is x itself"
    assert counters_are_zero(gemm)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", [None, *SPLIT_CONFIGS[1:3]],
                         ids=lambda c: "interp" if c is None else f"split{c[-1]}")
def test_silu_prologue_is_bitwise_the_unfused_pair(dtype: torch.dtype, config: tuple | None) -> None:
    """silu_linear == silu_mul then the same GEMM (same tile), bit for bit, and close to float64."""
    m, n, k = 5, 40, 150
    _, _, _, w, bias, gate_up = operands(m, n, k, dtype, seed=11)
    gemm = SkinnyLinear() if config is None else pinned(config)
    fused = gemm.silu_linear(gate_up=gate_up, weight=w, bias=bias)
    assert torch.equal(fused, gemm(x=silu_mul(gate_up=gate_up), weight=w, bias=bias))
    ref = silu_linear_ref(gate_up.double(), w.double(), bias.double())
    assert_close_to_reference(fused, silu_linear_ref(gate_up, w, bias), ref, dtype, "silu prologue")


@pytest.mark.parametrize("prologue", ["plain", "norm", "silu"])
@pytest.mark.parametrize("config", [None, SPLIT_CONFIGS[2]], ids=["interp", "split3"])
def test_prologues_and_split_k_are_batch_invariant(prologue: str, config: tuple | None) -> None:
    """Probe rows alone and at random positions of batches of M in {2, 17, 33}: bitwise the same outputs (and the
    same residual rows for the norm prologue)."""
    dtype = torch.bfloat16
    n, k = 40, 160
    gen = torch.Generator().manual_seed(3)
    _, _, norm_w, w, bias, _ = operands(1, n, k, dtype, seed=5)
    width = 2 * k if prologue == "silu" else k
    gemm = SkinnyLinear() if config is None else pinned(config)

    def run(a: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if prologue == "norm":
            return gemm.norm_linear(x=a, delta=d, norm_weight=norm_w, eps=1e-5, weight=w, bias=bias)
        if prologue == "silu":
            return gemm.silu_linear(gate_up=a, weight=w, bias=bias), a
        return gemm(x=a, weight=w, bias=bias), a

    probes = torch.randn(2, width, generator=gen).to(DEVICE, dtype)
    probe_deltas = torch.randn(2, width, generator=gen).to(DEVICE, dtype)
    alone = [run(probes[i:i + 1].contiguous(), probe_deltas[i:i + 1].contiguous()) for i in range(2)]
    for m in (2, 17, 33):
        a = torch.randn(m, width, generator=gen).to(DEVICE, dtype)
        d = torch.randn(m, width, generator=gen).to(DEVICE, dtype)
        where = [m - 1, int(torch.randint(0, m - 1, (1,), generator=gen))]
        for i, row in enumerate(where):
            a[row], d[row] = probes[i], probe_deltas[i]
        out, h = run(a, d)
        for i, row in enumerate(where):
            assert torch.equal(out[row], alone[i][0][0]), f"{prologue} probe {i} at row {row} of M={m}"
            assert torch.equal(h[row], alone[i][1][0]), f"{prologue} residual of probe {i} at row {row} of M={m}"


def test_bad_prologue_arguments_are_refused() -> None:
    x, delta, norm_w, w, bias, gate_up = operands(2, 8, 16, torch.float32, seed=1)
    gemm = SkinnyLinear()
    with pytest.raises(ValueError, match="norm weight must be contiguous \\[16\\]"):
        gemm.norm_linear(x=x, delta=delta, norm_weight=norm_w[:15], eps=1e-6, weight=w)
    with pytest.raises(ValueError, match="must be contiguous, of one shape and dtype"):
        gemm.norm_linear(x=x, delta=delta[:1], norm_weight=norm_w, eps=1e-6, weight=w)
    with pytest.raises(ValueError, match="gate_up must be contiguous \\[..., 32\\]"):
        gemm.silu_linear(gate_up=gate_up[:, :30], weight=w)
    with pytest.raises(ValueError, match="configs are"):
        SkinnyLinear(configs=[(16, 64, 4, 1)])
