"""The triton backend's building blocks: the transformer over the KV pool with janus-rt's kernels, and its linears.

Every linear of the decode step goes through one batch-invariant GEMM (`kernels/skinny_gemm.py`: a fixed
tile along K whatever the number of rows), and attention reads each row's own cache row and length, so a
row's numbers never depend on the other rows of the step (see README, "Batch invariance").
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .heads import GenHead, MlpProjector
from .llm import KVCache, LanguageModel

Linear = Callable[[torch.Tensor, nn.Linear], torch.Tensor]  # (x, layer) -> layer(x), maybe by another kernel


def torch_linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    return layer(x)


def skinny_linear(gemm: Callable[..., torch.Tensor], dequant_gemm: Callable[..., torch.Tensor]) -> Linear:
    """Every linear through janus-rt's batch-invariant GEMM (`kernels/skinny_gemm.py`), bias included; a
    quantized layer (`QuantLinear`) through the fused dequant-GEMM (`kernels/dequant_gemm.py`), as batch-invariant."""
    from .quant.linear import QuantLinear

    def linear(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        if isinstance(layer, QuantLinear):
            bias = None if layer.bias is None else layer.bias.to(x.dtype)
            return dequant_gemm(x=x, bias=bias, **layer.kernel_args())
        return gemm(x=x, weight=layer.weight, bias=layer.bias)

    return linear


def mlp_projector(mlp: MlpProjector, x: torch.Tensor, linear: Linear) -> torch.Tensor:
    """`MlpProjector.forward` with `linear` for its layers."""
    x = linear(x, mlp.layers[0])
    for layer in mlp.layers[1:]:
        x = linear(F.gelu(x), layer)
    return x


def gen_head(head: GenHead, x: torch.Tensor, linear: Linear) -> torch.Tensor:
    """`GenHead.forward` with `linear` for its layers."""
    return linear(F.gelu(linear(x, head.proj)), head.out)


def transformer_step(llm: LanguageModel, x: torch.Tensor, positions: torch.Tensor, cache_rows: torch.Tensor | None,
                     cache: KVCache, inv_freq: torch.Tensor, linear: Linear = torch_linear) -> torch.Tensor:
    """`T` new tokens per row through the decoder with janus-rt's kernels; returns the final-normed `[R, T, D]`.

    x `[R, T, D]`; positions `[R, T]` int64: RoPE position and cache slot of each new token (no padding);
    cache_rows `[R]` int32: the pool row of each batch row (None: row r). Per layer: add+RMSNorm, qkv GEMM,
    RoPE+cache write, split-K attention, o GEMM, add+RMSNorm, gate|up GEMM, SiLU*up, down GEMM (the residual
    add of each block is fused into the next norm).
    """
    from janus_rt.kernels.decode_attention import decode_attention
    from janus_rt.kernels.fused_norm import add_rmsnorm, silu_mul
    from janus_rt.kernels.rope_cache import rope_cache

    cfg = llm.cfg
    rows, new, _ = x.shape
    lengths = (positions[:, -1] + 1).to(torch.int32)  # [R] valid slots after the write
    delta = None
    for i, layer in enumerate(llm.layers):
        h, x = add_rmsnorm(x=x, delta=delta, weight=layer.input_norm.weight, eps=layer.input_norm.eps)
        q = rope_cache(qkv=linear(h, layer.attn.qkv_proj), positions=positions, inv_freq=inv_freq,
                       keys=cache.keys[i], values=cache.values[i], num_heads=cfg.num_heads,
                       cache_rows=cache_rows)  # [R, H, T, hd]
        attn = decode_attention(q=q, keys=cache.keys[i], values=cache.values[i], lengths=lengths, key_start=None,
                                cache_rows=cache_rows)  # [R, H, T, hd]
        attn_out = linear(attn.transpose(1, 2).reshape(rows, new, cfg.num_heads * cfg.head_dim), layer.attn.o_proj)
        h, x = add_rmsnorm(x=x, delta=attn_out, weight=layer.post_attn_norm.weight, eps=layer.post_attn_norm.eps)
        delta = linear(silu_mul(gate_up=linear(h, layer.mlp.gate_up_proj)), layer.mlp.down_proj)
    out, _ = add_rmsnorm(x=x, delta=delta, weight=llm.norm.weight, eps=llm.norm.eps)
    return out


