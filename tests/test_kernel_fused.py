"""Fused decode-step glue kernels (residual add + RMSNorm, SiLU*up, RoPE + cache write) against float64 references.

Tolerance: the house rule |kernel - ref64| <= 2 |torch in the same dtype - ref64| + atol, on fresh random
inputs of odd sizes, with poisoned outputs (NaN) so that every element must be written.
"""

from __future__ import annotations

import pytest
import torch

from kernel_utils import DEVICE, assert_close_to_reference  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.fused_norm import add_rmsnorm, add_rmsnorm_ref, silu_mul, silu_mul_ref
from janus_rt.kernels.rope_cache import inv_freq_of, rope_cache, rope_cache_ref

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 64), (3, 1, 200), (2, 5, 2048)])
@pytest.mark.parametrize("with_delta", [True, False], ids=["residual", "plain"])
def test_add_rmsnorm(dtype: torch.dtype, shape: tuple, with_delta: bool) -> None:
    gen = torch.Generator().manual_seed(sum(shape) + with_delta)
    x = torch.randn(shape, generator=gen).to(DEVICE, dtype)
    delta = torch.randn(shape, generator=gen).to(DEVICE, dtype) if with_delta else None
    weight = (1 + 0.1 * torch.randn(shape[-1], generator=gen)).to(DEVICE, dtype)
    out, h = add_rmsnorm(x=x, weight=weight, eps=1e-6, delta=delta)
    ref_out, ref_h = add_rmsnorm_ref(x.double(), weight.double(), 1e-6, None if delta is None else delta.double())
    same_out, same_h = add_rmsnorm_ref(x, weight, 1e-6, delta)
    # (the interpreter truncates fp32 -> bf16 where GPUs round to nearest, so the sum gets the rule, not equality)
    assert_close_to_reference(h, same_h, ref_h, dtype, f"residual sum {shape}")
    assert_close_to_reference(out, same_out, ref_out, dtype, f"add_rmsnorm {shape}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1, 1, 2), (2, 3, 1500), (1, 1, 5632 * 2)])
def test_silu_mul(dtype: torch.dtype, shape: tuple) -> None:
    gen = torch.Generator().manual_seed(shape[-1])
    gate_up = (2 * torch.randn(shape, generator=gen)).to(DEVICE, dtype)
    out = silu_mul(gate_up=gate_up)
    assert_close_to_reference(out, silu_mul_ref(gate_up), silu_mul_ref(gate_up.double()), dtype, f"silu_mul {shape}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows, new, heads, kv_heads, head_dim, slot", [
    (1, 1, 2, 2, 64, 0), (3, 1, 4, 4, 64, 37), (2, 3, 8, 2, 128, 99), (2, 16, 4, 1, 64, 5),
])
def test_rope_cache(dtype: torch.dtype, rows: int, new: int, heads: int, kv_heads: int, head_dim: int,
                    slot: int) -> None:
    gen = torch.Generator().manual_seed(rows * 100 + slot)
    theta, max_len = 10000.0, 140
    qkv = torch.randn(rows, new, (heads + 2 * kv_heads) * head_dim, generator=gen).to(DEVICE, dtype)
    positions = (torch.randint(0, 3000, (rows, 1), generator=gen) + torch.arange(new)).to(DEVICE)  # [R, T]
    keys = torch.full((rows, kv_heads, max_len, head_dim), float("nan"), device=DEVICE, dtype=dtype)
    values = torch.full_like(keys, float("nan"))
    q = rope_cache(qkv=qkv, positions=positions, inv_freq=inv_freq_of(head_dim, theta, DEVICE),
                   slot=torch.tensor([slot], device=DEVICE), keys=keys, values=values, num_heads=heads)
    ref_k, ref_v = torch.zeros_like(keys, dtype=torch.float64), torch.zeros_like(values, dtype=torch.float64)
    same_k, same_v = torch.zeros_like(keys), torch.zeros_like(values)
    ref_q = rope_cache_ref(qkv.double(), positions, theta, slot, ref_k, ref_v, heads)
    same_q = rope_cache_ref(qkv, positions, theta, slot, same_k, same_v, heads)
    written = slice(slot, slot + new)
    assert_close_to_reference(q, same_q, ref_q, dtype, "rope q")
    assert_close_to_reference(keys[:, :, written], same_k[:, :, written], ref_k[:, :, written], dtype, "rope k")
    assert torch.equal(values[:, :, written], same_v[:, :, written]), "v is copied unchanged"
    untouched = torch.ones(max_len, dtype=torch.bool)
    untouched[written] = False
    assert keys[:, :, untouched].isnan().all() and values[:, :, untouched].isnan().all(), "only slot..slot+T written"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m, n, k", [(1, 64, 64), (2, 100, 300), (5, 2048, 200), (16, 130, 1000), (32, 65, 129)])
def test_skinny_gemm(dtype: torch.dtype, m: int, n: int, k: int) -> None:
    from janus_rt.kernels.skinny_gemm import SkinnyLinear, skinny_gemm_ref

    gen = torch.Generator().manual_seed(m * n + k)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(DEVICE, dtype)
    out = SkinnyLinear()(x=x, weight=w)
    same = torch.nn.functional.linear(x, w)
    assert_close_to_reference(out, same, skinny_gemm_ref(x.double(), w.double()), dtype, f"skinny gemm {m}x{n}x{k}")
