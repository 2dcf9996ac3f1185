"""The triton backend's decode step: the transformer over a static cache with device-side positions, one body per path.

Everything a step reads or writes lives in `DecodeBuffers` (device tensors of fixed shape), and counters
(`step`, `slot`, `positions`) advance inside the step, so the body can be captured once into a CUDA graph
and replayed: no Python value changes between steps, no host sync.

Image body: gen_aligner(gathered gen_embed rows) -> transformer -> gen_head -> fused CFG sample (writes the
token at `step`, gathers the next gen_embed rows for both CFG rows). Text body: gathered embed_tokens rows
-> transformer -> lm_head -> the same kernel without CFG. Row layout of the image path is the torch
backend's: rows 2i / 2i+1 conditional / unconditional for image i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .llm import KVCache, LanguageModel, apply_rope, rope_cos_sin
from .model import JanusModel


@dataclass
class DecodeBuffers:
    """Static inputs/outputs of one captured decode step (`R` transformer rows, `P` sampled rows)."""

    cache: KVCache  # [L, R, Hkv, S, hd]
    rows: torch.Tensor  # [R, E] next step's gathered embedding rows (gen_embed for images, embed_tokens for text)
    positions: torch.Tensor  # [R] int64 RoPE position of the next token per row
    slot: torch.Tensor  # [1] int64 cache slot the next token is written to (shared by all rows)
    key_start: torch.Tensor | None  # [R] int32 first non-padding slot (text batches), None for images
    step: torch.Tensor  # [1] int64 output column of the token sampled at the end of the step
    tokens: torch.Tensor  # [P, N] int64 sampled tokens
    cfg_weight: torch.Tensor | None  # [P] fp32 (images), None for text
    temperature: torch.Tensor  # [P] fp32
    top_k: torch.Tensor  # [P] int32, 0 = off
    top_p: torch.Tensor  # [P] fp32, 1 = off
    seed: torch.Tensor  # [1] int64


def transformer_step(llm: LanguageModel, x: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor,
                     key_start: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
    """`T` new tokens per row through the decoder with the Triton KV-cache attention; returns normed `[R, T, D]`.

    x `[R, T, D]`; positions `[R, T]` int64; the new keys/values go to slots `slot + [0, T)` of every row.
    """
    from janus_rt.kernels.decode_attention import decode_attention

    cfg = llm.cfg
    rows, new, _ = x.shape
    q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    cos, sin = rope_cos_sin(positions, cfg.head_dim, cfg.rope_theta, x.dtype)
    slots = slot + torch.arange(new, device=x.device)  # [T]
    lengths = (slot + new).to(torch.int32).expand(rows).contiguous()  # [R] valid slots after the write
    for i, layer in enumerate(llm.layers):
        q, k, v = layer.attn.qkv_proj(layer.input_norm(x)).split([q_out, kv_out, kv_out], dim=-1)
        q = apply_rope(q.view(rows, new, cfg.num_heads, cfg.head_dim).transpose(1, 2), cos, sin)  # [R, H, T, hd]
        k = apply_rope(k.view(rows, new, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2), cos, sin)  # [R, Hkv, T, hd]
        v = v.view(rows, new, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)  # [R, Hkv, T, hd]
        cache.keys[i].index_copy_(2, slots, k)
        cache.values[i].index_copy_(2, slots, v)
        attn = decode_attention(q=q, keys=cache.keys[i], values=cache.values[i], lengths=lengths, key_start=key_start)
        x = x + layer.attn.o_proj(attn.transpose(1, 2).reshape(rows, new, q_out))
        x = x + layer.mlp(layer.post_attn_norm(x))
    return llm.norm(x)


def sample_into(logits: torch.Tensor, bufs: DecodeBuffers, table: torch.Tensor) -> None:
    """Fused sampling of one token per output row into `bufs.tokens[:, step]` and the next rows into `bufs.rows`."""
    from janus_rt.kernels.cfg_sample import cfg_sample

    cfg_sample(logits=logits, cfg_weight=bufs.cfg_weight, temperature=bufs.temperature, top_k=bufs.top_k,
               top_p=bufs.top_p, seed=bufs.seed, step=bufs.step, tokens_out=bufs.tokens, embed_table=table,
               embeds_out=bufs.rows)


def image_step(model: JanusModel, bufs: DecodeBuffers) -> None:
    """One image-token step for every CFG row; advances the counters."""
    x = model.gen_aligner(bufs.rows)[:, None]  # [2P, 1, D]
    hidden = transformer_step(model.llm, x, bufs.positions[:, None], bufs.slot, None, bufs.cache)[:, -1]  # [2P, D]
    sample_into(model.gen_head(hidden), bufs, model.gen_embed.weight)
    advance(bufs)


def text_step(model: JanusModel, bufs: DecodeBuffers) -> None:
    """One text-token step for every row; advances the counters."""
    x = bufs.rows[:, None]  # [B, 1, D]
    hidden = transformer_step(model.llm, x, bufs.positions[:, None], bufs.slot, bufs.key_start, bufs.cache)[:, -1]
    sample_into(model.lm_head(hidden), bufs, model.llm.embed_tokens.weight)
    advance(bufs)


def advance(bufs: DecodeBuffers) -> None:
    bufs.step += 1
    bufs.slot += 1
    bufs.positions += 1
