"""Test helpers: tiny random `transformers` Janus checkpoints (HF layout) and their official-layout rewrite.

The HF -> official key conversion here is written from the published conversion table (the inverse of
transformers' `convert_janus_weights_to_hf.py`), independently of janus-rt's own loader, so loading the
rewritten checkpoint checks janus-rt's official-layout mapping against the oracle.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from janus_rt.checkpoint.tiny import TinySpec, build_tokenizer
from janus_rt.checkpoint.tokenizer import BEGIN_OF_IMAGE, BOS, EOS, IMAGE_PLACEHOLDER, PAD

# Small but structurally complete: GQA in the LLM, a 2-level VQ decoder (48 px images), 576 image tokens.
HF_TEXT = dict(model_type="llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=448, max_position_embeddings=2048, rms_norm_eps=1e-6)
HF_VISION = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=384, patch_size=16,
                 projection_dim=64, mlp_ratio=4.0)
HF_VQ = dict(embed_dim=8, num_embeddings=16384, latent_channels=32, base_channels=32, channel_multiplier=[1, 2],
             num_res_blocks=1, projection_dim=64, image_token_embed_dim=64)


def make_hf_checkpoint(out: Path, seed: int = 0, vq: dict | None = None, text: dict | None = None):
    """Save a random `JanusForConditionalGeneration` with `save_pretrained` plus a tokenizer; return the model."""
    from transformers import JanusConfig, JanusForConditionalGeneration

    tok = build_tokenizer(TinySpec())
    config = JanusConfig(
        text_config={**HF_TEXT, **(text or {})},
        vision_config=HF_VISION,
        vq_config={**HF_VQ, **(vq or {})},
        image_token_id=tok.token_to_id(IMAGE_PLACEHOLDER),
    )
    torch.manual_seed(seed)
    model = JanusForConditionalGeneration(config).eval()
    with torch.no_grad():
        # HF initialises with std 0.02, norms to 1 and biases to 0: outputs are then nearly constant (greedy CFG
        # repeats one or two image tokens). Use fan-in scaled weights, unit-variance embeddings and random
        # norms / biases so that every component shapes the outputs and a mix-up shows.
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:  # also the tied lm_head: std 0.3 keeps text logits at std ~2
                p.normal_(0.0, 0.3)
            elif "embedding" in name and "patch" not in name:
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, (1.0 / p[0].numel()) ** 0.5)
    model.generation_config.bos_token_id = tok.token_to_id(BOS)
    model.generation_config.eos_token_id = tok.token_to_id(EOS)
    model.generation_config.pad_token_id = tok.token_to_id(PAD)
    model.generation_config.generation_kwargs = {"boi_token_id": tok.token_to_id(BEGIN_OF_IMAGE)}
    model.save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    return model, tok


# Official-layout key <- HF key, following the published conversion table (section 2.2 of the reference).
_HF_TO_OFFICIAL = [
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.weight$", "language_model.lm_head.weight"),
    (r"^model\.vision_model\.embeddings\.patch_embedding\.", "vision_model.vision_tower.patch_embed.proj."),
    (r"^model\.vision_model\.embeddings\.position_embedding\.weight$", "vision_model.vision_tower.pos_embed"),
    (r"^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection_layer\.", r"vision_model.vision_tower.blocks.\1.attn.proj."),
    (r"^model\.vision_model\.encoder\.layers\.(\d+)\.layer_norm([12])\.", r"vision_model.vision_tower.blocks.\1.norm\2."),
    (r"^model\.vision_model\.encoder\.layers\.(\d+)\.mlp\.", r"vision_model.vision_tower.blocks.\1.mlp."),
    (r"^model\.vision_model\.post_layernorm\.", "vision_model.vision_tower.norm."),
    (r"^model\.aligner\.fc1\.", "aligner.layers.0."),
    (r"^model\.aligner\.hidden_layers\.0\.", "aligner.layers.2."),
    (r"^model\.generation_aligner\.fc1\.", "gen_aligner.layers.0."),
    (r"^model\.generation_aligner\.hidden_layers\.0\.", "gen_aligner.layers.2."),
    (r"^model\.generation_embeddings\.", "gen_embed."),
    (r"^model\.generation_head\.proj_out\.", "gen_head.output_mlp_projector."),
    (r"^model\.generation_head\.vision_head\.", "gen_head.vision_head."),
    (r"^model\.vqmodel\.", "gen_vision_model."),
]
_VQ_RENAMES = [(r"\.decoder\.up\.", ".decoder.conv_blocks."), (r"\.encoder\.down\.", ".encoder.conv_blocks."),
               (r"\.block\.(\d+)\.", r".res.\1."), (r"\.mid\.block_1\.", ".mid.0."), (r"\.mid\.attn_1\.", ".mid.1."),
               (r"\.mid\.block_2\.", ".mid.2.")]


def hf_to_official_state(hf_state: dict[str, torch.Tensor], lm_head: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in hf_state.items():
        m = re.match(r"^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", key)
        if m:
            qkv.setdefault(f"vision_model.vision_tower.blocks.{m.group(1)}.attn.qkv.{m.group(3)}", {})[m.group(2)] = t
            continue
        new = key
        for pat, rep in _HF_TO_OFFICIAL:
            if re.search(pat, new):
                new = re.sub(pat, rep, new)
                break
        if new.startswith("gen_vision_model."):
            for pat, rep in _VQ_RENAMES:
                new = re.sub(pat, rep, new)
        if new == "vision_model.vision_tower.pos_embed":
            t = t.unsqueeze(0)
        out[new] = t.clone()
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    out["language_model.lm_head.weight"] = lm_head.clone()
    # Keys a real official checkpoint also holds and janus-rt must knowingly ignore.
    width = HF_VISION["hidden_size"]
    out["vision_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, width)
    out["vision_model.vision_tower.attn_pool.q.weight"] = torch.randn(width, width)
    out["gen_vision_model.quantize.codebook_used"] = torch.zeros(65536)
    return out


def official_config_from_hf(hf_config: dict) -> dict:
    """The `multi_modality` config.json describing the same tiny model, with explicit dimensions."""
    t, v, q = hf_config["text_config"], hf_config["vision_config"], hf_config["vq_config"]
    language = {k: t[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                  "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps")}
    return {
        "model_type": "multi_modality",
        "language_config": {"model_type": "llama", **language},
        "vision_config": {"cls": "CLIPVisionTower", "params": {
            "model_name": "siglip_tiny_test", "image_size": v["image_size"], "select_feature": "same", "select_layer": -1,
            "patch_size": v["patch_size"], "width": v["hidden_size"], "layers": v["num_hidden_layers"],
            "heads": v["num_attention_heads"], "mlp_ratio": v["mlp_ratio"]}},
        "aligner_config": {"cls": "MlpProjector", "params": {
            "projector_type": "mlp_gelu", "depth": 2, "input_dim": v["hidden_size"], "n_embed": v["projection_dim"]}},
        "gen_vision_config": {"cls": "VQ-tiny-test", "params": {
            "image_token_size": q["num_embeddings"], "n_embed": q["embed_dim"], "codebook_size": q["num_embeddings"],
            "codebook_embed_dim": q["embed_dim"], "z_channels": q["latent_channels"], "ch": q["base_channels"],
            "decoder_ch_mult": q["channel_multiplier"], "num_res_blocks": q["num_res_blocks"]}},
        "gen_aligner_config": {"cls": "MlpProjector", "params": {
            "projector_type": "mlp_gelu", "depth": 2, "input_dim": q["embed_dim"], "n_embed": q["projection_dim"]}},
        "gen_head_config": {"cls": "vision_head", "params": {
            "n_embed": q["image_token_embed_dim"], "image_token_embed": q["projection_dim"],
            "image_token_size": q["num_embeddings"]}},
    }


def write_official_from_hf(hf_dir: Path, hf_model, out: Path, weights_format: str = "bin") -> Path:
    from janus_rt.checkpoint.tiny import save_weights

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach() for k, v in hf_model.state_dict().items()}
    official = hf_to_official_state(state, hf_model.lm_head.weight.detach())
    save_weights(official, out, weights_format)  # type: ignore[arg-type]
    hf_config = json.loads((hf_dir / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(official_config_from_hf(hf_config), indent=2))
    (out / "tokenizer.json").write_bytes((hf_dir / "tokenizer.json").read_bytes())
    return out
