"""config.json's two layouts, each parsed explicitly into a `JanusConfig` (no fuzzy name matching):

- official DeepSeek layout (`model_type: multi_modality`, `parse_official`), where the language model config may
  rely on `transformers.LlamaConfig` defaults (Janus-Pro-7B does) and the vision tower / VQ model are *named*
  (`siglip_large_patch16_384`, `VQ-16`); explicit dimensions in their `params` override the named ones so
  that small test checkpoints can describe themselves;
- Hugging Face layout (`model_type: janus`, `JanusForConditionalGeneration`, `parse_hf`).

Both read the language model with `parse_llama`. Errors are `CheckpointError`s naming the file (`config_error`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from janus_rt.errors import CheckpointError
from janus_rt.model.config import (GenHeadConfig, ImageProcessorConfig, JanusConfig, LLMConfig, MlpConfig, VisionConfig,
                                   VQConfig)

# transformers.LlamaConfig defaults: Janus-Pro-7B's language_config states only 5 fields and relies on these.
LLAMA_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,  # None means "same as num_attention_heads"
    "head_dim": None,  # None means hidden_size // num_attention_heads
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
}

# Official siglip_vit.py SigLIP_MODEL_CONFIG entries (dimensions only), by model_name.
SIGLIP_NAMED: dict[str, dict[str, Any]] = {
    "siglip_large_patch16_384": {"image_size": 384, "patch_size": 16, "width": 1024, "layers": 24, "heads": 16, "mlp_ratio": 4},
    "siglip_so400m_patch14_384": {"image_size": 336, "patch_size": 14, "width": 1152, "layers": 27, "heads": 16, "mlp_ratio": 3.7362},
    "siglip_so400m_patch14_224": {"image_size": 224, "patch_size": 14, "width": 1152, "layers": 27, "heads": 16, "mlp_ratio": 3.7362},
}
SIGLIP_EXPLICIT_KEYS = ("image_size", "patch_size", "width", "layers", "heads", "mlp_ratio")

# Official vq_model.py: VQ_models["VQ-16"] = VQModel(ModelArgs(...)) with Decoder(ch=128, num_res_blocks=2).
VQ_NAMED: dict[str, dict[str, Any]] = {
    "VQ-16": {
        "codebook_size": 16384,
        "codebook_embed_dim": 8,
        "z_channels": 256,
        "ch": 128,
        "decoder_ch_mult": [1, 1, 2, 2, 4],
        "num_res_blocks": 2,
    },
}
VQ_EXPLICIT_KEYS = ("codebook_size", "codebook_embed_dim", "z_channels", "ch", "decoder_ch_mult", "num_res_blocks")

# The official generation scripts always produce 24 x 24 = 576 image tokens per image. janus-rt's tiny test
# checkpoints may state a smaller grid in gen_vision_config.params.image_token_grid (no release has that key).
OFFICIAL_IMAGE_TOKEN_GRID = 24


def config_error(path: Path, msg: str) -> CheckpointError:
    """A CheckpointError that names the config file."""
    return CheckpointError(f"{path}: {msg}")


def _require(d: dict, key: str, path: Path, where: str) -> Any:
    if key not in d:
        raise config_error(path, f"missing '{key}' in {where}")
    return d[key]


def _require_section(d: dict, key: str, path: Path, where: str) -> dict:
    """A sub-config that must be a JSON object (e.g. `language_config`)."""
    value = _require(d, key, path, where)
    if not isinstance(value, dict):
        raise config_error(path, f"'{key}' in {where} must be a JSON object, got {type(value).__name__}")
    return value


def parse_llama(raw: dict, path: Path, where: str) -> LLMConfig:
    """Build an LLMConfig from a LlamaConfig-style dict, applying LlamaConfig defaults for absent keys."""
    c = {**LLAMA_DEFAULTS, **{k: v for k, v in raw.items() if v is not None or k not in LLAMA_DEFAULTS}}
    if c.get("hidden_act", "silu") != "silu":
        raise config_error(path, f"{where}.hidden_act is {c['hidden_act']!r}; "
                           "janus-rt supports the Llama 'silu' MLP only")
    if c.get("attention_bias") or c.get("mlp_bias"):
        raise config_error(path, f"{where} asks for attention/MLP biases; Janus' language model has none")
    rope_params = c.get("rope_parameters") or {}
    scaling = c.get("rope_scaling") or None
    rope_type = (scaling or {}).get("rope_type", (scaling or {}).get("type")) or rope_params.get("rope_type", "default")
    if rope_type != "default":
        raise config_error(path, f"{where} uses RoPE scaling {rope_type!r}; "
                           "Janus uses plain RoPE and janus-rt supports only that")
    rope_theta = float(rope_params.get("rope_theta", c.get("rope_theta", 10000.0)))
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
        if int(c[name]) < 1:
            raise config_error(path, f"{where}.{name} is {c[name]!r}; it must be a positive integer")
    if c["num_key_value_heads"] is not None and int(c["num_key_value_heads"]) < 1:
        raise config_error(path, f"{where}.num_key_value_heads is {c['num_key_value_heads']!r}; "
                           "it must be a positive integer")
    heads = int(c["num_attention_heads"])
    kv_heads = int(c["num_key_value_heads"] or heads)
    hidden = int(c["hidden_size"])
    head_dim = int(c.get("head_dim") or hidden // heads)
    if heads % kv_heads:
        raise config_error(path, f"{where}: num_attention_heads {heads} is not a multiple of "
                           f"num_key_value_heads {kv_heads}")
    return LLMConfig(
        vocab_size=int(c["vocab_size"]),
        hidden_size=hidden,
        intermediate_size=int(c["intermediate_size"]),
        num_layers=int(c["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=float(c["rms_norm_eps"]),
        rope_theta=rope_theta,
        max_position_embeddings=int(c["max_position_embeddings"]),
        tie_word_embeddings=bool(c.get("tie_word_embeddings", False)),
    )


def _parse_official_vision(vc: dict, path: Path) -> VisionConfig:
    cls = vc.get("cls")
    if cls != "CLIPVisionTower":
        raise config_error(path, f"vision_config.cls is {cls!r}; janus-rt supports 'CLIPVisionTower' (SigLIP) only")
    params = dict(vc.get("params") or {})
    name = params.get("model_name", "siglip_large_patch16_384")
    named = SIGLIP_NAMED.get(name)
    explicit = {k: params[k] for k in SIGLIP_EXPLICIT_KEYS if k in params}
    if named is None and not all(k in explicit for k in ("patch_size", "width", "layers", "heads", "mlp_ratio")):
        raise config_error(
            path,
            f"vision_config model_name {name!r} is not a known SigLIP tower ({', '.join(SIGLIP_NAMED)}); "
            f"give its dimensions explicitly in vision_config.params: {', '.join(SIGLIP_EXPLICIT_KEYS)}",
        )
    dims = {**(named or {}), **explicit}
    total_layers = int(dims["layers"])
    select_layer = int(params.get("select_layer", -1))
    # siglip_vit.create_siglip_vit: blocks built = all + select_layer + 1 for select_layer <= 0, else select_layer.
    layers = min(total_layers, total_layers + select_layer + 1) if select_layer <= 0 else min(total_layers, select_layer)
    if layers < 1:
        raise config_error(path, f"vision_config select_layer {select_layer} leaves no SigLIP block to run")
    width = int(dims["width"])
    image_size = params.get("image_size", dims["image_size"])
    if isinstance(image_size, (list, tuple)):
        if len(set(image_size)) != 1:
            raise config_error(path, f"vision_config image_size {image_size} is not square")
        image_size = image_size[0]
    return VisionConfig(
        image_size=int(image_size),
        patch_size=int(dims["patch_size"]),
        width=width,
        layers=layers,
        heads=int(dims["heads"]),
        mlp_dim=int(width * float(dims["mlp_ratio"])),
        layer_norm_eps=1e-6,
    )


def _parse_official_mlp(ac: dict, path: Path, where: str) -> MlpConfig:
    if ac.get("cls") != "MlpProjector":
        raise config_error(path, f"{where}.cls is {ac.get('cls')!r}; janus-rt supports 'MlpProjector'")
    p = ac.get("params") or {}
    ptype = p.get("projector_type", "mlp_gelu")
    if ptype not in ("mlp_gelu", "linear"):
        raise config_error(path, f"{where}.params.projector_type {ptype!r} is not supported (mlp_gelu or linear)")
    depth = int(p.get("depth", 1)) if ptype == "mlp_gelu" else 1
    return MlpConfig(
        input_dim=int(_require(p, "input_dim", path, f"{where}.params")),
        output_dim=int(_require(p, "n_embed", path, f"{where}.params")),
        depth=depth,
    )


def _parse_official_vq(gc: dict, path: Path) -> tuple[VQConfig, int, int]:
    name = gc.get("cls", "VQ-16")
    params = dict(gc.get("params") or {})
    named = VQ_NAMED.get(name)
    explicit = {k: params[k] for k in VQ_EXPLICIT_KEYS if k in params}
    if named is None and set(explicit) != set(VQ_EXPLICIT_KEYS):
        raise config_error(
            path,
            f"gen_vision_config.cls {name!r} is not a known VQ model ({', '.join(VQ_NAMED)}); give its "
            f"dimensions explicitly in gen_vision_config.params: {', '.join(VQ_EXPLICIT_KEYS)}",
        )
    dims = {**(named or {}), **explicit}
    grid = int(params.get("image_token_grid", OFFICIAL_IMAGE_TOKEN_GRID))
    if grid < 1:
        raise config_error(path, f"gen_vision_config.params.image_token_grid must be >= 1, got {grid}")
    vq = VQConfig(
        codebook_size=int(dims["codebook_size"]),
        codebook_embed_dim=int(dims["codebook_embed_dim"]),
        z_channels=int(dims["z_channels"]),
        base_channels=int(dims["ch"]),
        channel_multipliers=tuple(int(m) for m in dims["decoder_ch_mult"]),
        num_res_blocks=int(dims["num_res_blocks"]),
        image_token_grid=grid,
    )
    gen_rows = int(params.get("image_token_size", vq.codebook_size))
    gen_dim = int(params.get("n_embed", vq.codebook_embed_dim))
    return vq, gen_rows, gen_dim


def parse_official(cfg: dict, path: Path) -> JanusConfig:
    lang = _require_section(cfg, "language_config", path, "config.json")
    llm = parse_llama(lang, path, "language_config")
    vision = _parse_official_vision(_require_section(cfg, "vision_config", path, "config.json"), path)
    aligner = _parse_official_mlp(_require_section(cfg, "aligner_config", path, "config.json"), path, "aligner_config")
    gen_aligner = _parse_official_mlp(
        _require_section(cfg, "gen_aligner_config", path, "config.json"), path, "gen_aligner_config"
    )
    vq, gen_rows, gen_dim = _parse_official_vq(_require_section(cfg, "gen_vision_config", path, "config.json"), path)
    gh = _require_section(cfg, "gen_head_config", path, "config.json")
    if gh.get("cls") != "vision_head":
        raise config_error(path, f"gen_head_config.cls is {gh.get('cls')!r}; janus-rt supports 'vision_head'")
    ghp = gh.get("params") or {}
    gen_head = GenHeadConfig(
        input_dim=int(ghp.get("n_embed", llm.hidden_size)),
        hidden_dim=int(ghp.get("image_token_embed", llm.hidden_size)),
        vocab_size=int(ghp.get("image_token_size", vq.codebook_size)),
    )
    return JanusConfig(
        layout="official",
        llm=llm,
        vision=vision,
        aligner=aligner,
        gen_embed_rows=gen_rows,
        gen_embed_dim=gen_dim,
        gen_aligner=gen_aligner,
        gen_head=gen_head,
        vq=vq,
        image_processor=ImageProcessorConfig(image_size=vision.image_size),
    )


def parse_hf(cfg: dict, path: Path) -> JanusConfig:
    text = dict(cfg.get("text_config") or {})
    if text.get("model_type", "llama") != "llama":
        raise config_error(path, f"text_config.model_type is {text.get('model_type')!r}; Janus uses 'llama'")
    # transformers 5 ties lm_head to embed_tokens from the top-level flag (4.x read text_config's): either
    # allows tying. The loader ties only when the checkpoint has no lm_head.weight of its own.
    text["tie_word_embeddings"] = bool(cfg.get("tie_word_embeddings", False) or text.get("tie_word_embeddings", False))
    llm = parse_llama(text, path, "text_config")
    v = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 384,
         "patch_size": 16, "mlp_ratio": 4.0, "layer_norm_eps": 1e-6, "projection_dim": 2048, "depth": 2,
         "hidden_act": "gelu", "use_qk_norm": False, "attention_bias": True, **(cfg.get("vision_config") or {})}
    if v["use_qk_norm"] or not v["attention_bias"] or v["hidden_act"] not in ("gelu",):
        raise config_error(path, "vision_config asks for qk-norm, no qkv bias or a non-GELU activation; "
                           "Janus' SigLIP has none of these")
    vision = VisionConfig(
        image_size=int(v["image_size"]),
        patch_size=int(v["patch_size"]),
        width=int(v["hidden_size"]),
        layers=int(v["num_hidden_layers"]),
        heads=int(v["num_attention_heads"]),
        mlp_dim=int(int(v["hidden_size"]) * float(v["mlp_ratio"])),
        layer_norm_eps=float(v["layer_norm_eps"]),
    )
    q = {"embed_dim": 8, "num_embeddings": 16384, "latent_channels": 256, "base_channels": 128,
         "channel_multiplier": [1, 1, 2, 2, 4], "num_res_blocks": 2, "projection_dim": 2048,
         "num_hidden_layers": 2, "hidden_act": "gelu", "image_token_embed_dim": 2048, "double_latent": False,
         **(cfg.get("vq_config") or {})}
    vq = VQConfig(
        codebook_size=int(q["num_embeddings"]),
        codebook_embed_dim=int(q["embed_dim"]),
        z_channels=int(q["latent_channels"]),
        base_channels=int(q["base_channels"]),
        channel_multipliers=tuple(int(m) for m in q["channel_multiplier"]),
        num_res_blocks=int(q["num_res_blocks"]),
        # HF's JanusConfig sets vq_config.num_patches = vision image_size // patch_size.
        image_token_grid=vision.grid,
    )
    return JanusConfig(
        layout="hf",
        llm=llm,
        vision=vision,
        aligner=MlpConfig(vision.width, int(v["projection_dim"]), int(v["depth"])),
        gen_embed_rows=vq.codebook_size,
        gen_embed_dim=vq.codebook_embed_dim,
        gen_aligner=MlpConfig(vq.codebook_embed_dim, int(q["projection_dim"]), int(q["num_hidden_layers"])),
        gen_head=GenHeadConfig(int(q["image_token_embed_dim"]), int(q["projection_dim"]), vq.codebook_size),
        vq=vq,
        image_processor=ImageProcessorConfig(image_size=vision.image_size),
    )
