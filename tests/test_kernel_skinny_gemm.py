"""Skinny GEMM (decode linears) against a float64 reference, and its batch invariance (Triton interpreter on CPU).

Tolerance: the house rule |kernel - ref64| <= 2 |torch in the same dtype - ref64| + atol, on fresh random
inputs of odd sizes. Batch invariance: a row's output must be bitwise the same computed alone (M = 1) and
inside batches of any M, at any position, with random companions.
"""

from __future__ import annotations

import pytest
import torch

from kernel_utils import DEVICE, assert_close_to_reference  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.skinny_gemm import BLOCK_M, SkinnyLinear, skinny_gemm_ref

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
