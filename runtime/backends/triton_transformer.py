"""The triton backend's transformer: the decode step's layers over the KV pool with janus-rt's kernels.

Every linear of the decode step goes through one batch-invariant GEMM (`kernels/skinny_gemm.py`: a fixed
tile along K whatever the number of rows), and attention reads each row's own cache row and length, so a
row's numbers never depend on the other rows of the step (see README, "Batch invariance"). Which optional
fused kernels run is `triton_ops.Fusions`.
Why a third forward beside `model/llm.py` (the reference, used for every prefill) and `export/graphs.py`: the decode
step runs one token per row over rows of different lengths through the kernels, in a CUDA graph.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from janus_rt.backends.triton_ops import Fusions
from janus_rt.kernels.counters import ArrivalCounters
from janus_rt.kernels.decode_attention import decode_attention
from janus_rt.kernels.fused_norm import add_rmsnorm, silu_mul
from janus_rt.kernels.rope_cache import rope_cache
from janus_rt.model.heads import GenHead, MlpProjector
from janus_rt.model.llm import KVCache, LanguageModel, RMSNorm
from janus_rt.quant.linear import QuantLinear

Linear = Callable[[torch.Tensor, nn.Linear], torch.Tensor]  # (x, layer) -> layer(x), maybe by another kernel


class StepOps:
    """The triton backend's kernels for one decode step: every linear through janus-rt's batch-invariant GEMM
    (`kernels/skinny_gemm.py`), bias included, a quantized layer (`QuantLinear`) through the fused dequant-GEMM
    (`kernels/dequant_gemm.py`), as batch-invariant; plus the norm / SiLU / attention steps, fused into those
    GEMMs or not as `fusions` says. Calling it is the `Linear` protocol. Owns the attention merge counters
    (`kernels/counters.py`)."""

    def __init__(self, gemm: Any, dequant_gemm: Any, fusions: Fusions = Fusions()) -> None:
        self.gemm = gemm  # kernels.skinny_gemm.SkinnyLinear
        self.dequant_gemm = dequant_gemm  # kernels.dequant_gemm.DequantLinear
        self.fusions = fusions
        self.merge_counters = ArrivalCounters()  # the fused attention merge's, one per (row, kv head)

    def __call__(self, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        quant = self._quant_args(x, layer)
        if quant is not None:
            return self.dequant_gemm(x=x, **quant)
        return self.gemm(x=x, weight=layer.weight, bias=layer.bias)

    @staticmethod
    def _quant_args(x: torch.Tensor, layer: nn.Module) -> dict | None:
        """The dequant-GEMM's weight arguments of a `QuantLinear` (bias in x's dtype), None for a float layer."""
        if not isinstance(layer, QuantLinear):
            return None
        return dict(bias=None if layer.bias is None else layer.bias.to(x.dtype), **layer.kernel_args())

    def norm_linear(self, x: torch.Tensor, delta: torch.Tensor | None, norm: RMSNorm,
                    layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(layer(norm(x + delta)), x + delta)."""
        if self.fusions.norm:
            quant = self._quant_args(x, layer)
            if quant is not None:
                return self.dequant_gemm.norm_linear(x=x, delta=delta, norm_weight=norm.weight, eps=norm.eps, **quant)
            return self.gemm.norm_linear(x=x, delta=delta, norm_weight=norm.weight, eps=norm.eps, weight=layer.weight,
                                         bias=layer.bias)
        h, x = add_rmsnorm(x=x, delta=delta, weight=norm.weight, eps=norm.eps)
        return self(h, layer), x

    def silu_linear(self, gate_up: torch.Tensor, layer: nn.Module) -> torch.Tensor:
        """layer(silu(gate) * up) for gate_up `[..., 2I]`."""
        if self.fusions.silu:
            quant = self._quant_args(gate_up, layer)
            if quant is not None:
                return self.dequant_gemm.silu_linear(gate_up=gate_up, **quant)
            return self.gemm.silu_linear(gate_up=gate_up, weight=layer.weight, bias=layer.bias)
        return self(silu_mul(gate_up=gate_up), layer)

    def attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor,
                  cache_rows: torch.Tensor | None) -> torch.Tensor:
        counters = self.merge_counters.get(q.device, q.shape[0] * keys.shape[1]) if self.fusions.attn else None
        return decode_attention(q=q, keys=keys, values=values, lengths=lengths, key_start=None, cache_rows=cache_rows,
                                merge_counters=counters)


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
                     cache: KVCache, inv_freq: torch.Tensor, ops: StepOps) -> torch.Tensor:
    """`T` new tokens per row through the decoder with janus-rt's kernels; returns the final-normed `[R, T, D]`.

    x `[R, T, D]`; positions `[R, T]` int64: RoPE position and cache slot of each new token (no padding);
    cache_rows `[R]` int32: the pool row of each batch row (None: row r). Per layer: add+RMSNorm, qkv GEMM,
    RoPE+cache write, split-K attention, o GEMM, add+RMSNorm, gate|up GEMM, SiLU*up, down GEMM (the residual
    add of each block is fused into the next norm; `ops.fusions` may fold the norms and SiLU*up into the GEMMs
    and the attention merge into its split kernel).
    """
    cfg = llm.cfg
    rows, new, _ = x.shape
    lengths = (positions[:, -1] + 1).to(torch.int32)  # [R] valid slots after the write
    delta = None
    for i, layer in enumerate(llm.layers):
        qkv, x = ops.norm_linear(x, delta, layer.input_norm, layer.attn.qkv_proj)
        q = rope_cache(qkv=qkv, positions=positions, inv_freq=inv_freq, keys=cache.keys[i], values=cache.values[i],
                       num_heads=cfg.num_heads, cache_rows=cache_rows)  # [R, H, T, hd]
        attn = ops.attention(q, cache.keys[i], cache.values[i], lengths, cache_rows)  # [R, H, T, hd]
        attn_out = ops(attn.transpose(1, 2).reshape(rows, new, cfg.num_heads * cfg.head_dim), layer.attn.o_proj)
        gate_up, x = ops.norm_linear(x, attn_out, layer.post_attn_norm, layer.mlp.gate_up_proj)
        delta = ops.silu_linear(gate_up, layer.mlp.down_proj)
    out, _ = add_rmsnorm(x=x, delta=delta, weight=llm.norm.weight, eps=llm.norm.eps)
    return out
