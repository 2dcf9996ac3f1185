"""KV-cache attention kernel against its torch reference (float64), on fresh random inputs.

Runs in the Triton interpreter without CUDA. Grid: dtypes, MHA and GQA, head_dim 64/128, 1..16 new tokens,
cache lengths 1, odd and off the 64-key block, left padding, several split sizes, and a KV pool read through
cache_rows (more pool rows than batch rows, permuted, repeated). Batch invariance: a row's output must be
bitwise the same alone and inside other batches (other B, batch position, companions, S_max, pool row).
The merge folded into the split kernel (merge_counters) must give bitwise the two-launch output and leave its
counters zero. The interpreter runs the programs one after another, so there the last to arrive is always the
last split: the GPU's other arrival orders are not exercised here.
"""

from __future__ import annotations

import pytest
import torch

from kernel_utils import DEVICE, assert_close_to_reference  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.decode_attention import SPLIT_KEYS, decode_attention, decode_attention_ref

pytestmark = pytest.mark.interpreter

CASES = [
    # batch, q heads, kv heads, head_dim, new tokens, S_max, split_keys, pool rows (None: no cache_rows)
    (1, 2, 2, 64, 1, 1, None, None),
    (2, 4, 4, 64, 1, 37, None, 5),
    (3, 4, 2, 128, 1, 130, 64, None),
    (2, 8, 2, 64, 3, 67, 64, 2),
    (1, 2, 1, 128, 16, 129, 128, 4),
    (2, 4, 4, 64, 5, 200, 256, None),
    (2, 4, 2, 64, 2, 521, None, 3),  # several splits and key tiles in the interpreter too (256 keys per tile)
    (3, 4, 2, 64, 1, 300, 64, -1),  # -1: cache_rows with a repeated pool row (two batch rows read one cache)
]


def random_case(batch: int, heads: int, kv_heads: int, head_dim: int, new_tokens: int, max_len: int,
                dtype: torch.dtype, padded: bool, gen: torch.Generator, pool: int | None = None):
    """(q, keys, values, lengths, key_start, cache_rows); pool rows > batch: cache_rows a random injection,
    pool -1: cache_rows drawn with repeats from batch rows; None: no cache_rows."""
    pool_rows = batch if pool is None or pool < 0 else pool
    q = torch.randn(batch, heads, new_tokens, head_dim, generator=gen).to(DEVICE, dtype)
    keys = torch.randn(pool_rows, kv_heads, max_len, head_dim, generator=gen).to(DEVICE, dtype)
    values = torch.randn(pool_rows, kv_heads, max_len, head_dim, generator=gen).to(DEVICE, dtype)
    lengths = torch.randint(new_tokens, max_len + 1, (batch,), generator=gen)
    lengths[0] = max_len  # one row uses the whole cache
    key_start = None
    if padded:  # left padding never reaches into the new tokens
        key_start = (torch.rand(batch, generator=gen) * (lengths - new_tokens + 1).float()).long().int().to(DEVICE)
    cache_rows = None
    if pool is not None and pool < 0:
        cache_rows = torch.randint(0, pool_rows, (batch,), generator=gen)
        cache_rows[1] = cache_rows[0]  # a repeat for sure
    elif pool is not None:
        cache_rows = torch.randperm(pool_rows, generator=gen)[:batch]
    if cache_rows is not None:
        cache_rows = cache_rows.int().to(DEVICE)
    return q, keys, values, lengths.int().to(DEVICE), key_start, cache_rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-h{}x{}-d{}-t{}-s{}-sk{}-pool{}".format(*c))
@pytest.mark.parametrize("padded", [False, True], ids=["nopad", "leftpad"])
def test_matches_reference(dtype: torch.dtype, case: tuple, padded: bool) -> None:
    batch, heads, kv_heads, head_dim, new_tokens, max_len, split_keys, pool = case
    gen = torch.Generator().manual_seed(hash((case, str(dtype), padded)) % 2**31)
    q, keys, values, lengths, key_start, cache_rows = random_case(batch, heads, kv_heads, head_dim, new_tokens,
                                                                  max_len, dtype, padded, gen, pool)
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start, cache_rows=cache_rows,
                     split_keys=split_keys, out=out)
    ref = decode_attention_ref(q.double(), keys.double(), values.double(), lengths, key_start, cache_rows=cache_rows)
    same = decode_attention_ref(q, keys, values, lengths, key_start, cache_rows=cache_rows)
    assert_close_to_reference(out, same, ref, dtype, f"attention {case} {dtype}")


def test_slots_past_length_are_ignored() -> None:
    """Garbage (even inf) beyond each row's length, before key_start, and in pool rows no batch row reads,
    must not leak into the output."""
    gen = torch.Generator().manual_seed(7)
    q, keys, values, lengths, _, _ = random_case(2, 4, 2, 64, 2, 290, torch.float32, False, gen, pool=4)
    lengths = torch.tensor([40, 275], dtype=torch.int32, device=DEVICE)
    key_start = torch.tensor([3, 0], dtype=torch.int32, device=DEVICE)
    cache_rows = torch.tensor([2, 0], dtype=torch.int32, device=DEVICE)
    clean = decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start,
                             cache_rows=cache_rows)
    dirty_k, dirty_v = keys.clone(), values.clone()
    dirty_k[2, :, 40:], dirty_v[2, :, 40:] = float("inf"), float("nan")
    dirty_k[2, :, :3], dirty_v[2, :, :3] = 1e4, float("nan")
    dirty_k[0, :, 275:], dirty_v[0, :, 275:] = float("inf"), float("nan")
    dirty_k[[1, 3]], dirty_v[[1, 3]] = float("nan"), float("nan")  # pool rows nobody reads
    dirty = decode_attention(q=q, keys=dirty_k, values=dirty_v, lengths=lengths, key_start=key_start,
                             cache_rows=cache_rows)
    assert torch.equal(clean, dirty)
    ref = decode_attention_ref(q.double(), keys.double(), values.double(), lengths, key_start, cache_rows=cache_rows)
    torch.testing.assert_close(clean.double(), ref, atol=1e-5, rtol=1e-5)


def test_split_size_does_not_change_the_result() -> None:
    gen = torch.Generator().manual_seed(11)
    q, keys, values, lengths, key_start, _ = random_case(2, 4, 4, 64, 1, 300, torch.float32, True, gen)
    ref = decode_attention_ref(q.double(), keys.double(), values.double(), lengths, key_start)
    for split_keys in (64, 128, 256, 512):  # 5, 3, 2 and 1 splits of S_max = 300
        out = decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start,
                               split_keys=split_keys)
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("heads, kv_heads, head_dim, new_tokens, padded", [
    (4, 4, 64, 1, False), (8, 2, 64, 3, True),
], ids=["mha-t1", "gqa-t3-leftpad"])
def test_rows_are_batch_invariant(dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int, new_tokens: int,
                                  padded: bool) -> None:
    """Each probe row alone (B = 1, a one-row cache of its own S_max, no cache_rows) must give bitwise the same
    output as inside larger batches: other B, other batch position, random companions, a pool with another
    S_max (more splits, garbage past the probe's length) and a non-identity cache_rows."""
    gen = torch.Generator().manual_seed(31 + heads + new_tokens + hash(str(dtype)) % 1000)
    probe_len = [SPLIT_KEYS + 44, 37, SPLIT_KEYS]  # crosses a split border; one split; exactly one full split
    alone_max = max(probe_len)
    probes = []
    for length in probe_len:
        q = torch.randn(1, heads, new_tokens, head_dim, generator=gen).to(DEVICE, dtype)
        k = torch.randn(1, kv_heads, alone_max, head_dim, generator=gen).to(DEVICE, dtype)
        v = torch.randn(1, kv_heads, alone_max, head_dim, generator=gen).to(DEVICE, dtype)
        start = int(torch.randint(0, length - new_tokens + 1, (1,), generator=gen)) if padded else 0
        lengths = torch.tensor([length], dtype=torch.int32, device=DEVICE)
        key_start = torch.tensor([start], dtype=torch.int32, device=DEVICE) if padded else None
        alone = decode_attention(q=q, keys=k, values=v, lengths=lengths, key_start=key_start)
        probes.append((q, k, v, length, start, alone))

    for batch, max_len in ((3, alone_max), (5, 2 * SPLIT_KEYS + 61), (9, 3 * SPLIT_KEYS)):
        pool_rows = batch + 4
        q, keys, values, lengths, key_start, _ = random_case(batch, heads, kv_heads, head_dim, new_tokens, max_len,
                                                             dtype, True, gen, pool=pool_rows)
        cache_rows = torch.randperm(pool_rows, generator=gen)[:batch].int().to(DEVICE)
        where = torch.randperm(batch, generator=gen)[:len(probes)].tolist()  # the probes' batch positions
        for (pq, pk, pv, length, start, _), b in zip(probes, where):
            row = int(cache_rows[b])
            q[b] = pq[0]
            keys[row, :, :alone_max], values[row, :, :alone_max] = pk[0], pv[0]  # past alone_max: garbage stays
            lengths[b], key_start[b] = length, start
        out = decode_attention(q=q, keys=keys, values=values, lengths=lengths,
                               key_start=key_start if padded else None, cache_rows=cache_rows)
        for i, ((*_, alone), b) in enumerate(zip(probes, where)):
            assert torch.equal(out[b], alone[0]), f"probe {i} at batch row {b} of {batch}, S_max {max_len}: " \
                                                  f"max diff {(out[b] - alone[0]).abs().max().item():.3g}"


@pytest.mark.parametrize("bad, message", [
    (dict(new_tokens=17), "1..16"),
    (dict(lengths_dtype=torch.int64), "int32"),
    (dict(kv_heads=3), "multiple"),
    (dict(cache_rows=[5]), r"\[0, 1\)"),
    (dict(cache_rows_dtype=torch.int64), "cache_rows must be an int32"),
    (dict(split_keys=100), "multiple of 64"),
    (dict(batch=2), "cache needs >= 2 rows"),
])
def test_bad_shapes_are_refused(bad: dict, message: str) -> None:
    heads, kv_heads, t = 6 if bad.get("kv_heads") else 4, bad.get("kv_heads", 2), bad.get("new_tokens", 1)
    batch = bad.get("batch", 1)
    q = torch.randn(batch, heads, t, 64, device=DEVICE)
    cache = torch.randn(1, kv_heads, 32, 64, device=DEVICE)
    lengths = torch.full((batch,), 20, dtype=bad.get("lengths_dtype", torch.int32), device=DEVICE)
    if bad.get("kv_heads"):
        q = torch.randn(1, 4, t, 64, device=DEVICE)
    cache_rows = None
    if "cache_rows" in bad or "cache_rows_dtype" in bad:
        cache_rows = torch.tensor(bad.get("cache_rows", [0]), dtype=bad.get("cache_rows_dtype", torch.int32),
                                  device=DEVICE)
    with pytest.raises(ValueError, match=message):
        decode_attention(q=q, keys=cache, values=cache, lengths=lengths, cache_rows=cache_rows,
                         split_keys=bad.get("split_keys"))


FUSED_CASES = [
    # batch, q heads, kv heads, head_dim, new tokens, S_max, split_keys, pool rows (as in CASES), left padding
    (2, 2, 2, 16, 1, 200, 64, None, False),  # MHA decode, 4 splits
    (3, 4, 2, 64, 3, 260, 64, 5, True),  # GQA, T > 1, 5 splits, a permuted pool, left padding
    (3, 8, 2, 16, 4, 150, 64, -1, True),  # GQA, a repeated pool row
    (2, 2, 1, 64, 1, 300, 128, None, True),  # MQA, 3 splits of 128
    (2, 2, 2, 16, 2, 40, 64, None, False),  # one split: the only program merges
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", FUSED_CASES, ids=lambda c: "b{}-h{}x{}-d{}-t{}-s{}-sk{}-pool{}-pad{}".format(*c))
def test_fused_merge_is_bitwise_the_two_launch_merge(dtype: torch.dtype, case: tuple) -> None:
    """merge_counters: the same output bitwise as the merge kernel, close to the float64 reference, the counters
    zero again after the call, and a second call on the same counters the same again. Splits are empty at both
    ends: a short row (only split 0 has keys) and a row left-padded past the first split."""
    batch, heads, kv_heads, head_dim, new_tokens, max_len, split_keys, pool, padded = case
    gen = torch.Generator().manual_seed(hash((case, str(dtype), "fused")) % 2**31)
    q, keys, values, lengths, key_start, cache_rows = random_case(batch, heads, kv_heads, head_dim, new_tokens,
                                                                  max_len, dtype, padded, gen, pool)
    lengths[-1] = new_tokens  # one row of only its new tokens: every split but the first empty
    if padded:
        key_start[-1] = 0
        key_start[0] = min(split_keys + 3, max_len - new_tokens)  # lengths[0] = S_max: split 0 empty
    args = dict(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start, cache_rows=cache_rows,
                split_keys=split_keys)
    two_launch = decode_attention(**args)
    counters = torch.zeros(batch * kv_heads, dtype=torch.int32, device=DEVICE)
    fused = decode_attention(**args, out=torch.full_like(q, float("nan")), merge_counters=counters)
    assert torch.equal(fused, two_launch), f"fused merge differs: max diff " \
                                           f"{(fused - two_launch).abs().nan_to_num(float('inf')).max().item():.3g}"
    assert not counters.any(), f"counters left {counters.tolist()}"
    again = decode_attention(**args, out=torch.full_like(q, float("nan")), merge_counters=counters)
    assert torch.equal(again, two_launch) and not counters.any()

    ref = decode_attention_ref(q.double(), keys.double(), values.double(), lengths, key_start, cache_rows=cache_rows)
    same = decode_attention_ref(q, keys, values, lengths, key_start, cache_rows=cache_rows)
    assert_close_to_reference(fused, same, ref, dtype, f"fused attention {case} {dtype}")

    # batch invariance: row 0 alone (B = 1, its own one-row cache, no cache_rows) gives bitwise the same row
    row = int(cache_rows[0]) if cache_rows is not None else 0
    alone = decode_attention(q=q[:1], keys=keys[row:row + 1], values=values[row:row + 1], lengths=lengths[:1],
                             key_start=None if key_start is None else key_start[:1], split_keys=split_keys,
                             merge_counters=counters)
    assert torch.equal(alone[0], fused[0])


def test_merge_counters_serve_calls_of_any_shape() -> None:
    """One counter tensor, larger than needed, through calls of other B, Hkv and split counts: each output as
    the two-launch path's, and every counter (the unused tail too) zero after each call."""
    gen = torch.Generator().manual_seed(5)
    counters = torch.zeros(16, dtype=torch.int32, device=DEVICE)
    for batch, heads, kv_heads, new_tokens, max_len, split_keys in ((3, 4, 2, 1, 200, 64), (1, 2, 2, 2, 70, 64),
                                                                   (2, 8, 4, 1, 130, 128)):
        q, keys, values, lengths, key_start, _ = random_case(batch, heads, kv_heads, 16, new_tokens, max_len,
                                                             torch.float32, True, gen)
        args = dict(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start, split_keys=split_keys)
        expected = decode_attention(**args)
        assert torch.equal(decode_attention(**args, merge_counters=counters), expected)
        assert not counters.any(), f"counters left {counters.tolist()} after B={batch}, Hkv={kv_heads}"


@pytest.mark.parametrize("counters, message", [
    (dict(dtype=torch.int64), "merge_counters must be an int32 tensor"),
    (dict(size=3), r"has 3 elements, needs >= B \* Hkv = 4"),
    (dict(device="meta"), "merge_counters must be an int32 tensor on .*, got torch.int32 on meta"),
    (dict(size=8, step=2), "merge_counters must be contiguous"),
], ids=["int64", "too-small", "other-device", "strided"])
def test_bad_merge_counters_are_refused(counters: dict, message: str) -> None:
    q = torch.randn(2, 4, 1, 16, device=DEVICE)  # B * Hkv = 4 counters needed
    cache = torch.randn(2, 2, 32, 16, device=DEVICE)
    lengths = torch.full((2,), 20, dtype=torch.int32, device=DEVICE)
    bad = torch.zeros(counters.get("size", 4), dtype=counters.get("dtype", torch.int32),
                      device=counters.get("device", DEVICE))[::counters.get("step", 1)]
    with pytest.raises(ValueError, match=message):
        decode_attention(q=q, keys=cache, values=cache, lengths=lengths, merge_counters=bad)
