"""Rotary position embeddings in plain torch: the torch backend's arithmetic and the reference of `rope_cache.py`.

Numerics follow Hugging Face Llama: the frequencies and the angles position * inv_freq in fp32, cos/sin then cast
to the activation dtype, the `rotate_half` (non-interleaved) layout: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin
for the two halves x1, x2 of each head. Imports torch only (no triton): the model (`model/llm.py`) runs it.
"""

from __future__ import annotations

import torch


def rope_inv_freq(head_dim: int, theta: float, device: torch.device | str | None = None) -> torch.Tensor:
    """The RoPE frequencies `theta ** (-2i / head_dim)`, fp32 `[head_dim / 2]`."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables `[B, T, head_dim]` for integer positions `[B, T]`, computed in fp32."""
    inv_freq = rope_inv_freq(head_dim, theta, positions.device)
    freqs = positions.float()[..., None] * inv_freq  # [B, T, head_dim/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [B, T, head_dim]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x `[B, H, T, hd]`, cos/sin `[B, T, hd]`."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]
