"""Reading a checkpoint's configuration: `load_config(model_dir)`, the entry point.

It reads `config.json` (`read_json`), picks the layout's parser by `model_type` (`config_layouts.py`), checks
that the components fit together (`check_consistency`), and applies `preprocessor_config.json` when present.
Every failure is a `CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from janus_rt.errors import CheckpointError
from janus_rt.model.config import ImageProcessorConfig, JanusConfig
from janus_rt.model.config_layouts import config_error, parse_hf, parse_official


def _parse_image_processor(model_dir: Path, default: ImageProcessorConfig) -> ImageProcessorConfig:
    path = model_dir / "preprocessor_config.json"
    if not path.exists():
        return default
    raw = read_json(path)
    size = raw.get("image_size", raw.get("size", default.image_size))
    if isinstance(size, dict):  # HF style {"height": h, "width": w}
        size = size.get("height", default.image_size)

    def triple(x: Any, fallback: tuple[float, float, float]) -> tuple[float, float, float]:
        if x is None:
            return fallback
        vals = [float(x)] * 3 if isinstance(x, (int, float)) else [float(e) for e in x]
        if len(vals) != 3:
            raise config_error(path, f"expected 3 channel values, got {x!r}")
        return (vals[0], vals[1], vals[2])

    return ImageProcessorConfig(
        image_size=int(size),
        min_size=int(raw.get("min_size", default.min_size)),
        image_mean=triple(raw.get("image_mean"), default.image_mean),
        image_std=triple(raw.get("image_std"), default.image_std),
        rescale_factor=float(raw.get("rescale_factor", default.rescale_factor)),
        do_normalize=bool(raw.get("do_normalize", default.do_normalize)),
    )


def check_consistency(cfg: JanusConfig, path: Path) -> None:
    """Components must fit together: a mismatch would otherwise surface as a matmul error mid-inference."""
    d = cfg.llm.hidden_size
    pairs = [
        ("aligner input_dim", cfg.aligner.input_dim, "vision width", cfg.vision.width),
        ("aligner output (n_embed)", cfg.aligner.output_dim, "language hidden_size", d),
        ("gen_aligner input_dim", cfg.gen_aligner.input_dim, "gen_embed width (n_embed)", cfg.gen_embed_dim),
        ("gen_aligner output (n_embed)", cfg.gen_aligner.output_dim, "language hidden_size", d),
        ("gen_head n_embed", cfg.gen_head.input_dim, "language hidden_size", d),
        ("gen_head image_token_size", cfg.gen_head.vocab_size, "VQ codebook_size", cfg.vq.codebook_size),
        ("gen_embed rows (image_token_size)", cfg.gen_embed_rows, "VQ codebook_size", cfg.vq.codebook_size),
    ]
    for name_a, a, name_b, b in pairs:
        if a != b:
            raise config_error(path, f"{name_a} is {a} but {name_b} is {b}; they must be equal")
    if cfg.vision.width % cfg.vision.heads:
        raise config_error(path, f"vision width {cfg.vision.width} is not a multiple of its {cfg.vision.heads} heads")
    if cfg.vision.image_size % cfg.vision.patch_size:
        raise config_error(path, f"vision image_size {cfg.vision.image_size} is not a multiple "
                           f"of patch_size {cfg.vision.patch_size}")
    channels = [cfg.vq.base_channels * m for m in cfg.vq.channel_multipliers]
    if any(c % 32 for c in channels):
        raise config_error(path, f"VQ channel widths {channels} must be multiples of 32 (GroupNorm with 32 groups)")


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    return data


def load_config(model_dir: str | Path) -> JanusConfig:
    """Read `config.json` (and `preprocessor_config.json` when present) from a checkpoint directory."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        what = "not a directory" if model_dir.exists() else "no such directory"
        raise CheckpointError(f"{model_dir}: {what}; pass the checkpoint folder holding config.json and the weights")
    path = model_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"{path}: not found; a Janus checkpoint folder holds config.json next to the weights and tokenizer.json"
        )
    cfg = read_json(path)
    model_type = cfg.get("model_type")
    try:
        if model_type == "multi_modality":
            parsed = parse_official(cfg, path)
        elif model_type == "janus":
            parsed = parse_hf(cfg, path)
        else:
            raise config_error(
                path,
                f"model_type is {model_type!r}; janus-rt reads official Janus checkpoints ('multi_modality') "
                "and Hugging Face JanusForConditionalGeneration checkpoints ('janus')",
            )
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as e:
        raise config_error(path, f"malformed config ({type(e).__name__}: {e}); "
                           "compare it with the release's config.json") from None
    check_consistency(parsed, path)
    image_processor = _parse_image_processor(model_dir, parsed.image_processor)
    if image_processor.image_size != parsed.vision.image_size:
        raise CheckpointError(
            f"{model_dir / 'preprocessor_config.json'}: image_size {image_processor.image_size} differs from "
            f"the vision tower's {parsed.vision.image_size}"
        )
    return JanusConfig(**{**parsed.__dict__, "image_processor": image_processor})
