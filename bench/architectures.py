"""The architectures `janus-rt bench` builds: the real release config.json files, and a tiny one for CPU runs.

`CONFIG_1B` is Janus-1.3B's config.json (Janus-Pro-1B has the same shapes); `CONFIG_7B` is Janus-Pro-7B's,
whose `language_config` states only five fields and relies on `transformers.LlamaConfig` defaults. Both are
the published files (the tests check they parse to the reference dimensions), so a benchmark of
`architecture_config("janus-1.3b")` runs exactly the shapes of the real model, with random weights.
"""

from __future__ import annotations

from pathlib import Path

from janus_rt.model.config import JanusConfig
from janus_rt.model.config_layouts import parse_official
from janus_rt.model.config_loading import check_consistency
from janus_rt.checkpoint.tiny import TinySpec, official_config


def release_config(d: int, language_config: dict) -> dict:
    """A release config.json as published: the parts shared by all three checkpoints, with hidden size `d`."""
    return {
        "model_type": "multi_modality",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.33.1",
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision", "params": {
            "image_size": 384, "model_name": "siglip_large_patch16_384", "select_feature": "same", "select_layer": -1}},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner", "params": {
            "depth": 2, "input_dim": 1024, "n_embed": d, "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision", "params": {
            "image_token_size": 16384, "n_embed": 8}},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner", "params": {
            "depth": 2, "input_dim": 8, "n_embed": d, "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head", "params": {
            "image_token_embed": d, "image_token_size": 16384, "n_embed": d}},
        "language_config": language_config,
    }


# Janus-1.3B (mirrored verbatim at onnx-community/Janus-1.3B-ONNX) and Janus-Pro-1B share these values.
LANGUAGE_1B = {"hidden_size": 2048, "intermediate_size": 5632, "max_position_embeddings": 16384, "model_type": "llama",
               "num_attention_heads": 16, "num_hidden_layers": 24, "num_key_value_heads": 16,
               "torch_dtype": "bfloat16", "vocab_size": 102400}
# Janus-Pro-7B states only these five fields; everything else is a transformers.LlamaConfig default.
LANGUAGE_7B = {"max_position_embeddings": 16384, "model_type": "llama", "num_hidden_layers": 30,
               "torch_dtype": "bfloat16", "vocab_size": 102400}
CONFIG_1B = release_config(2048, LANGUAGE_1B)
CONFIG_7B = release_config(4096, LANGUAGE_7B)

# The tiny test shape (`janus_rt.checkpoint.tiny` defaults) with the full 5-level VQ decoder (384 px images), as
# `janus-rt demo` builds it; 448 vocabulary rows, as its tokenizer rounds up to.
TINY_VOCAB = 448
TINY_SPEC = TinySpec(vq_mults=(1, 1, 2, 2, 4))

ARCHITECTURES = ("janus-1.3b", "janus-pro-7b", "tiny")


def architecture_json(name: str) -> dict:
    """The config.json dict (official `multi_modality` layout) of architecture `name` (one of ARCHITECTURES)."""
    if name == "janus-1.3b":
        return CONFIG_1B
    if name == "janus-pro-7b":
        return CONFIG_7B
    if name == "tiny":
        return official_config(TINY_SPEC, TINY_VOCAB)
    raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")


def architecture_config(name: str) -> JanusConfig:
    """Parse architecture `name`'s config.json exactly as `load_config` would parse it from a checkpoint."""
    where = Path(f"<{name}>/config.json")
    cfg = parse_official(architecture_json(name), where)
    check_consistency(cfg, where)
    return cfg
