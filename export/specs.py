"""What every exported graph is: its file, its inputs and outputs (names, dtypes, axes), and its torch module.

One table (`graph_specs`) is the single source of truth: the exporter traces from it, the manifest records
it, the checker draws random inputs from it, the ONNX Runtime / TensorRT runners bind tensors by it, and
the TensorRT builder derives its optimisation profiles from its axis names.

Axis names (strings in a shape; integers are fixed sizes):
- `batch`: rows of the transformer and the heads (2 x images for CFG generation, questions for chat);
- `sequence`: new tokens in this call (the prompt for prefill, 1 for a decode step);
- `past_sequence`: tokens already in the KV cache (0 for prefill);
- `total_sequence`: past_sequence + sequence (attention_mask and the present KV cache);
- `images`: images through the vision encoder or the VQ decoder.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from janus_rt.model.config import JanusConfig
from janus_rt.model.janus import JanusModel
from janus_rt.export import graphs

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                                  "int64": torch.int64}
EXPORT_DTYPES = ("float32", "float16", "bfloat16")
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# sizes used to trace each dynamic axis: all distinct and > 1, so the tracer cannot specialise on them
TRACE_SIZES = {"batch": 2, "sequence": 3, "past_sequence": 4, "total_sequence": 7, "images": 2}

Shape = tuple[int | str, ...]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of DTYPES
    shape: Shape  # ints are fixed sizes, strings are dynamic axis names (see the module docstring)

    def to_json(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class GraphSpec:
    name: str  # key in the manifest, e.g. "transformer"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str  # one line for the manifest and the README

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def graph_specs(cfg: JanusConfig, dtype: str) -> dict[str, GraphSpec]:
    """Every graph of an export in `dtype` (the activation / weight dtype; ids and positions are int64)."""
    c, d = cfg.llm, cfg.llm.hidden_size
    kv_in = tuple(TensorSpec(n, dtype, ("batch", c.num_kv_heads, "past_sequence", c.head_dim))
                  for n in graphs.past_names(c.num_layers))
    kv_out = tuple(TensorSpec(n, dtype, ("batch", c.num_kv_heads, "total_sequence", c.head_dim))
                   for n in graphs.present_names(c.num_layers))
    size, grid = cfg.vision.image_size, cfg.vq.image_token_grid
    specs = [
        GraphSpec("vision", (TensorSpec("pixel_values", dtype, ("images", 3, size, size)),),
                  (TensorSpec("image_embeds", dtype, ("images", cfg.vision.num_patches, d)),),
                  "SigLIP encoder + understanding aligner: pixels in [-1, 1] -> LLM-space image embeddings"),
        GraphSpec("text_embed", (TensorSpec("input_ids", "int64", ("batch", "sequence")),),
                  (TensorSpec("inputs_embeds", dtype, ("batch", "sequence", d)),),
                  "language model token embedding: text ids -> inputs_embeds"),
        GraphSpec("transformer",
                  (TensorSpec("inputs_embeds", dtype, ("batch", "sequence", d)),
                   TensorSpec("positions", "int64", ("batch", "sequence")),
                   TensorSpec("attention_mask", "int64", ("batch", "total_sequence")), *kv_in),
                  (TensorSpec("hidden_states", dtype, ("batch", "sequence", d)), *kv_out),
                  "decoder stack + final norm, KV cache in / out; prefill (past_sequence 0) and decode"),
        GraphSpec("lm_head", (TensorSpec("hidden_states", dtype, ("batch", d)),),
                  (TensorSpec("logits", dtype, ("batch", c.vocab_size)),), "text head: hidden -> text-token logits"),
        GraphSpec("gen_head", (TensorSpec("hidden_states", dtype, ("batch", d)),),
                  (TensorSpec("logits", dtype, ("batch", cfg.gen_head.vocab_size)),),
                  "image head: hidden -> image-token logits"),
        GraphSpec("gen_embed", (TensorSpec("image_token_ids", "int64", ("batch", "sequence")),),
                  (TensorSpec("inputs_embeds", dtype, ("batch", "sequence", d)),),
                  "gen_embed + gen_aligner: image-token ids -> inputs_embeds"),
        GraphSpec("vq_decoder", (TensorSpec("image_token_ids", "int64", ("images", grid * grid)),),
                  (TensorSpec("pixel_values", dtype, ("images", 3, cfg.vq.image_size, cfg.vq.image_size)),),
                  "VQ-16 decoder with codebook lookup: image-token ids (raster order) -> RGB in [-1, 1]"),
    ]
    return {s.name: s for s in specs}


def _component(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """The module itself when it already has `dtype`, else a converted copy (the loaded model is untouched)."""
    first = next(module.parameters())
    return module if first.dtype == dtype else copy.deepcopy(module).to(dtype)


BUILDERS: dict[str, Callable[[JanusModel, torch.dtype], nn.Module]] = {
    "vision": lambda m, dt: graphs.VisionGraph(_component(m.vision, dt), _component(m.aligner, dt)),
    "text_embed": lambda m, dt: graphs.TextEmbedGraph(_component(m.llm, dt)),
    "transformer": lambda m, dt: graphs.TransformerGraph(_component(m.llm, dt)),
    "lm_head": lambda m, dt: graphs.HeadGraph(_component(m.lm_head, dt)),
    "gen_head": lambda m, dt: graphs.HeadGraph(_component(m.gen_head, dt)),
    "gen_embed": lambda m, dt: graphs.GenEmbedGraph(_component(m.gen_embed, dt), _component(m.gen_aligner, dt)),
    "vq_decoder": lambda m, dt: graphs.VQDecoderGraph(_component(m.vq, dt)),
}


def build_module(name: str, model: JanusModel, dtype: str) -> nn.Module:
    """The export wrapper of graph `name` over `model`'s parameters, in `dtype`, in eval mode."""
    return BUILDERS[name](model, DTYPES[dtype]).eval()


def concrete_shape(shape: Shape, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(s if isinstance(s, int) else sizes[s] for s in shape)


def random_inputs(spec: GraphSpec, cfg: JanusConfig, sizes: dict[str, int], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Valid random inputs for `spec` at the given axis sizes (ids in range, left-padded attention masks)."""
    out: dict[str, torch.Tensor] = {}
    for t in spec.inputs:
        shape = concrete_shape(t.shape, sizes)
        if t.name == "attention_mask":  # left padding: row b starts at a random slot <= its last token
            start = torch.randint(0, shape[1], (shape[0],), generator=generator)
            start[0] = 0  # at least one unpadded row
            out[t.name] = (torch.arange(shape[1])[None, :] >= start[:, None]).long()  # [B, total]
        elif t.name == "positions":
            out[t.name] = torch.randint(0, cfg.llm.max_position_embeddings, shape, generator=generator)
        elif t.name == "input_ids":
            out[t.name] = torch.randint(0, cfg.llm.vocab_size, shape, generator=generator)
        elif t.name == "image_token_ids":
            out[t.name] = torch.randint(0, cfg.vq.codebook_size, shape, generator=generator)
        elif t.name == "pixel_values":
            out[t.name] = (torch.rand(shape, generator=generator) * 2 - 1).to(DTYPES[t.dtype])
        else:  # embeddings, hidden states, KV cache: unit-scale activations
            out[t.name] = torch.randn(shape, generator=generator).to(DTYPES[t.dtype])
    return out
