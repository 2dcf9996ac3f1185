"""Tiny random Janus checkpoints in the official layout, for `janus-rt demo` and the tests.

The files are what a real release holds (config.json in the `multi_modality` format with explicit
dimensions, weights as safetensors or `.bin`, optionally sharded with an index, a byte-level BPE
tokenizer.json with the Janus special tokens, preprocessor_config.json), only much smaller. The weights are
random: outputs are noise, but every code path of a real checkpoint runs.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from janus_rt.model.config import JanusConfig, parse_official
from janus_rt.checkpoint.tokenizer import BEGIN_OF_IMAGE, BOS, END_OF_IMAGE, EOS, IMAGE_PLACEHOLDER, PAD, PRO_ASSISTANT, PRO_USER

WeightsFormat = Literal["safetensors", "bin", "sharded-safetensors", "sharded-bin"]

CORPUS = [
    "A photo of a red fox sitting in the snow under a pale winter sky.",
    "Describe this image in detail. What is the man holding in his hand?",
    "The quick brown fox jumps over the lazy dog; a cat watches from the window.",
    "masterpiece, film grained, best quality, a portrait of a young girl with flowers",
    "There are three apples on the wooden table and a glass of water beside them.",
    "User: Assistant: You are a helpful language and vision assistant.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation: , . ! ? ; : ' \" ( ) -",
]
EXTRA_SPECIALS = ["<patch_placeholder>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>"]


@dataclass(frozen=True)
class TinySpec:
    """Dimensions of a tiny checkpoint (defaults run the whole demo on a CPU in seconds)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 4
    intermediate: int = 128
    vision_width: int = 32
    vision_layers: int = 2
    vision_heads: int = 2
    image_size: int = 384  # real preprocessing: 384 / 16 = 24 x 24 = 576 image tokens
    patch_size: int = 16
    codes: int = 16384
    code_dim: int = 8
    vq_channels: int = 32  # GroupNorm(32) needs multiples of 32
    vq_mults: tuple[int, ...] = (1, 2)  # 2 levels: 24 -> 48 px images; (1, 1, 2, 2, 4) gives 384 px
    vq_res_blocks: int = 1
    z_channels: int = 32
    max_positions: int = 2048
    pro: bool = True  # Janus-Pro chat roles in the tokenizer
    bos_post_processor: bool = True  # tokenizer.json's post-processor adds BOS, as real releases do
    extra: dict = field(default_factory=dict)


def build_tokenizer(spec: TinySpec):
    """A small byte-level BPE trained on a fixed corpus, then the Janus special tokens appended."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    specials = [BOS, EOS, PAD, IMAGE_PLACEHOLDER, BEGIN_OF_IMAGE, END_OF_IMAGE] + EXTRA_SPECIALS
    if spec.pro:
        specials += [PRO_USER, PRO_ASSISTANT]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if spec.bos_post_processor:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
        )
    return tok


def official_config(spec: TinySpec, vocab_size: int) -> dict:
    return {
        "model_type": "multi_modality",
        "torch_dtype": "float32",
        "language_config": {
            "model_type": "llama",
            "hidden_size": spec.hidden,
            "intermediate_size": spec.intermediate,
            "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads,
            "vocab_size": vocab_size,
            "max_position_embeddings": spec.max_positions,
            "torch_dtype": "float32",
        },
        "vision_config": {
            "cls": "CLIPVisionTower",
            "model_type": "vision",
            "params": {
                "model_name": "siglip_tiny_test",
                "image_size": spec.image_size,
                "select_feature": "same",
                "select_layer": -1,
                "patch_size": spec.patch_size,
                "width": spec.vision_width,
                "layers": spec.vision_layers,
                "heads": spec.vision_heads,
                "mlp_ratio": 4,
            },
        },
        "aligner_config": {
            "cls": "MlpProjector",
            "model_type": "aligner",
            "params": {"projector_type": "mlp_gelu", "depth": 2, "input_dim": spec.vision_width, "n_embed": spec.hidden},
        },
        "gen_vision_config": {
            "cls": "VQ-tiny-test",
            "model_type": "gen_vision",
            "params": {
                "image_token_size": spec.codes,
                "n_embed": spec.code_dim,
                "codebook_size": spec.codes,
                "codebook_embed_dim": spec.code_dim,
                "z_channels": spec.z_channels,
                "ch": spec.vq_channels,
                "decoder_ch_mult": list(spec.vq_mults),
                "num_res_blocks": spec.vq_res_blocks,
            },
        },
        "gen_aligner_config": {
            "cls": "MlpProjector",
            "model_type": "gen_aligner",
            "params": {"projector_type": "mlp_gelu", "depth": 2, "input_dim": spec.code_dim, "n_embed": spec.hidden},
        },
        "gen_head_config": {
            "cls": "vision_head",
            "model_type": "gen_head",
            "params": {"n_embed": spec.hidden, "image_token_embed": spec.hidden, "image_token_size": spec.codes},
        },
        **spec.extra,
    }


def official_key_shapes(cfg: JanusConfig) -> dict[str, tuple[int, ...]]:
    """Every official-layout key janus-rt reads, with its shape (unused encoder / attn_pool keys excluded)."""
    shapes: dict[str, tuple[int, ...]] = {}
    c = cfg.llm
    q, kv = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim
    lm = "language_model.model."
    shapes[lm + "embed_tokens.weight"] = (c.vocab_size, c.hidden_size)
    for i in range(c.num_layers):
        p = f"{lm}layers.{i}."
        shapes[p + "self_attn.q_proj.weight"] = (q, c.hidden_size)
        shapes[p + "self_attn.k_proj.weight"] = (kv, c.hidden_size)
        shapes[p + "self_attn.v_proj.weight"] = (kv, c.hidden_size)
        shapes[p + "self_attn.o_proj.weight"] = (c.hidden_size, q)
        shapes[p + "mlp.gate_proj.weight"] = (c.intermediate_size, c.hidden_size)
        shapes[p + "mlp.up_proj.weight"] = (c.intermediate_size, c.hidden_size)
        shapes[p + "mlp.down_proj.weight"] = (c.hidden_size, c.intermediate_size)
        shapes[p + "input_layernorm.weight"] = (c.hidden_size,)
        shapes[p + "post_attention_layernorm.weight"] = (c.hidden_size,)
    shapes[lm + "norm.weight"] = (c.hidden_size,)
    shapes["language_model.lm_head.weight"] = (c.vocab_size, c.hidden_size)

    v, vt = cfg.vision, "vision_model.vision_tower."
    shapes[vt + "patch_embed.proj.weight"] = (v.width, 3, v.patch_size, v.patch_size)
    shapes[vt + "patch_embed.proj.bias"] = (v.width,)
    shapes[vt + "pos_embed"] = (1, v.num_patches, v.width)
    for i in range(v.layers):
        p = f"{vt}blocks.{i}."
        for norm in ("norm1", "norm2"):
            shapes[p + norm + ".weight"] = shapes[p + norm + ".bias"] = (v.width,)
        shapes[p + "attn.qkv.weight"], shapes[p + "attn.qkv.bias"] = (3 * v.width, v.width), (3 * v.width,)
        shapes[p + "attn.proj.weight"], shapes[p + "attn.proj.bias"] = (v.width, v.width), (v.width,)
        shapes[p + "mlp.fc1.weight"], shapes[p + "mlp.fc1.bias"] = (v.mlp_dim, v.width), (v.mlp_dim,)
        shapes[p + "mlp.fc2.weight"], shapes[p + "mlp.fc2.bias"] = (v.width, v.mlp_dim), (v.width,)
    shapes[vt + "norm.weight"] = shapes[vt + "norm.bias"] = (v.width,)

    for name, mlp in (("aligner", cfg.aligner), ("gen_aligner", cfg.gen_aligner)):
        dims = [mlp.input_dim] + [mlp.output_dim] * mlp.depth
        for j in range(mlp.depth):
            shapes[f"{name}.layers.{2 * j}.weight"] = (dims[j + 1], dims[j])
            shapes[f"{name}.layers.{2 * j}.bias"] = (dims[j + 1],)
    shapes["gen_embed.weight"] = (cfg.gen_embed_rows, cfg.gen_embed_dim)
    g = cfg.gen_head
    shapes["gen_head.output_mlp_projector.weight"] = (g.hidden_dim, g.input_dim)
    shapes["gen_head.output_mlp_projector.bias"] = (g.hidden_dim,)
    shapes["gen_head.vision_head.weight"] = (g.vocab_size, g.hidden_dim)
    shapes["gen_head.vision_head.bias"] = (g.vocab_size,)

    vq = cfg.vq
    shapes["gen_vision_model.quantize.embedding.weight"] = (vq.codebook_size, vq.codebook_embed_dim)
    shapes["gen_vision_model.post_quant_conv.weight"] = (vq.z_channels, vq.codebook_embed_dim, 1, 1)
    shapes["gen_vision_model.post_quant_conv.bias"] = (vq.z_channels,)
    d = "gen_vision_model.decoder."

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        shapes[name + ".weight"], shapes[name + ".bias"] = (cout, cin, k, k), (cout,)

    def norm(name: str, ch: int) -> None:
        shapes[name + ".weight"] = shapes[name + ".bias"] = (ch,)

    def res(name: str, cin: int, cout: int) -> None:
        norm(name + ".norm1", cin)
        conv(name + ".conv1", cin, cout, 3)
        norm(name + ".norm2", cout)
        conv(name + ".conv2", cout, cout, 3)
        if cin != cout:
            conv(name + ".nin_shortcut", cin, cout, 1)

    def attn(name: str, ch: int) -> None:
        norm(name + ".norm", ch)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", ch, ch, 1)

    top = vq.base_channels * vq.channel_multipliers[-1]
    conv(d + "conv_in", vq.z_channels, top, 3)
    res(d + "mid.0", top, top)
    attn(d + "mid.1", top)
    res(d + "mid.2", top, top)
    ch = top
    for i, level in enumerate(reversed(range(len(vq.channel_multipliers)))):
        out = vq.base_channels * vq.channel_multipliers[level]
        for j in range(vq.num_res_blocks + 1):
            res(f"{d}conv_blocks.{i}.res.{j}", ch if j == 0 else out, out)
            if i == 0:
                attn(f"{d}conv_blocks.{i}.attn.{j}", out)
        if level != 0:
            conv(f"{d}conv_blocks.{i}.upsample.conv", out, out, 3)
        ch = out
    norm(d + "norm_out", ch)
    conv(d + "conv_out", ch, 3, 3)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random fp32 weights: matrices ~ N(0, 0.02*sqrt(64/fan_in)), norms ~ 1 + N(0, 0.1), biases ~ N(0, 0.02)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 1 and ("norm" in key or "layernorm" in key):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            t = 0.02 * torch.randn(shape, generator=g)
        else:
            fan_in = 1
            for s in shape[1:]:
                fan_in *= s
            std = 1.0 if "embed" in key and "patch" not in key and "pos" not in key else (1.0 / fan_in) ** 0.5
            t = std * torch.randn(shape, generator=g)
        state[key] = t.contiguous()
    return state


def save_weights(state: dict[str, torch.Tensor], out_dir: Path, fmt: WeightsFormat, shards: int = 2) -> None:
    """Write `state` as one file or as `shards` shards plus the index, with the official file names."""
    from safetensors.torch import save_file

    safetensors = fmt.endswith("safetensors")

    def write(part: dict[str, torch.Tensor], name: str) -> None:
        if safetensors:
            save_file(part, str(out_dir / name), metadata={"format": "pt"})
        else:
            torch.save(part, out_dir / name)

    if not fmt.startswith("sharded"):
        write(state, "model.safetensors" if safetensors else "pytorch_model.bin")
        return
    keys = list(state)
    per = -(-len(keys) // shards)
    weight_map, total = {}, 0
    for s in range(shards):
        part_keys = keys[s * per:(s + 1) * per]
        stem, ext = ("model", "safetensors") if safetensors else ("pytorch_model", "bin")
        name = f"{stem}-{s + 1:05d}-of-{shards:05d}.{ext}"
        write({k: state[k] for k in part_keys}, name)
        weight_map.update({k: name for k in part_keys})
        total += sum(state[k].numel() * state[k].element_size() for k in part_keys)
    index = "model.safetensors.index.json" if safetensors else "pytorch_model.bin.index.json"
    (out_dir / index).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def write_tiny_checkpoint(
    out_dir: str | Path,
    spec: TinySpec = TinySpec(),
    weights_format: WeightsFormat = "safetensors",
    seed: int = 0,
) -> Path:
    """Create a tiny random official-layout checkpoint in `out_dir` (written to a temp dir, then moved)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=out_dir.parent))
    try:
        tok = build_tokenizer(spec)
        tok.save(str(staging / "tokenizer.json"))
        vocab = -(-tok.get_vocab_size(with_added_tokens=True) // 64) * 64  # rows rounded up, like the real 102400
        config = official_config(spec, vocab)
        (staging / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        (staging / "tokenizer_config.json").write_text(json.dumps({"bos_token": BOS, "eos_token": EOS}, ensure_ascii=False))
        (staging / "preprocessor_config.json").write_text(json.dumps({
            "image_size": spec.image_size, "min_size": 14, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
            "rescale_factor": 1 / 255, "do_normalize": True, "image_processor_type": "VLMImageProcessor"}))
        cfg = parse_official(config, staging / "config.json")
        save_weights(random_state_dict(official_key_shapes(cfg), seed), staging, weights_format)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
