"""RoPE on q and k plus the KV-cache write, in one launch (the torch path takes ~20 small kernels for this).

Input: the fused projection `qkv [R, T, (Hq + 2*Hkv) * D]` (q | k | v heads), positions `[R, T]` int64,
inv_freq `[D/2]` fp32, a shared write slot `slot [1]` int64 (a device tensor: graph safe).
Output: rotated q `[R, Hq, T, D]`; rotated k and v written to `keys/values [R, Hkv, S, D]` at slot + t.
Rotation is the Llama `rotate_half` layout: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin with angles
position * inv_freq computed in fp32 (the torch path rounds cos/sin and each product to the activation
dtype; this rounds once, so it is at least as accurate).

Versions: v1 one program per (row, token) x head (this file).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rope_cache_kernel(qkv_ptr, pos_ptr, inv_freq_ptr, slot_ptr, q_ptr, k_ptr, v_ptr,
                       stride_qb, stride_qh, stride_qt, stride_kb, stride_kh, stride_ks,
                       new_tokens, num_heads, num_kv_heads,
                       HALF: tl.constexpr):
    rt = tl.program_id(0)  # row * T + t
    head = tl.program_id(1)  # q heads, then k heads, then v heads
    r = rt // new_tokens
    t = rt % new_tokens
    width = (num_heads + 2 * num_kv_heads) * 2 * HALF
    lanes = tl.arange(0, HALF)
    base = qkv_ptr + rt * width + head * 2 * HALF
    x1 = tl.load(base + lanes)
    x2 = tl.load(base + HALF + lanes)
    slot = tl.load(slot_ptr) + t
    if head < num_heads + num_kv_heads:
        angle = tl.load(pos_ptr + rt).to(tl.float32) * tl.load(inv_freq_ptr + lanes)
        cos = tl.cos(angle)
        sin = tl.sin(angle)
        a = x1.to(tl.float32)
        b = x2.to(tl.float32)
        y1 = (a * cos - b * sin).to(q_ptr.dtype.element_ty)
        y2 = (b * cos + a * sin).to(q_ptr.dtype.element_ty)
        if head < num_heads:
            dst = q_ptr + r * stride_qb + head * stride_qh + t * stride_qt
        else:
            dst = k_ptr + r * stride_kb + (head - num_heads) * stride_kh + slot * stride_ks
        tl.store(dst + lanes, y1)
        tl.store(dst + HALF + lanes, y2)
    else:
        dst = v_ptr + r * stride_kb + (head - num_heads - num_kv_heads) * stride_kh + slot * stride_ks
        tl.store(dst + lanes, x1)
        tl.store(dst + HALF + lanes, x2)


def rope_cache(*, qkv: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, slot: torch.Tensor,
               keys: torch.Tensor, values: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate q and k, write k and v to the cache at `slot + t`; returns q `[R, Hq, T, D]` (see module doc)."""
    rows, new_tokens, width = qkv.shape
    _, num_kv_heads, _, head_dim = keys.shape
    if width != (num_heads + 2 * num_kv_heads) * head_dim or not qkv.is_contiguous():
        raise ValueError(f"qkv {list(qkv.shape)} does not hold {num_heads} + 2x{num_kv_heads} heads of {head_dim}")
    if positions.shape != (rows, new_tokens) or positions.dtype != torch.int64 or not positions.is_contiguous():
        raise ValueError(f"positions must be contiguous int64 [{rows}, {new_tokens}]")
    if inv_freq.shape != (head_dim // 2,) or slot.numel() != 1 or slot.dtype != torch.int64:
        raise ValueError("inv_freq must be [head_dim / 2] and slot a one-element int64 tensor")
    if keys.stride(-1) != 1 or values.stride() != keys.stride():
        raise ValueError("keys and values must share strides, contiguous in head_dim")
    q = qkv.new_empty(rows, num_heads, new_tokens, head_dim)
    _rope_cache_kernel[(rows * new_tokens, num_heads + 2 * num_kv_heads)](
        qkv, positions, inv_freq, slot, q, keys, values,
        q.stride(0), q.stride(1), q.stride(2), keys.stride(0), keys.stride(1), keys.stride(2),
        new_tokens, num_heads, num_kv_heads, HALF=head_dim // 2, num_warps=1,
    )
    return q


def rope_cache_ref(qkv: torch.Tensor, positions: torch.Tensor, theta: float, slot: int, keys: torch.Tensor,
                   values: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The torch backend's arithmetic (llm.rope_cos_sin / apply_rope, cache slice write) in the inputs' dtype."""
    from janus_rt.llm import apply_rope, rope_cos_sin

    rows, new_tokens, _ = qkv.shape
    _, num_kv_heads, _, head_dim = keys.shape
    q, k, v = qkv.split([num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim], dim=-1)
    cos, sin = rope_cos_sin(positions, head_dim, theta, qkv.dtype)
    q = apply_rope(q.view(rows, new_tokens, num_heads, head_dim).transpose(1, 2), cos, sin)
    k = apply_rope(k.view(rows, new_tokens, num_kv_heads, head_dim).transpose(1, 2), cos, sin)
    keys[:, :, slot:slot + new_tokens] = k
    values[:, :, slot:slot + new_tokens] = v.view(rows, new_tokens, num_kv_heads, head_dim).transpose(1, 2)
    return q


def inv_freq_of(head_dim: int, theta: float, device: torch.device) -> torch.Tensor:
    """The RoPE frequencies exactly as llm.rope_cos_sin computes them, fp32 `[head_dim / 2]`."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
