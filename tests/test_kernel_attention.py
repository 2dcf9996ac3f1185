"""KV-cache attention kernel against its torch reference (float64), on fresh random inputs.

Runs in the Triton interpreter without CUDA. Grid: dtypes, MHA and GQA, head_dim 64/128, 1..16 new tokens,
cache lengths 1, odd and off the 64-key block, left padding, and several split counts.
"""

from __future__ import annotations

import pytest
import torch

from kernel_utils import DEVICE, assert_close_to_reference  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.decode_attention import decode_attention, decode_attention_ref

CASES = [
    # batch, q heads, kv heads, head_dim, new tokens, S_max, num_splits
    (1, 2, 2, 64, 1, 1, None),
    (2, 4, 4, 64, 1, 37, None),
    (3, 4, 2, 128, 1, 130, 3),
    (2, 8, 2, 64, 3, 67, 2),
    (1, 2, 1, 128, 16, 129, 5),
    (2, 4, 4, 64, 5, 200, 1),
    (2, 4, 2, 64, 2, 521, None),  # several key tiles in the interpreter too (256 keys per tile there)
]


def random_case(batch: int, heads: int, kv_heads: int, head_dim: int, new_tokens: int, max_len: int,
                dtype: torch.dtype, padded: bool, gen: torch.Generator):
    q = torch.randn(batch, heads, new_tokens, head_dim, generator=gen).to(DEVICE, dtype)
    keys = torch.randn(batch, kv_heads, max_len, head_dim, generator=gen).to(DEVICE, dtype)
    values = torch.randn(batch, kv_heads, max_len, head_dim, generator=gen).to(DEVICE, dtype)
    lengths = torch.randint(new_tokens, max_len + 1, (batch,), generator=gen)
    lengths[0] = max_len  # one row uses the whole cache
    key_start = None
    if padded:  # left padding never reaches into the new tokens
        key_start = (torch.rand(batch, generator=gen) * (lengths - new_tokens + 1).float()).long().int().to(DEVICE)
    return q, keys, values, lengths.int().to(DEVICE), key_start


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "b{}-h{}x{}-d{}-t{}-s{}-sp{}".format(*c))
@pytest.mark.parametrize("padded", [False, True], ids=["nopad", "leftpad"])
def test_matches_reference(dtype: torch.dtype, case: tuple, padded: bool) -> None:
    batch, heads, kv_heads, head_dim, new_tokens, max_len, splits = case
    gen = torch.Generator().manual_seed(hash((case, str(dtype), padded)) % 2**31)
    q, keys, values, lengths, key_start = random_case(batch, heads, kv_heads, head_dim, new_tokens, max_len, dtype,
                                                      padded, gen)
    out = torch.full_like(q, float("nan"))  # poisoned: every element must be written
    decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start, num_splits=splits, out=out)
    ref = decode_attention_ref(q.double(), keys.double(), values.double(), lengths, key_start)
    same = decode_attention_ref(q, keys, values, lengths, key_start)
    assert_close_to_reference(out, same, ref, dtype, f"attention {case} {dtype}")


def test_slots_past_length_are_ignored() -> None:
    """Garbage (even inf) beyond each row's length, and before key_start, must not leak into the output."""
    gen = torch.Generator().manual_seed(7)
    q, keys, values, lengths, _ = random_case(2, 4, 2, 64, 2, 90, torch.float32, False, gen)
    lengths = torch.tensor([40, 75], dtype=torch.int32, device=DEVICE)
    key_start = torch.tensor([3, 0], dtype=torch.int32, device=DEVICE)
    clean = decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start)
    dirty_k, dirty_v = keys.clone(), values.clone()
    dirty_k[0, :, 40:], dirty_v[0, :, 40:] = float("inf"), float("nan")
    dirty_k[0, :, :3], dirty_v[0, :, :3] = 1e4, float("nan")
    dirty_k[1, :, 75:], dirty_v[1, :, 75:] = float("inf"), float("nan")
    dirty = decode_attention(q=q, keys=dirty_k, values=dirty_v, lengths=lengths, key_start=key_start)
    assert torch.equal(clean, dirty)


def test_split_count_does_not_change_the_result() -> None:
    gen = torch.Generator().manual_seed(11)
    q, keys, values, lengths, key_start = random_case(2, 4, 4, 64, 1, 300, torch.float32, True, gen)
    ref = decode_attention_ref(q.double(), keys.double(), values.double(), lengths, key_start)
    for splits in (1, 2, 5):
        out = decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=key_start, num_splits=splits)
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (dict(new_tokens=17), "1..16"),
    (dict(lengths_dtype=torch.int64), "int32"),
    (dict(kv_heads=3), "multiple"),
])
def test_bad_shapes_are_refused(bad: dict, message: str) -> None:
    heads, kv_heads, t = 6 if bad.get("kv_heads") else 4, bad.get("kv_heads", 2), bad.get("new_tokens", 1)
    q = torch.randn(1, heads, t, 64, device=DEVICE)
    cache = torch.randn(1, kv_heads, 32, 64, device=DEVICE)
    lengths = torch.tensor([20], dtype=bad.get("lengths_dtype", torch.int32), device=DEVICE)
    if bad.get("kv_heads"):
        q = torch.randn(1, 4, t, 64, device=DEVICE)
    with pytest.raises(ValueError, match=message):
        decode_attention(q=q, keys=cache, values=cache, lengths=lengths)
