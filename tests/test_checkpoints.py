"""Checkpoint formats, config parsing and chat-format detection.

- The same random weights written as safetensors, `.bin`, sharded safetensors and sharded `.bin` load to
  bit-identical parameters and give the same greedy answer; the loaded parameters are the written ones.
- The three real release configs (Janus-1.3B / Janus-Pro-1B and Janus-Pro-7B, whose language_config relies on
  `transformers.LlamaConfig` defaults) parse to the dimensions of the reference (janus-reference.md §1.4),
  their official key shapes match §2.1, and the parameter count of the module tree janus-rt builds is derived
  here from those dimensions and compared with the size of the published weight files.
- Hugging Face layout (`model_type: janus`): `rope_parameters` / legacy `rope_theta`, and lm_head tying.
- Chat format: Janus-Pro roles when the tokenizer has `<|User|>`, the Janus-1.3B ones otherwise, and the
  `chat_format=` override of `janus_rt.load`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import janus_rt
from janus_rt.bench.architectures import CONFIG_1B, CONFIG_7B, LANGUAGE_7B
from janus_rt.model.config import GenHeadConfig, JanusConfig, MlpConfig, VisionConfig, VQConfig
from janus_rt.model.config_loading import load_config
from janus_rt.errors import CheckpointError
from janus_rt.checkpoint.tiny import TinySpec, official_key_shapes, random_state_dict, write_tiny_checkpoint
from oracle import transformers_oracle

FORMATS = ("safetensors", "bin", "sharded-safetensors", "sharded-bin")
SEED = 3
# The weight files each format must produce (official / HF file names, 2 shards for the sharded formats).
WEIGHT_FILES = {
    "safetensors": {"model.safetensors"},
    "bin": {"pytorch_model.bin"},
    "sharded-safetensors": {"model.safetensors.index.json", "model-00001-of-00002.safetensors",
                            "model-00002-of-00002.safetensors"},
    "sharded-bin": {"pytorch_model.bin.index.json", "pytorch_model-00001-of-00002.bin",
                    "pytorch_model-00002-of-00002.bin"},
}
NON_WEIGHT_FILES = {"config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"}

# Understanding system prompt of the reference processor (janus-reference.md §4.1), written out independently.
SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)


# --------------------------------------------------------------------------------------- weight formats
@pytest.fixture(scope="module")
def format_dirs(tiny_checkpoint) -> dict[str, Path]:
    return {fmt: tiny_checkpoint(weights_format=fmt, seed=SEED) for fmt in FORMATS}


@pytest.fixture(scope="module")
def loaded_formats(format_dirs: dict[str, Path]) -> dict[str, janus_rt.Janus]:
    return {fmt: janus_rt.load(path, device="cpu", dtype="float32") for fmt, path in format_dirs.items()}


def test_each_format_writes_its_own_weight_files(format_dirs: dict[str, Path]) -> None:
    for fmt, path in format_dirs.items():
        names = {p.name for p in path.iterdir()}
        assert names - NON_WEIGHT_FILES == WEIGHT_FILES[fmt], fmt


def test_sharded_index_covers_every_key_once(format_dirs: dict[str, Path]) -> None:
    for fmt, index_name in (("sharded-safetensors", "model.safetensors.index.json"),
                            ("sharded-bin", "pytorch_model.bin.index.json")):
        index = json.loads((format_dirs[fmt] / index_name).read_text())
        cfg = load_config(format_dirs[fmt])
        assert set(index["weight_map"]) == set(official_key_shapes(cfg))
        assert set(index["weight_map"].values()) == WEIGHT_FILES[fmt] - {index_name}


def test_all_formats_load_identical_parameters(loaded_formats: dict[str, janus_rt.Janus], tmp_path: Path) -> None:
    ref = loaded_formats["safetensors"].model.state_dict()
    assert len(ref) > 50
    for fmt in FORMATS[1:]:
        state = loaded_formats[fmt].model.state_dict()
        assert state.keys() == ref.keys(), fmt
        for key, tensor in ref.items():
            assert state[key].dtype == tensor.dtype == torch.float32, (fmt, key)
            assert torch.equal(state[key], tensor), (fmt, key)
    # The comparison can tell checkpoints apart: another seed gives other parameters.
    other = janus_rt.load(write_tiny_checkpoint(tmp_path / "other", seed=SEED + 1), device="cpu", dtype="float32")
    assert not torch.equal(other.model.state_dict()["llm.embed_tokens.weight"], ref["llm.embed_tokens.weight"])


def test_loaded_parameters_are_the_written_weights(loaded_formats: dict[str, janus_rt.Janus]) -> None:
    """Spot-check the official -> janus-rt mapping against the tensors `write_tiny_checkpoint` wrote."""
    m = loaded_formats["sharded-bin"]
    written = random_state_dict(official_key_shapes(m.config), SEED)
    lm, layer = "language_model.model.", "language_model.model.layers.1."
    p = m.model
    assert torch.equal(p.lm_head.weight, written["language_model.lm_head.weight"])
    assert torch.equal(p.llm.embed_tokens.weight, written[lm + "embed_tokens.weight"])
    qkv = torch.cat([written[layer + f"self_attn.{x}_proj.weight"] for x in "qkv"])
    assert torch.equal(p.llm.layers[1].attn.qkv_proj.weight, qkv)
    gate_up = torch.cat([written[layer + "mlp.gate_proj.weight"], written[layer + "mlp.up_proj.weight"]])
    assert torch.equal(p.llm.layers[1].mlp.gate_up_proj.weight, gate_up)
    assert torch.equal(p.vision.blocks[0].attn.qkv.weight, written["vision_model.vision_tower.blocks.0.attn.qkv.weight"])
    assert torch.equal(p.vision.pos_embed, written["vision_model.vision_tower.pos_embed"])
    assert torch.equal(p.aligner.layers[1].weight, written["aligner.layers.2.weight"])
    assert torch.equal(p.gen_head.out.bias, written["gen_head.vision_head.bias"])
    raw_codebook = written["gen_vision_model.quantize.embedding.weight"]
    torch.testing.assert_close(p.vq.codebook, raw_codebook, rtol=0, atol=0)  # stored raw, normalised at lookup
    looked_up = m.model.vq.latents(torch.arange(576)[None])  # [1, d, 24, 24], raster order
    torch.testing.assert_close(looked_up[0].permute(1, 2, 0).reshape(576, -1), F.normalize(raw_codebook[:576], dim=-1),
                               rtol=0, atol=1e-7)


def test_all_formats_give_identical_greedy_answer(loaded_formats: dict[str, janus_rt.Janus]) -> None:
    answers = {fmt: m.chat("hi", max_new_tokens=5, temperature=0).token_ids for fmt, m in loaded_formats.items()}
    assert len(answers["safetensors"]) > 0
    assert all(a == answers["safetensors"] for a in answers.values()), answers


# ------------------------------------------------------------------------- real release configs (§1.4)
# One copy of the published config.json dicts, in janus_rt.bench.architectures (the benchmark builds them).


def parse(tmp_path: Path, config: dict) -> JanusConfig:
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    return load_config(tmp_path)


@pytest.mark.parametrize(
    "config, d, inner, layers, heads",
    [(CONFIG_1B, 2048, 5632, 24, 16), (CONFIG_7B, 4096, 11008, 30, 32)],
    ids=["Janus-1.3B/Pro-1B", "Janus-Pro-7B"],
)
def test_release_config_parses_to_reference_dims(tmp_path: Path, config: dict, d: int, inner: int, layers: int,
                                                 heads: int) -> None:
    cfg = parse(tmp_path, config)
    assert cfg.layout == "official"
    llm = cfg.llm
    assert (llm.vocab_size, llm.hidden_size, llm.intermediate_size, llm.num_layers) == (102400, d, inner, layers)
    assert (llm.num_heads, llm.num_kv_heads, llm.head_dim) == (heads, heads, 128)
    assert (llm.rms_norm_eps, llm.rope_theta, llm.max_position_embeddings) == (1e-6, 10000.0, 16384)
    assert llm.tie_word_embeddings is False
    # siglip_large_patch16_384 by name only, with select_layer -1 (all 24 blocks).
    assert cfg.vision == VisionConfig(image_size=384, patch_size=16, width=1024, layers=24, heads=16, mlp_dim=4096,
                                      layer_norm_eps=1e-6)
    assert (cfg.vision.grid, cfg.vision.num_patches) == (24, 576)
    # "VQ-16" by name only.
    assert cfg.vq == VQConfig(codebook_size=16384, codebook_embed_dim=8, z_channels=256, base_channels=128,
                              channel_multipliers=(1, 1, 2, 2, 4), num_res_blocks=2, image_token_grid=24)
    assert cfg.vq.image_size == 384
    assert cfg.image_tokens_per_image == 576
    assert (cfg.gen_embed_rows, cfg.gen_embed_dim) == (16384, 8)
    assert cfg.aligner == MlpConfig(1024, d, 2)
    assert cfg.gen_aligner == MlpConfig(8, d, 2)
    assert cfg.gen_head == GenHeadConfig(d, d, 16384)
    assert cfg.image_processor.image_size == 384  # no preprocessor_config.json: defaults


def test_pro_7b_language_defaults_match_transformers_llama_config(tmp_path: Path) -> None:
    """The defaults janus-rt fills in for Janus-Pro-7B are the ones transformers itself would use."""
    transformers = transformers_oracle()
    ref = transformers.LlamaConfig(**LANGUAGE_7B)
    llm = parse(tmp_path, CONFIG_7B).llm
    ref_theta = (getattr(ref, "rope_parameters", None) or {}).get("rope_theta", getattr(ref, "rope_theta", None))
    assert llm.hidden_size == ref.hidden_size == 4096
    assert llm.intermediate_size == ref.intermediate_size == 11008
    assert llm.num_heads == ref.num_attention_heads == 32
    assert llm.num_kv_heads == ref.num_key_value_heads == 32
    assert llm.head_dim == ref.head_dim == 128
    assert llm.rms_norm_eps == ref.rms_norm_eps == 1e-6
    assert llm.rope_theta == ref_theta == 10000.0
    assert llm.tie_word_embeddings is ref.tie_word_embeddings is False
    assert (llm.num_layers, llm.vocab_size, llm.max_position_embeddings) == (30, 102400, 16384)


def test_release_1b_official_key_shapes(tmp_path: Path) -> None:
    shapes = official_key_shapes(parse(tmp_path, CONFIG_1B))
    expected = {  # janus-reference.md §2.1 and §1.3
        "language_model.model.embed_tokens.weight": (102400, 2048),
        "language_model.model.layers.0.self_attn.q_proj.weight": (2048, 2048),
        "language_model.model.layers.23.mlp.gate_proj.weight": (5632, 2048),
        "language_model.model.layers.23.mlp.down_proj.weight": (2048, 5632),
        "language_model.lm_head.weight": (102400, 2048),
        "vision_model.vision_tower.patch_embed.proj.weight": (1024, 3, 16, 16),
        "vision_model.vision_tower.pos_embed": (1, 576, 1024),
        "vision_model.vision_tower.blocks.23.attn.qkv.weight": (3072, 1024),
        "vision_model.vision_tower.blocks.23.mlp.fc1.weight": (4096, 1024),
        "aligner.layers.0.weight": (2048, 1024),
        "gen_aligner.layers.0.weight": (2048, 8),
        "gen_embed.weight": (16384, 8),
        "gen_head.vision_head.weight": (16384, 2048),
        "gen_vision_model.quantize.embedding.weight": (16384, 8),
        "gen_vision_model.post_quant_conv.weight": (256, 8, 1, 1),
        "gen_vision_model.decoder.conv_in.weight": (512, 256, 3, 3),
        "gen_vision_model.decoder.conv_blocks.1.res.0.nin_shortcut.weight": (256, 512, 1, 1),
        "gen_vision_model.decoder.conv_blocks.3.res.0.nin_shortcut.weight": (128, 256, 1, 1),
        "gen_vision_model.decoder.conv_blocks.0.attn.2.q.weight": (512, 512, 1, 1),
        "gen_vision_model.decoder.conv_out.weight": (3, 128, 3, 3),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    # Structure: 24 LLM layers of 9 tensors, 3 res blocks per decoder level, shortcuts only where width changes,
    # attention only at the lowest resolution, upsampling at all but the last level; no unused parts.
    assert sum(k.startswith("language_model.model.layers.") for k in shapes) == 24 * 9
    res_blocks = {m.groups() for k in shapes if (m := re.match(r"gen_vision_model\.decoder\.conv_blocks\.(\d)\.res\.(\d)\.", k))}
    assert res_blocks == {(str(i), str(j)) for i in range(5) for j in range(3)}
    shortcuts = sorted(k for k in shapes if "nin_shortcut.weight" in k)
    assert shortcuts == ["gen_vision_model.decoder.conv_blocks.1.res.0.nin_shortcut.weight",
                         "gen_vision_model.decoder.conv_blocks.3.res.0.nin_shortcut.weight"]
    assert not any(".conv_blocks.1.attn." in k or ".conv_blocks.4.upsample." in k for k in shapes)
    assert sum(".upsample.conv.weight" in k for k in shapes) == 4
    assert not any(k.startswith(("gen_vision_model.encoder.", "gen_vision_model.quant_conv."))
                   or ".attn_pool." in k for k in shapes)


# Parameter counts, derived from the dimensions of janus-reference.md §1 (not from janus-rt's modules).
def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def affine_norm(c: int) -> int:  # GroupNorm / LayerNorm weight + bias
    return 2 * c


def res_block(c_in: int, c_out: int) -> int:
    return (affine_norm(c_in) + conv(c_in, c_out, 3) + affine_norm(c_out) + conv(c_out, c_out, 3)
            + (conv(c_in, c_out, 1) if c_in != c_out else 0))


def attn_block(c: int) -> int:
    return affine_norm(c) + 4 * conv(c, c, 1)  # q, k, v, proj_out


VQ_CH, VQ_MULT, VQ_RES, VQ_Z, VQ_CODES, VQ_DIM = 128, (1, 1, 2, 2, 4), 2, 256, 16384, 8
SIGLIP_W, SIGLIP_LAYERS, SIGLIP_MLP, SIGLIP_PATCHES = 1024, 24, 4096, 576


def built_param_count(d: int, inner: int, layers: int, vocab: int = 102400) -> int:
    """Everything janus-rt builds: LLM (+ untied lm_head), SigLIP without attn_pool, aligners, heads, VQ decoder."""
    llm = vocab * d + layers * (4 * d * d + 3 * d * inner + 2 * d) + d + vocab * d
    block = (2 * affine_norm(SIGLIP_W) + linear(SIGLIP_W, 3 * SIGLIP_W) + linear(SIGLIP_W, SIGLIP_W)
             + linear(SIGLIP_W, SIGLIP_MLP) + linear(SIGLIP_MLP, SIGLIP_W))
    siglip = conv(3, SIGLIP_W, 16) + SIGLIP_PATCHES * SIGLIP_W + SIGLIP_LAYERS * block + affine_norm(SIGLIP_W)
    aligners = linear(SIGLIP_W, d) + linear(d, d) + linear(VQ_DIM, d) + linear(d, d)
    heads = linear(d, d) + linear(d, VQ_CODES) + VQ_CODES * VQ_DIM  # gen_head + gen_embed
    top = VQ_CH * VQ_MULT[-1]
    decoder = VQ_CODES * VQ_DIM + conv(VQ_DIM, VQ_Z, 1) + conv(VQ_Z, top, 3)
    decoder += 2 * res_block(top, top) + attn_block(top)
    ch = top
    for i, mult in enumerate(reversed(VQ_MULT)):
        out = VQ_CH * mult
        decoder += sum(res_block(ch if j == 0 else out, out) for j in range(VQ_RES + 1))
        decoder += (VQ_RES + 1) * attn_block(out) if i == 0 else 0
        decoder += conv(out, out, 3) if i < len(VQ_MULT) - 1 else 0
        ch = out
    decoder += affine_norm(ch) + conv(ch, 3, 3)
    return llm + siglip + aligners + heads + decoder


def unused_param_count() -> int:
    """Parts present in the release weights that janus-rt does not build: VQ encoder + quant_conv, SigLIP attn_pool."""
    encoder = conv(3, VQ_CH, 3)
    ch = VQ_CH
    for i, mult in enumerate(VQ_MULT):
        out = VQ_CH * mult
        encoder += sum(res_block(ch if j == 0 else out, out) for j in range(VQ_RES))
        encoder += VQ_RES * attn_block(out) if i == len(VQ_MULT) - 1 else 0
        encoder += conv(out, out, 3) if i < len(VQ_MULT) - 1 else 0  # stride-2 downsample
        ch = out
    encoder += 2 * res_block(ch, ch) + attn_block(ch) + affine_norm(ch) + conv(ch, VQ_Z, 3)
    quant_conv = conv(VQ_Z, VQ_DIM, 1)
    w = SIGLIP_W  # timm AttentionPoolLatent: latent, q, kv, proj, norm, mlp
    attn_pool = w + linear(w, w) + linear(w, 2 * w) + linear(w, w) + affine_norm(w) + linear(w, SIGLIP_MLP) \
        + linear(SIGLIP_MLP, w)
    return encoder + quant_conv + attn_pool


def meta_param_count(cfg: JanusConfig) -> int:
    from janus_rt.model.janus import JanusModel

    with torch.device("meta"):
        model = JanusModel(cfg)
    return sum(p.numel() for p in model.parameters())


# Published bf16 weight-file sizes (janus-reference.md §1.4 table), in bytes; 2 bytes per parameter.
RELEASE_BYTES = {"Janus-1.3B": 4.18e9, "Janus-Pro-7B": 9.99e9 + 4.85e9}


@pytest.mark.parametrize(
    "name, config, d, inner, layers, nominal, tolerance",
    [("Janus-1.3B", CONFIG_1B, 2048, 5632, 24, 2.0e9, 0.05),
     ("Janus-Pro-7B", CONFIG_7B, 4096, 11008, 30, None, 0.02)],
)
def test_parameter_count_matches_release(tmp_path: Path, name: str, config: dict, d: int, inner: int, layers: int,
                                         nominal: float | None, tolerance: float) -> None:
    """janus-rt builds exactly the derived count; adding the unused parts gives the published weight size.

    What is compared:
    (1) the meta-device JanusModel (and the official key shapes) against `built_param_count`, exactly;
    (2) built + unused (VQ encoder, quant_conv, SigLIP attn_pool: in the files, not built; 41.9M parameters)
        against release bytes / 2 within 0.3%: the sizes are quoted to 3 significant digits, and the files
        also hold the 65536-entry `codebook_used` buffer and header overhead. (Measured: 0.04% and 0.005%.)
    (3) the built model alone, which lacks those 41.9M: Pro-7B against the ~7.42e9 of the release (bytes / 2)
        within 2% (0.56% off); 1.3B, where 41.9M is 2.0%, against its nominal ~2.0e9 within 5%.
    """
    cfg = parse(tmp_path, config)
    built = built_param_count(d, inner, layers)
    assert meta_param_count(cfg) == built
    assert sum(math.prod(s) for s in official_key_shapes(cfg).values()) == built
    release_params = RELEASE_BYTES[name] / 2
    assert abs(built + unused_param_count() - release_params) / release_params < 0.003
    assert built < release_params
    target = release_params if nominal is None else nominal
    assert abs(built - target) / target < tolerance


# ------------------------------------------------------------------------------------ Hugging Face layout
def hf_config_dir(src: Path, dst: Path, edit) -> Path:
    """Copy only config.json of an HF checkpoint into `dst`, edited by `edit(config)`."""
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    edit(config)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_hf_config_parses(hf_checkpoint) -> None:
    from hf_fixtures import HF_TEXT, HF_VISION, HF_VQ

    hf_dir, _, _ = hf_checkpoint
    cfg = load_config(hf_dir)
    assert cfg.layout == "hf"
    llm = cfg.llm
    assert (llm.hidden_size, llm.intermediate_size, llm.num_layers) == (
        HF_TEXT["hidden_size"], HF_TEXT["intermediate_size"], HF_TEXT["num_hidden_layers"])
    assert (llm.num_heads, llm.num_kv_heads, llm.head_dim) == (
        HF_TEXT["num_attention_heads"], HF_TEXT["num_key_value_heads"],
        HF_TEXT["hidden_size"] // HF_TEXT["num_attention_heads"])
    assert (llm.vocab_size, llm.rope_theta, llm.rms_norm_eps) == (HF_TEXT["vocab_size"], 10000.0, 1e-6)
    assert cfg.vision == VisionConfig(image_size=384, patch_size=16, width=HF_VISION["hidden_size"],
                                      layers=HF_VISION["num_hidden_layers"], heads=HF_VISION["num_attention_heads"],
                                      mlp_dim=4 * HF_VISION["hidden_size"], layer_norm_eps=1e-6)
    assert cfg.vq == VQConfig(codebook_size=16384, codebook_embed_dim=8, z_channels=HF_VQ["latent_channels"],
                              base_channels=HF_VQ["base_channels"], channel_multipliers=tuple(HF_VQ["channel_multiplier"]),
                              num_res_blocks=HF_VQ["num_res_blocks"], image_token_grid=24)
    assert cfg.aligner == MlpConfig(HF_VISION["hidden_size"], HF_VISION["projection_dim"], 2)
    assert cfg.gen_aligner == MlpConfig(8, HF_VQ["projection_dim"], 2)
    assert cfg.gen_head == GenHeadConfig(HF_VQ["image_token_embed_dim"], HF_VQ["projection_dim"], 16384)


def test_hf_rope_parameters_and_legacy_rope_theta(hf_checkpoint, tmp_path: Path) -> None:
    hf_dir, _, _ = hf_checkpoint
    assert "rope_parameters" in json.loads((hf_dir / "config.json").read_text())["text_config"]

    def new_style(c: dict) -> None:
        c["text_config"]["rope_parameters"] = {"rope_type": "default", "rope_theta": 500000.0}

    def legacy(c: dict) -> None:
        c["text_config"].pop("rope_parameters", None)
        c["text_config"]["rope_theta"] = 20000.0

    def scaled(c: dict) -> None:
        c["text_config"]["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}

    def legacy_scaled(c: dict) -> None:
        c["text_config"].pop("rope_parameters", None)
        c["text_config"]["rope_scaling"] = {"type": "dynamic", "factor": 2.0}

    assert load_config(hf_config_dir(hf_dir, tmp_path / "new", new_style)).llm.rope_theta == 500000.0
    assert load_config(hf_config_dir(hf_dir, tmp_path / "legacy", legacy)).llm.rope_theta == 20000.0
    with pytest.raises(CheckpointError, match=r"config\.json: text_config uses RoPE scaling 'linear'"):
        load_config(hf_config_dir(hf_dir, tmp_path / "scaled", scaled))
    with pytest.raises(CheckpointError, match=r"RoPE scaling 'dynamic'"):
        load_config(hf_config_dir(hf_dir, tmp_path / "legacy_scaled", legacy_scaled))


def copy_hf(hf_dir: Path, dst: Path, top_tie: bool, text_tie: bool, lm_head: torch.Tensor | None = None) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(hf_dir, dst)
    config = json.loads((dst / "config.json").read_text())
    config["tie_word_embeddings"] = top_tie
    config["text_config"]["tie_word_embeddings"] = text_tie
    (dst / "config.json").write_text(json.dumps(config))
    if lm_head is not None:
        state = load_file(dst / "model.safetensors")
        state["lm_head.weight"] = lm_head
        save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_hf_tied_lm_head_loads_from_embed_tokens(hf_checkpoint, tmp_path: Path) -> None:
    from safetensors import safe_open

    hf_dir, hf_model, _ = hf_checkpoint
    with safe_open(str(hf_dir / "model.safetensors"), framework="pt") as f:
        assert "lm_head.weight" not in set(f.keys())  # transformers saved a tied checkpoint
    embed = hf_model.model.language_model.embed_tokens.weight.detach()
    for top_tie, text_tie in ((True, False), (False, True)):
        path = copy_hf(hf_dir, tmp_path / f"tie-{top_tie}-{text_tie}", top_tie, text_tie)
        m = janus_rt.load(path, device="cpu", dtype="float32")
        assert m.config.llm.tie_word_embeddings is True
        assert m.model.lm_head.weight is m.model.llm.embed_tokens.weight
        assert torch.equal(m.model.lm_head.weight, embed)


def test_hf_untied_without_lm_head_fails_naming_lm_head(hf_checkpoint, tmp_path: Path) -> None:
    hf_dir, _, _ = hf_checkpoint
    path = copy_hf(hf_dir, tmp_path / "untied", top_tie=False, text_tie=False)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*does not provide 1 .*lm_head\.weight.*tie_word_embeddings"):
        janus_rt.load(path, device="cpu", dtype="float32")


def test_hf_untied_with_lm_head_uses_its_own_weight(hf_checkpoint, tmp_path: Path) -> None:
    hf_dir, hf_model, _ = hf_checkpoint
    own = torch.randn_like(hf_model.lm_head.weight.detach(), memory_format=torch.contiguous_format)
    path = copy_hf(hf_dir, tmp_path / "own", top_tie=False, text_tie=False, lm_head=own)
    m = janus_rt.load(path, device="cpu", dtype="float32")
    assert m.model.lm_head.weight is not m.model.llm.embed_tokens.weight
    assert torch.equal(m.model.lm_head.weight, own)
    assert torch.equal(m.model.llm.embed_tokens.weight, hf_model.model.language_model.embed_tokens.weight.detach())


# ------------------------------------------------------------------------------------------ chat format
@pytest.fixture(scope="module")
def legacy_dir(tiny_checkpoint) -> Path:
    return tiny_checkpoint(TinySpec(pro=False))


def test_legacy_tokenizer_selects_janus_1_3b_roles(legacy_dir: Path) -> None:
    m = janus_rt.load(legacy_dir, device="cpu", dtype="float32")
    assert m.tokenizer.token_id("<|User|>") is None
    assert m.chat_format == "legacy"
    assert m.image_prompt("a red fox") == "User: a red fox\n\nAssistant:<begin_of_image>"
    answer = m.chat("hi", max_new_tokens=2, temperature=0)
    assert answer.prompt == f"{SYSTEM_PROMPT}\n\nUser: hi\n\nAssistant:"
    assert m.chat_prompt("what is it?", num_images=1) == \
        f"{SYSTEM_PROMPT}\n\nUser: <image_placeholder>\nwhat is it?\n\nAssistant:"


def test_pro_tokenizer_selects_pro_roles(tiny_official: Path) -> None:
    m = janus_rt.load(tiny_official, device="cpu", dtype="float32")
    assert m.chat_format == "pro"
    prompt = m.image_prompt("a red fox")
    assert prompt == "<|User|>: a red fox\n\n<|Assistant|>:<begin_of_image>"
    ids = m.tokenizer.encode(prompt)
    assert m.tokenizer.token_id("<|User|>") in ids and m.tokenizer.token_id("<|Assistant|>") in ids  # single tokens
    assert ids[-1] == m.tokenizer.special.begin_of_image
    assert m.chat("hi", max_new_tokens=2, temperature=0).prompt == f"{SYSTEM_PROMPT}\n\n<|User|>: hi\n\n<|Assistant|>:"


def test_chat_format_override(tiny_official: Path, legacy_dir: Path) -> None:
    as_legacy = janus_rt.load(tiny_official, device="cpu", dtype="float32", chat_format="legacy")
    assert as_legacy.chat_format == "legacy"
    assert as_legacy.image_prompt("a red fox") == "User: a red fox\n\nAssistant:<begin_of_image>"
    assert as_legacy.chat("hi", max_new_tokens=1).prompt.endswith("User: hi\n\nAssistant:")
    as_pro = janus_rt.load(legacy_dir, device="cpu", dtype="float32", chat_format="pro")
    assert as_pro.chat_format == "pro"
    assert as_pro.image_prompt("a red fox") == "<|User|>: a red fox\n\n<|Assistant|>:<begin_of_image>"
