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

pytestmark = pytest.mark.interpreter

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


def rope_inputs(rows: int, new: int, heads: int, kv_heads: int, head_dim: int, max_len: int, pool_rows: int | None,
                dtype: torch.dtype, gen: torch.Generator):
    """(qkv, positions [R, T] at random per-row starts, NaN-poisoned keys/values pool, cache_rows or None)."""
    qkv = torch.randn(rows, new, (heads + 2 * kv_heads) * head_dim, generator=gen).to(DEVICE, dtype)
    positions = (torch.randint(0, max_len - new + 1, (rows, 1), generator=gen) + torch.arange(new)).to(DEVICE)
    keys = torch.full((pool_rows or rows, kv_heads, max_len, head_dim), float("nan"), device=DEVICE, dtype=dtype)
    values = torch.full_like(keys, float("nan"))
    cache_rows = None
    if pool_rows is not None:
        cache_rows = torch.randperm(pool_rows, generator=gen)[:rows].int().to(DEVICE)
    return qkv, positions, keys, values, cache_rows


def written_mask(pool_rows: int, max_len: int, positions: torch.Tensor, cache_rows: torch.Tensor | None):
    """[R_pool, S] bool: the (pool row, slot) pairs a call writes."""
    mask = torch.zeros(pool_rows, max_len, dtype=torch.bool, device=DEVICE)
    rows = cache_rows.long() if cache_rows is not None else torch.arange(positions.shape[0], device=DEVICE)
    mask[rows[:, None], positions] = True
    return mask


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rows, new, heads, kv_heads, head_dim, max_len", [
    (1, 1, 2, 2, 64, 1), (3, 1, 4, 4, 64, 140), (2, 3, 8, 2, 128, 3100), (2, 16, 4, 1, 64, 40),
])
@pytest.mark.parametrize("pooled", [False, True], ids=["rows", "pool"])
def test_rope_cache(dtype: torch.dtype, rows: int, new: int, heads: int, kv_heads: int, head_dim: int,
                    max_len: int, pooled: bool) -> None:
    """Per-row positions are the RoPE angles and the write slots (up to 3100: large angles); with `pool` the
    cache has more rows than qkv and row r writes pool row cache_rows[r]. Everything else stays NaN."""
    gen = torch.Generator().manual_seed(rows * 100 + max_len + pooled)
    theta = 10000.0
    pool_rows = rows + 3 if pooled else None
    qkv, positions, keys, values, cache_rows = rope_inputs(rows, new, heads, kv_heads, head_dim, max_len, pool_rows,
                                                           dtype, gen)
    q = rope_cache(qkv=qkv, positions=positions, inv_freq=inv_freq_of(head_dim, theta, DEVICE), keys=keys,
                   values=values, num_heads=heads, cache_rows=cache_rows)
    ref_k, ref_v = torch.zeros_like(keys, dtype=torch.float64), torch.zeros_like(values, dtype=torch.float64)
    same_k, same_v = torch.zeros_like(keys), torch.zeros_like(values)
    ref_q = rope_cache_ref(qkv.double(), positions, theta, ref_k, ref_v, heads, cache_rows)
    same_q = rope_cache_ref(qkv, positions, theta, same_k, same_v, heads, cache_rows)
    written = written_mask(keys.shape[0], max_len, positions, cache_rows)  # [R_pool, S]
    assert int(written.sum()) == rows * new

    def at(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2)[mask]  # [n, Hkv, D]

    assert_close_to_reference(q, same_q, ref_q, dtype, "rope q")
    assert_close_to_reference(at(keys, written), at(same_k, written), at(ref_k, written), dtype, "rope k")
    assert torch.equal(at(values, written), at(same_v, written)), "v is copied unchanged"
    assert at(keys, ~written).isnan().all() and at(values, ~written).isnan().all(), \
        "only the (cache_rows[r], positions[r, t]) slots may be written"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rope_cache_rows_are_batch_invariant(dtype: torch.dtype) -> None:
    """Two probe rows alone (R = 1, a one-row cache, no cache_rows) and inside batches of 3 and 6 rows at other
    batch positions, with random companions, a larger pool (other S) and non-identity cache_rows: q and the
    written k/v must be bitwise the same."""
    gen = torch.Generator().manual_seed(77 + hash(str(dtype)) % 1000)
    theta, heads, kv_heads, head_dim, new, alone_len = 10000.0, 4, 2, 64, 2, 50
    inv_freq = inv_freq_of(head_dim, theta, DEVICE)
    probes = []
    for _ in range(2):
        qkv, positions, keys, values, _ = rope_inputs(1, new, heads, kv_heads, head_dim, alone_len, None, dtype, gen)
        q = rope_cache(qkv=qkv, positions=positions, inv_freq=inv_freq, keys=keys, values=values, num_heads=heads)
        slots = positions[0]
        probes.append((qkv, positions, q, keys[0][:, slots], values[0][:, slots]))
    for rows, max_len in ((3, alone_len), (6, 700)):
        qkv, positions, keys, values, cache_rows = rope_inputs(rows, new, heads, kv_heads, head_dim, max_len,
                                                               rows + 2, dtype, gen)
        where = torch.randperm(rows, generator=gen)[:len(probes)].tolist()
        for (pqkv, ppos, *_), r in zip(probes, where):
            qkv[r], positions[r] = pqkv[0], ppos[0]
        q = rope_cache(qkv=qkv, positions=positions, inv_freq=inv_freq, keys=keys, values=values, num_heads=heads,
                       cache_rows=cache_rows)
        for (_, ppos, pq, pk, pv), r in zip(probes, where):
            row = int(cache_rows[r])
            assert torch.equal(q[r], pq[0]), f"q of a probe at row {r} of {rows}"
            assert torch.equal(keys[row][:, ppos[0]], pk) and torch.equal(values[row][:, ppos[0]], pv)


def test_rope_cache_refuses_bad_slots() -> None:
    qkv = torch.randn(2, 1, 4 * 64, device=DEVICE)
    keys = torch.zeros(3, 1, 8, 64, device=DEVICE)
    inv_freq = inv_freq_of(64, 10000.0, DEVICE)
    with pytest.raises(ValueError, match=r"write slots\) must lie in \[0, 8\)"):
        rope_cache(qkv=qkv, positions=torch.tensor([[3], [8]], device=DEVICE), inv_freq=inv_freq, keys=keys,
                   values=keys.clone(), num_heads=2)
    with pytest.raises(ValueError, match=r"cache_rows must lie in \[0, 3\)"):
        rope_cache(qkv=qkv, positions=torch.tensor([[3], [4]], device=DEVICE), inv_freq=inv_freq, keys=keys,
                   values=keys.clone(), num_heads=2, cache_rows=torch.tensor([0, 3], dtype=torch.int32, device=DEVICE))
