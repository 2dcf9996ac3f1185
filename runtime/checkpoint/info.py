"""Checkpoint summaries for `janus-rt info`: variant, dimensions, parameter count and bytes, without loading weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from janus_rt.checkpoint.files import find_weight_files, iter_tensors
from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.model.config import JanusConfig
from janus_rt.model.config_loading import load_config
from janus_rt.model.janus import JanusModel
from janus_rt.quant.checkpoint import read_quant_block, spec_of
from janus_rt.quant.model import step_weight_bytes


def format_count(n: int) -> str:
    """A count in words a reader cannot take for bytes: 950 -> '950', 3_628_451 -> '3.63 million',
    1_480_000_000 -> '1.48 billion'."""
    for scale, word in ((10**9, "billion"), (10**6, "million"), (10**3, "thousand")):
        if n >= scale:
            return f"{n / scale:.2f} {word}"
    return str(n)


def format_bytes(n: int) -> str:
    """A byte count in the largest binary unit that keeps it >= 1: '90 bytes', '14.6 MiB', '13.81 GiB'."""
    if n < 1024:
        return f"{n} bytes"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    raise AssertionError("unreachable")


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied lm_head counts once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def stored_dtype(path: Path) -> str:
    """dtype of the first tensor in the first weight file, read through the loader's own checks (a truncated or
    corrupt file gives the same CheckpointError as `load`); safetensors and mmap'd .bin read lazily."""
    weights = find_weight_files(path)
    _, _, tensor = next(iter_tensors(replace(weights, files=weights.files[:1], weight_map=None)))
    return str(tensor.dtype).removeprefix("torch.")


def describe(cfg: JanusConfig, parameters: int, dtype: torch.dtype, chat_format: str | None) -> dict:
    info: dict = {
        "variant": cfg.variant_name(None if chat_format is None else chat_format == "pro"),
        "layout": cfg.layout,
        "llm": {"hidden": cfg.llm.hidden_size, "layers": cfg.llm.num_layers, "heads": cfg.llm.num_heads,
                "kv_heads": cfg.llm.num_kv_heads, "head_dim": cfg.llm.head_dim, "intermediate": cfg.llm.intermediate_size,
                "vocab": cfg.llm.vocab_size, "context": cfg.llm.max_position_embeddings},
        "vision": {"image_size": cfg.vision.image_size, "patch": cfg.vision.patch_size, "width": cfg.vision.width,
                   "layers": cfg.vision.layers, "heads": cfg.vision.heads},
        "vq": {"codes": cfg.vq.codebook_size, "code_dim": cfg.vq.codebook_embed_dim,
               "image_tokens": cfg.image_tokens_per_image, "image_size": cfg.vq.image_size},
        "parameters": parameters,
        "dtype": str(dtype).removeprefix("torch."),
        "bytes": parameters * torch.empty((), dtype=dtype).element_size(),
    }
    if chat_format is not None:
        info["chat_format"] = chat_format
    return info


def checkpoint_info(path: str | Path, dtype: torch.dtype | None = None) -> dict:
    """Summary of a checkpoint directory; `bytes` is the runtime size in `dtype` (default: as stored)."""
    path = Path(path)
    cfg = load_config(path)
    with torch.device("meta"):
        parameters = count_parameters(JanusModel(cfg))
    stored = stored_dtype(path)
    tokenizer = JanusTokenizer(path)
    block = read_quant_block(path)
    spec = spec_of(block) if block is not None else None
    float_dtype = getattr(torch, block["dtype"], torch.bfloat16) if block is not None else \
        getattr(torch, stored, torch.float32)
    runtime_dtype = dtype or float_dtype
    info = describe(cfg, parameters, runtime_dtype, "pro" if tokenizer.has_pro_roles else "legacy")
    weights = find_weight_files(path)
    info["checkpoint"] = {"files": [f.name for f in weights.files], "stored_dtype": stored,
                          "file_bytes": sum(f.stat().st_size for f in weights.files)}
    info["step_bytes"] = step_weight_bytes(cfg, runtime_dtype, spec)  # weights one decode step reads
    if block is not None:
        info["quantization"] = {k: v for k, v in block.items() if k != "modules"}
        info["quantization"]["modules"] = len(block.get("modules", []))
        info["checkpoint"]["stored_dtype"] = f"{spec.format} + {block['dtype']}"
        info["bytes"] = info["checkpoint"]["file_bytes"]
    return info
