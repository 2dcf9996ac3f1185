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
from typing import Callable

import torch
from torch import nn

from .llm import KVCache, LanguageModel
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
    inv_freq: torch.Tensor  # [head_dim / 2] fp32 RoPE frequencies


Linear = Callable[[torch.Tensor, nn.Linear], torch.Tensor]  # (x, layer) -> layer(x), maybe by another kernel


def torch_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return layer(x)


def skinny_linear(gemm: Callable[..., torch.Tensor]) -> Linear:
    """Bias-free linears of few rows through janus-rt's skinny GEMM (`kernels/skinny_gemm.py`), others through torch."""

    def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        if layer.bias is None and x.numel() // x.shape[-1] <= 32:
            return gemm(x=x, weight=layer.weight)
        return layer(x)

    return linear


def transformer_step(llm: LanguageModel, x: torch.Tensor, positions: torch.Tensor, slot: torch.Tensor,
                     key_start: torch.Tensor | None, cache: KVCache, inv_freq: torch.Tensor,
                     linear: Linear = torch_linear) -> torch.Tensor:
    """`T` new tokens per row through the decoder with janus-rt's kernels; returns the final-normed `[R, T, D]`.

    x `[R, T, D]`; positions `[R, T]` int64; the new keys/values go to slots `slot + [0, T)` of every row.
    Per layer: add+RMSNorm, qkv GEMM, RoPE+cache write, split-K attention, o GEMM, add+RMSNorm, gate|up GEMM,
    SiLU*up, down GEMM (the residual add of each block is fused into the next norm).
    """
    from janus_rt.kernels.decode_attention import decode_attention
    from janus_rt.kernels.fused_norm import add_rmsnorm, silu_mul
    from janus_rt.kernels.rope_cache import rope_cache

    cfg = llm.cfg
    rows, new, _ = x.shape
    lengths = (slot + new).to(torch.int32).expand(rows).contiguous()  # [R] valid slots after the write
    delta = None
    for i, layer in enumerate(llm.layers):
        h, x = add_rmsnorm(x=x, delta=delta, weight=layer.input_norm.weight, eps=layer.input_norm.eps)
        q = rope_cache(qkv=linear(h, layer.attn.qkv_proj), positions=positions, inv_freq=inv_freq, slot=slot,
                       keys=cache.keys[i], values=cache.values[i], num_heads=cfg.num_heads)  # [R, H, T, hd]
        attn = decode_attention(q=q, keys=cache.keys[i], values=cache.values[i], lengths=lengths, key_start=key_start)
        attn_out = linear(attn.transpose(1, 2).reshape(rows, new, cfg.num_heads * cfg.head_dim), layer.attn.o_proj)
        h, x = add_rmsnorm(x=x, delta=attn_out, weight=layer.post_attn_norm.weight, eps=layer.post_attn_norm.eps)
        delta = linear(silu_mul(gate_up=linear(h, layer.mlp.gate_up_proj)), layer.mlp.down_proj)
    out, _ = add_rmsnorm(x=x, delta=delta, weight=llm.norm.weight, eps=llm.norm.eps)
    return out


def sample_into(logits: torch.Tensor, bufs: DecodeBuffers, table: torch.Tensor) -> None:
    """Fused sampling of one token per output row into `bufs.tokens[:, step]` and the next rows into `bufs.rows`."""
    from janus_rt.kernels.cfg_sample import cfg_sample

    cfg_sample(logits=logits, cfg_weight=bufs.cfg_weight, temperature=bufs.temperature, top_k=bufs.top_k,
               top_p=bufs.top_p, seed=bufs.seed, step=bufs.step, tokens_out=bufs.tokens, embed_table=table,
               embeds_out=bufs.rows)


def image_step(model: JanusModel, bufs: DecodeBuffers, linear: Linear = torch_linear) -> None:
    """One image-token step for every CFG row; advances the counters."""
    x = model.gen_aligner(bufs.rows)[:, None]  # [2P, 1, D]
    hidden = transformer_step(model.llm, x, bufs.positions[:, None], bufs.slot, None, bufs.cache,
                              bufs.inv_freq, linear)[:, -1]  # [2P, D]
    sample_into(model.gen_head(hidden), bufs, model.gen_embed.weight)
    advance(bufs)


def text_step(model: JanusModel, bufs: DecodeBuffers, linear: Linear = torch_linear) -> None:
    """One text-token step for every row; advances the counters."""
    x = bufs.rows[:, None]  # [B, 1, D]
    hidden = transformer_step(model.llm, x, bufs.positions[:, None], bufs.slot, bufs.key_start, bufs.cache,
                              bufs.inv_freq, linear)[:, -1]  # [B, D]
    sample_into(linear(hidden, model.lm_head), bufs, model.llm.embed_tokens.weight)
    advance(bufs)


def advance(bufs: DecodeBuffers) -> None:
    bufs.step += 1
    bufs.slot += 1
    bufs.positions += 1
