"""The DeepSeek-LLM transformer (Llama layout) with an explicit, preallocated static KV cache.

Numerics follow Hugging Face Llama: RMSNorm statistics in fp32, RoPE cos/sin computed in fp32 then cast to
the activation dtype, `rotate_half` (non-interleaved) layout, softmax in fp32 inside SDPA. The RoPE arithmetic
lives beside its kernel (`kernels/reference_rope.py`, torch only), the reference of `kernels/rope_cache.py`.

The cache and the positions are explicit inputs, so the same forward runs prefill and decode, and later
captures into a CUDA graph or exports to ONNX without hidden state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from janus_rt.kernels.reference_rope import apply_rope, rope_cos_sin
from janus_rt.model.config import LLMConfig


@dataclass
class KVCache:
    """Static cache: keys and values of every layer, `[layers, batch, kv_heads, max_len, head_dim]`."""

    keys: torch.Tensor
    values: torch.Tensor

    @classmethod
    def allocate(cls, cfg: LLMConfig, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> "KVCache":
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @classmethod
    def empty(cls, cfg: LLMConfig, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> "KVCache":
        """Uninitialised storage: only slots that were written are ever read; host pages are touched only when used."""
        shape = (cfg.num_layers, batch, cfg.num_kv_heads, max_len, cfg.head_dim)
        return cls(torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype))

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]


def empty_embedding(rows: int, dim: int) -> nn.Embedding:
    """nn.Embedding without its random init (the checkpoint fills it): `init.normal_` on the meta device
    imports torch._dynamo, ~2 s of every process's load."""
    return nn.Embedding(rows, dim, _weight=torch.empty(rows, dim))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, q_out + 2 * kv_out, bias=False)  # fused q | k | v rows
        self.o_proj = nn.Linear(q_out, cfg.hidden_size, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layer_keys: torch.Tensor,
        layer_values: torch.Tensor,
        cache_offset: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.cfg
        b, t, _ = x.shape
        q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        q, k, v = self.qkv_proj(x).split([q_out, kv_out, kv_out], dim=-1)
        q = q.view(b, t, cfg.num_heads, cfg.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = k.view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        v = v.view(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        end = cache_offset + t
        layer_keys[:, :, cache_offset:end] = k
        layer_values[:, :, cache_offset:end] = v
        keys, values = layer_keys[:, :, :end], layer_values[:, :, :end]  # [B, Hkv, S, hd]
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, enable_gqa=cfg.num_kv_heads != cfg.num_heads
        )  # [B, H, T, hd]
        return self.o_proj(out.transpose(1, 2).reshape(b, t, q_out))


class MLP(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.inner = cfg.intermediate_size
        self.gate_up_proj = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)  # fused gate | up rows
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split([self.inner, self.inner], dim=-1)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.input_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.post_attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)


def attention_mask(key_start: torch.Tensor | None, cache_offset: int, new_tokens: int, device: torch.device) -> torch.Tensor | None:
    """Boolean SDPA mask `[B, 1, T, S]` (True = attend) for `T` new tokens written at `cache_offset`.

    Key `j` is visible to query `t` when `key_start[b] <= j <= cache_offset + t` (causal, left padding
    excluded). A padded query also sees itself so that no row is fully masked (which would give NaN).
    `key_start=None` means no padding; for a single new token that needs no mask at all.
    """
    total = cache_offset + new_tokens
    if key_start is None and new_tokens == 1:
        return None
    key_idx = torch.arange(total, device=device)  # [S]
    query_pos = cache_offset + torch.arange(new_tokens, device=device)  # [T]
    causal = key_idx[None, :] <= query_pos[:, None]  # [T, S]
    if key_start is None:
        return causal[None, None]
    not_pad = key_idx[None, None, :] >= key_start[:, None, None]  # [B, 1, S]
    itself = key_idx[None, :] == query_pos[:, None]  # [T, S]
    return ((causal[None] & not_pad) | itself[None])[:, None]  # [B, 1, T, S]


class LanguageModel(nn.Module):
    """Embedding, decoder stack and final norm; heads live outside (text lm_head, image gen_head)."""

    def __init__(self, cfg: LLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = empty_embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        cache_offset: int,
        key_start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run `T` new tokens per row and return the final-normed hidden states `[B, T, D]`.

        inputs_embeds `[B, T, D]`; positions `[B, T]` (RoPE positions, per row); the new keys/values are
        written to cache slots `[cache_offset, cache_offset + T)`; `key_start[b]` is the first non-padding
        slot of row b (None: no padding).
        """
        b, t, _ = inputs_embeds.shape
        if cache_offset + t > cache.max_len:
            raise ValueError(f"KV cache overflow: {cache_offset + t} tokens for a cache of {cache.max_len}")
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta, inputs_embeds.dtype)
        mask = attention_mask(key_start, cache_offset, t, inputs_embeds.device)
        h = inputs_embeds
        for i, layer in enumerate(self.layers):
            h = h + layer.attn(layer.input_norm(h), cos, sin, cache.keys[i], cache.values[i], cache_offset, mask)
            h = h + layer.mlp(layer.post_attn_norm(h))
        return self.norm(h)
