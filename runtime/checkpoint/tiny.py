"""Tiny random Janus checkpoints in the official layout, for `janus-rt demo` and the tests.

The files are what a real release holds (config.json in the `multi_modality` format with explicit
dimensions, weights as safetensors or `.bin`, optionally sharded with an index, a byte-level BPE
tokenizer.json with the Janus special tokens, preprocessor_config.json), only much smaller. The weights are
random: outputs are noise, but every code path of a real checkpoint runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch

from janus_rt.files import staged_folder
from janus_rt.checkpoint.official_keys import official_key_shapes
from janus_rt.model.config_layouts import OFFICIAL_IMAGE_TOKEN_GRID, parse_official
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
    image_token_grid: int = OFFICIAL_IMAGE_TOKEN_GRID  # tokens per side: 24 (576) as released; less = a shorter decode
    max_positions: int = 2048
    pro: bool = True  # Janus-Pro chat roles in the tokenizer
    bos_post_processor: bool = True  # tokenizer.json's post-processor adds BOS, as real releases do
    extra: dict = field(default_factory=dict)


def build_tokenizer(spec: TinySpec, corpus: Sequence[str] = CORPUS, vocab_size: int = 400):
    """A small byte-level BPE of `vocab_size` tokens trained on `corpus` (a fixed one by default), then the Janus
    special tokens appended."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus), trainer)
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
    # the grid is written only when it differs from every release's 24 (the default config.json stays as it was)
    small_grid = {} if spec.image_token_grid == OFFICIAL_IMAGE_TOKEN_GRID else {"image_token_grid": spec.image_token_grid}
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
                **small_grid,
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
    corpus: Sequence[str] = CORPUS,
    vocab_size: int = 400,
) -> Path:
    """Create a tiny random official-layout checkpoint in `out_dir` (written to a temp dir, then moved)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty")
    with staged_folder(out_dir) as staging:
        tok = build_tokenizer(spec, corpus, vocab_size)
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
    return out_dir
