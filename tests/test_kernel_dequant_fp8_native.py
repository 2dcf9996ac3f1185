"""The fp8 dequant GEMM's native variant (`DequantLinear(fp8_native=True)`: the weight bytes reinterpreted as float8
and converted by the hardware, what an L4 / H100 runs by default) against the float64 reference, in the
interpreter on CPU and natively on a GPU with float8 (sm_89+). The bit-decode variant is tested in
test_kernel_dequant_gemm.py; tests/test_kernel_compile.py compiles both for the GPUs.

The interpreter's float8 conversion turns the two NaN patterns (0x7F, 0xFF) into +-480 (the GPU gives NaN), so
the weights here are finite, as every quantizer writes them.
"""

from __future__ import annotations

import os

import pytest
import torch

from kernel_utils import DEVICE  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)
from test_kernel_dequant_gemm import DTYPES, check_close, make_quantized, reference_weight

from janus_rt.kernels.dequant_gemm import DequantLinear
from janus_rt.kernels.reference_dequant import dequant_gemm_ref

pytestmark = [pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9),
                                 reason="float8 conversion needs sm_89+"), pytest.mark.interpreter]


@pytest.fixture
def gen() -> torch.Generator:
    """A fresh seed per test and run (reported by failure messages through gen.initial_seed())."""
    return torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_native_fp8_reads_every_finite_pattern_exactly(dtype) -> None:
    """All 254 finite e4m3fn values (plus 2 zeros) as a weight, x = I: the GEMM returns each exactly; a bitcast
    mistaken for a value cast (or a byte order slip) changes them."""
    bits = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    bits = bits[(bits != 0x7F) & (bits != 0xFF)]
    bits = torch.cat([bits, torch.zeros(2, dtype=torch.uint8)]).view(2, 128)
    q = bits.view(torch.float8_e4m3fn)
    out = DequantLinear(fp8_native=True)(x=torch.eye(128, device=DEVICE, dtype=dtype), qweight=q.to(DEVICE),
                                         scales=torch.ones(2, device=DEVICE), fmt="fp8")
    assert torch.equal(out.T.float().cpu(), q.float())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", [(1, 24, 64), (17, 40, 160)])  # K = 160: a masked last K tile (past K: 0)
def test_native_fp8_matches_reference(dtype, m, n, k, gen) -> None:
    w = make_quantized("fp8", n, k, gen)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    out = DequantLinear(fp8_native=True)(x=x, fmt="fp8", bias=bias, **w)
    ref = dequant_gemm_ref(x.double(), reference_weight("fp8", w).double(), bias.double())
    check_close(out, ref, dtype, f"native fp8 {dtype} {m}x{n}x{k} seed={gen.initial_seed()}")
