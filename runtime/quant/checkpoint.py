"""Quantized checkpoint folders: written by `janus-rt quantize`, loaded by `janus_rt.load(DIR)` as they are.

A folder holds:
    config.json         the source checkpoint's config, plus a `quantization` block: format, group size, zero
                        points, the quantized modules, the activation dtype, the source folder, janus-rt's version
    model.safetensors   the model's state dict under janus-rt's own names: `qweight` / `scales` / `zeros` /
                        `bias` of each quantized linear, every other parameter in the activation dtype
    tokenizer and processor files, copied from the source (every file that is not a weight file)

It is written into a temporary sibling folder and renamed into place (`janus_rt.files.staged_folder`), so a
failed run leaves nothing half-written; an existing folder is replaced only when it is empty or is a quantized
checkpoint of the same source (never another model's folder: `check_out_dir`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from janus_rt.version import __version__
from janus_rt.checkpoint.files import find_weight_files, iter_tensors
from janus_rt.errors import CheckpointError, InputError
from janus_rt.files import check_out_folder, staged_folder
from janus_rt.quant.formats import QuantSpec
from janus_rt.quant.model import quantized_module_names

QUANT_KEY = "quantization"
WEIGHTS_FILE = "model.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def read_quant_block(model_dir: str | Path) -> dict | None:
    """The `quantization` block of `model_dir/config.json`, checked; None for a float checkpoint."""
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # load_config reports an unreadable config.json in its own words
    block = raw.get(QUANT_KEY) if isinstance(raw, dict) else None
    if block is None:
        return None
    if not isinstance(block, dict) or "format" not in block:
        raise CheckpointError(f"{path}: '{QUANT_KEY}' must be an object with a 'format'; got {block!r}")
    try:
        QuantSpec.from_json(block)
    except InputError as e:
        raise CheckpointError(f"{path}: '{QUANT_KEY}' is not valid: {e}") from None
    return block


def spec_of(block: dict) -> QuantSpec:
    return QuantSpec.from_json(block)


def _is_weight_file(path: Path) -> bool:
    return path.suffix in WEIGHT_SUFFIXES or path.name.endswith(".index.json")


def check_out_dir(out: Path, source: Path) -> None:
    """Refuse an `--out` that is the source or inside it, or that `janus_rt.files.check_out_folder` refuses (a
    file, an unwritable place, a non-empty folder that is not a quantized checkpoint of `source`), before any work."""
    out, source = out.expanduser().resolve(), source.expanduser().resolve()
    if out == source or source in out.parents:
        raise InputError(f"--out {out} is the source checkpoint folder (or inside it); choose a new folder", "--out")

    def same_source(folder: Path) -> bool:
        block = read_quant_block(folder) if (folder / "config.json").exists() else None
        return block is not None and Path(block.get("source", "")).resolve() == source

    check_out_folder(out, replaces=f"a quantized checkpoint of {source}", same_kind=same_source)


def write_quantized(model: nn.Module, spec: QuantSpec, source: Path, out: Path) -> Path:
    """Write `model` (already quantized) as a checkpoint folder at `out`, atomically; returns `out`."""
    from safetensors.torch import save_file

    source, out = Path(source).expanduser().resolve(), Path(out).expanduser().resolve()
    check_out_dir(out, source)
    config = json.loads((source / "config.json").read_text())
    dtype = model.gen_embed.weight.dtype
    config[QUANT_KEY] = {**spec.to_json(), "modules": quantized_module_names(model.cfg),
                         "dtype": str(dtype).removeprefix("torch."), "source": str(source),
                         "janus_rt_version": __version__}
    with staged_folder(out, replace=True) as staging:  # replaces only what check_out_dir accepted
        state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt", "janus_rt_quantization": spec.format})
        for item in source.iterdir():
            if item.is_file() and item.name != "config.json" and not _is_weight_file(item):
                shutil.copy2(item, staging / item.name)
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def load_quantized_weights(model: nn.Module, model_dir: Path, progress: bool = False) -> None:
    """Fill `model` (QuantLinears installed, everything allocated) from a quantized folder, strictly: every
    stored key is one of the model's, with its shape (and for quantized tensors its dtype); none is missing."""
    from tqdm.auto import tqdm

    expected = model.state_dict()
    filled: set[str] = set()
    weights = find_weight_files(model_dir)
    total = sum(f.stat().st_size for f in weights.files)
    with tqdm(total=total, desc="loading quantized weights", unit="B", unit_scale=True, disable=not progress) as bar, \
            torch.no_grad():
        for path, key, tensor in iter_tensors(weights):
            bar.update(tensor.numel() * tensor.element_size())
            dest = expected.get(key)
            if dest is None:
                raise CheckpointError(f"{path}: unexpected key '{key}' (shape {list(tensor.shape)}) for a quantized "
                                      "checkpoint with this config.json; the folder was not written by this "
                                      "janus-rt, or config.json was edited")
            if tuple(tensor.shape) != tuple(dest.shape):
                raise CheckpointError(f"{path}: key '{key}' has shape {list(tensor.shape)}, expected "
                                      f"{list(dest.shape)}; config.json and the weights disagree")
            quantized_tensor = not dest.dtype.is_floating_point or dest.dtype == torch.float8_e4m3fn or \
                key.endswith(".scales")
            if quantized_tensor and tensor.dtype != dest.dtype:
                raise CheckpointError(f"{path}: key '{key}' is {tensor.dtype}, expected {dest.dtype} for its "
                                      "quantization format")
            dest.copy_(tensor)
            filled.add(key)
    missing = sorted(set(expected) - filled)
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise CheckpointError(f"{model_dir}: the quantized checkpoint does not provide {len(missing)} tensor(s): "
                              f"{shown}; the folder is incomplete")
