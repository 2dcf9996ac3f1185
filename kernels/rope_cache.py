"""RoPE on q and k plus the KV-cache write, in one launch (the torch path takes ~20 small kernels for this).

Input: the fused projection `qkv [R, T, (Hq + 2*Hkv) * D]` (q | k | v heads), positions `[R, T]` int64 (a
device tensor: graph safe), inv_freq `[D/2]` fp32, cache_rows `[R]` int32 or None (None: row r).
Output: rotated q `[R, Hq, T, D]`; rotated k and v of (row r, token t) written to the pool
`keys/values [R_pool, Hkv, S, D]` (R_pool >= R) at row cache_rows[r], slot positions[r, t]: the cache slot
is the RoPE position (no left padding), so every row writes at its own place.
Rotation is the Llama `rotate_half` layout: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin with angles
position * inv_freq computed in fp32 (the torch path rounds cos/sin and each product to the activation
dtype; this rounds once, so it is at least as accurate). Each (row, token, head) is computed on its own:
batch invariant by construction.

Versions: v1 one program per (row, token) x head, a shared write slot; v2 (this file) per-row write slots
(= positions) and cache_rows into a KV pool.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from janus_rt.kernels.reference_rope import apply_rope, rope_cos_sin, rope_inv_freq


@triton.jit
def _rope_cache_kernel(qkv_ptr, pos_ptr, inv_freq_ptr, cache_rows_ptr, q_ptr, k_ptr, v_ptr,
                       stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_ks,
                       new_tokens, num_heads, num_kv_heads,
                       HALF: tl.constexpr, HAS_CACHE_ROWS: tl.constexpr):
    rt = tl.program_id(0)  # row * T + t
    head = tl.program_id(1)  # q heads, then k heads, then v heads
    r = rt // new_tokens
    t = rt % new_tokens
    width = (num_heads + 2 * num_kv_heads) * 2 * HALF
    lanes = tl.arange(0, HALF)
    base = qkv_ptr + rt * width + head * 2 * HALF
    x1 = tl.load(base + lanes)
    x2 = tl.load(base + HALF + lanes)
    position = tl.load(pos_ptr + rt)  # int64: RoPE position and cache slot
    cache_row = r.to(tl.int64)
    if HAS_CACHE_ROWS:
        cache_row = tl.load(cache_rows_ptr + r).to(tl.int64)
    if head < num_heads + num_kv_heads:
        angle = position.to(tl.float32) * tl.load(inv_freq_ptr + lanes)
        cos = tl.cos(angle)
        sin = tl.sin(angle)
        a = x1.to(tl.float32)
        b = x2.to(tl.float32)
        y1 = (a * cos - b * sin).to(q_ptr.dtype.element_ty)
        y2 = (b * cos + a * sin).to(q_ptr.dtype.element_ty)
        if head < num_heads:
            dst = q_ptr + r * stride_qb + head * stride_qh + t * stride_qt
        else:
            dst = k_ptr + cache_row * stride_kb + (head - num_heads) * stride_kh + position * stride_ks
        tl.store(dst + lanes, y1)
        tl.store(dst + HALF + lanes, y2)
    else:
        dst = v_ptr + cache_row * stride_kb + (head - num_heads - num_kv_heads) * stride_kh + position * stride_ks
        tl.store(dst + lanes, x1)
        tl.store(dst + HALF + lanes, x2)


def rope_cache(*, qkv: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, keys: torch.Tensor,
               values: torch.Tensor, num_heads: int, cache_rows: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate q and k, write k and v to cache row `cache_rows[r]` at slot `positions[r, t]`; returns q
    `[R, Hq, T, D]` (see module doc). Slots and cache rows are checked against the pool only for CPU tensors
    (no device sync)."""
    rows, new_tokens, width = qkv.shape
    pool_rows, num_kv_heads, max_len, head_dim = keys.shape
    if width != (num_heads + 2 * num_kv_heads) * head_dim or not qkv.is_contiguous():
        raise ValueError(f"qkv {list(qkv.shape)} does not hold {num_heads} + 2x{num_kv_heads} heads of {head_dim}")
    if positions.shape != (rows, new_tokens) or positions.dtype != torch.int64 or not positions.is_contiguous():
        raise ValueError(f"positions must be contiguous int64 [{rows}, {new_tokens}]")
    if inv_freq.shape != (head_dim // 2,):
        raise ValueError("inv_freq must be [head_dim / 2]")
    if keys.stride(-1) != 1 or values.shape != keys.shape or values.stride() != keys.stride():
        raise ValueError("keys and values must share shape and strides, contiguous in head_dim")
    if cache_rows is None:
        if pool_rows < rows:
            raise ValueError(f"without cache_rows the cache needs >= {rows} rows, got {pool_rows}")
    elif cache_rows.shape != (rows,) or cache_rows.dtype != torch.int32:
        raise ValueError(f"cache_rows must be an int32 tensor [{rows}] or None")
    if rows and new_tokens and positions.device.type == "cpu":
        if not (0 <= int(positions.min()) and int(positions.max()) < max_len):
            raise ValueError(f"positions (the write slots) must lie in [0, {max_len})")
        if cache_rows is not None and not (0 <= int(cache_rows.min()) and int(cache_rows.max()) < pool_rows):
            raise ValueError(f"cache_rows must lie in [0, {pool_rows})")
    q = qkv.new_empty(rows, num_heads, new_tokens, head_dim)
    if rows * new_tokens == 0:
        return q
    _rope_cache_kernel[(rows * new_tokens, num_heads + 2 * num_kv_heads)](
        qkv, positions, inv_freq, positions if cache_rows is None else cache_rows, q, keys, values,
        q.stride(0), q.stride(1), q.stride(2), keys.stride(0), keys.stride(1), keys.stride(2),
        new_tokens, num_heads, num_kv_heads, HALF=head_dim // 2, HAS_CACHE_ROWS=cache_rows is not None, num_warps=1,
    )
    return q


def rope_cache_ref(qkv: torch.Tensor, positions: torch.Tensor, theta: float, keys: torch.Tensor,
                   values: torch.Tensor, num_heads: int, cache_rows: torch.Tensor | None = None) -> torch.Tensor:
    """The torch backend's arithmetic (reference_rope.rope_cos_sin / apply_rope) in the inputs' dtype; k and v of
    (r, t) are written at keys/values[cache_rows[r], :, positions[r, t]] (cache_rows None: row r)."""
    rows, new_tokens, _ = qkv.shape
    _, num_kv_heads, _, head_dim = keys.shape
    q, k, v = qkv.split([num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], dim=-1)
    cos, sin = rope_cos_sin(positions, head_dim, theta, qkv.dtype)
    q = apply_rope(q.view(rows, new_tokens, num_heads, head_dim).transpose(1, 2), cos, sin)
    k = apply_rope(k.view(rows, new_tokens, num_kv_heads, head_dim).transpose(1, 2), cos, sin)  # [R, Hkv, T, D]
    pool_row = (cache_rows.long() if cache_rows is not None else torch.arange(rows, device=keys.device))[:, None]
    slots = positions.to(keys.device)  # [R, T]
    keys[pool_row, :, slots] = k.transpose(1, 2)  # indexed view [R, T, Hkv, D]
    values[pool_row, :, slots] = v.view(rows, new_tokens, num_kv_heads, head_dim)
    return q


def inv_freq_of(head_dim: int, theta: float, device: torch.device) -> torch.Tensor:
    """The kernel's `inv_freq` argument: the RoPE frequencies of the torch path (`reference_rope.rope_inv_freq`)."""
    return rope_inv_freq(head_dim, theta, device)
