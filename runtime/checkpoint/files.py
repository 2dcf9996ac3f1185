"""Weight files of a checkpoint directory: discovery and tensor-by-tensor reading.

Supported: `model.safetensors`, sharded safetensors + `model.safetensors.index.json`, `pytorch_model.bin`,
sharded `.bin` + `pytorch_model.bin.index.json`. `.bin` files are read with `torch.load(weights_only=True)`,
memory-mapped where the file format allows, so host memory stays near one copy of the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from janus_rt.model.config_loading import read_json
from janus_rt.errors import CheckpointError

SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class WeightFiles:
    """The weight files of one checkpoint and, for sharded checkpoints, the index's key -> file map."""

    files: tuple[Path, ...]
    index: Path | None  # the index file, when sharded
    weight_map: dict[str, str] | None  # key -> shard file name, from the index


def find_weight_files(model_dir: str | Path) -> WeightFiles:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: not a directory; pass the folder holding config.json and the weights")
    for index_name in INDEX_FILES:
        index = model_dir / index_name
        if index.exists():
            raw = read_json(index)
            weight_map = raw.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index}: has no 'weight_map' object")
            shards = tuple(dict.fromkeys(weight_map.values()))
            missing = [s for s in shards if not (model_dir / s).exists()]
            if missing:
                raise CheckpointError(
                    f"{index}: lists shard(s) that are not in {model_dir}: {', '.join(missing)}; "
                    "the download is incomplete, fetch the missing files"
                )
            return WeightFiles(tuple(model_dir / s for s in shards), index, dict(weight_map))
    for name in SINGLE_FILES:
        if (model_dir / name).exists():
            return WeightFiles((model_dir / name,), None, None)
    found = sorted(p.name for p in model_dir.iterdir())
    raise CheckpointError(
        f"{model_dir}: no weights found; expected one of {', '.join(SINGLE_FILES + INDEX_FILES)}, "
        f"found: {', '.join(found) or 'nothing'}"
    )


def _iter_safetensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError / OSError types
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); re-download it") from None
    with handle as f:
        for key in f.keys():
            try:
                tensor = f.get_tensor(key)
            except Exception as e:
                raise CheckpointError(f"{path}: cannot read tensor '{key}' ({e}); the file is truncated or corrupt") from None
            yield key, tensor


def _load_bin(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):  # legacy (non-zip) pickles cannot be memory-mapped; read them whole
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_error_reason(e: Exception) -> str:
    """The informative part of a `torch.load` failure (torch wraps it in long generic advice)."""
    text = str(e)
    if "WeightsUnpickler error:" in text:  # weights_only refusal: keep the unpickler's reason, drop the advice
        reason = [line.strip() for line in text.split("WeightsUnpickler error:", 1)[1].splitlines() if line.strip()]
        text = "WeightsUnpickler error: " + (reason[0] if reason else "unreadable pickle")
    first = text.strip().splitlines()[0] if text.strip() else "no details"
    if len(first) > 200 and ". " in first:  # e.g. "...failed finding central directory. This is an internal..."
        first = first.split(". ", 1)[0]
    return f"{type(e).__name__}: {first}"


def _iter_bin(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    try:
        state = _load_bin(path)
    except Exception as e:
        raise CheckpointError(
            f"{path}: not a readable PyTorch weights file ({_load_error_reason(e)}); it is truncated, corrupt, "
            "or holds more than plain tensors (only weights_only=True pickles are accepted): re-download it"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    for key in list(state):
        tensor = state.pop(key)  # drop our reference as we go
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: entry '{key}' is a {type(tensor).__name__}, not a tensor")
        yield key, tensor


def iter_tensors(weights: WeightFiles) -> Iterator[tuple[Path, str, torch.Tensor]]:
    """Yield `(file, key, tensor)` for every tensor, one file at a time; checks the index against the shards."""
    for path in weights.files:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path}: the file is empty (0 bytes); the download failed, fetch it again")
        reader = _iter_safetensors if path.name.endswith(".safetensors") else _iter_bin
        seen = set()
        for key, tensor in reader(path):
            if weights.weight_map is not None and weights.weight_map.get(key) != path.name:
                raise CheckpointError(
                    f"{path}: holds '{key}', which the index {weights.index} puts in "
                    f"{weights.weight_map.get(key, 'no file')}; the shards and index disagree"
                )
            seen.add(key)
            yield path, key, tensor
        if weights.weight_map is not None:
            expected = {k for k, f in weights.weight_map.items() if f == path.name}
            absent = sorted(expected - seen)
            if absent:
                raise CheckpointError(
                    f"{path}: the index {weights.index} lists {len(absent)} key(s) this shard lacks, e.g. '{absent[0]}'"
                )
