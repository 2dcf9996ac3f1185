"""`janus_rt.load(..., backend="onnxruntime" | "tensorrt")`: open an export directory as a step backend.

The path is an export directory (it has `manifest.json`) or a checkpoint directory; a checkpoint is
exported once into the export cache (`$JANUS_RT_EXPORT_CACHE`, default `~/.cache/janus-rt/exports`, one
folder per checkpoint hash and dtype) and the cached export is verified and reused afterwards.
`open_export` returns what the facade needs (the step backend, tokenizer, chat format and folder); the facade
(`janus_rt.load`) builds the `Janus` from it, and passes in how to load a checkpoint for exporting: this stage
never imports the facade.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.errors import CheckpointError, InputError
from janus_rt.export import manifest as mf
from janus_rt.export.graph_backend import GraphBackend
from janus_rt.export.onnx_export import export_onnx, normalize_dtype
from janus_rt.export.ort_engine import OrtEngine, resolve_providers
from janus_rt.export.source import LoadCheckpoint
from janus_rt.export.trt_builder import gpu_identity, import_tensorrt
from janus_rt.export.trt_runner import TrtEngine
from janus_rt.model.config_loading import load_config
from janus_rt.requests.prompts import ChatFormat

ENGINE_BACKENDS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class OpenedExport:
    """An export folder ready to serve: what `janus_rt.Janus` is built from."""

    step_backend: GraphBackend  # executes the exported graphs (ONNX Runtime or TensorRT)
    tokenizer: JanusTokenizer
    chat_format: ChatFormat  # "pro" or "legacy" ("auto" resolved from the tokenizer)
    path: Path  # the export folder (the checkpoint's cached export when a checkpoint was given)


def export_cache_dir() -> Path:
    return Path(os.environ.get("JANUS_RT_EXPORT_CACHE", "~/.cache/janus-rt/exports")).expanduser()


def ensure_export(path: Path, dtype: str | torch.dtype | None, progress: bool, load_checkpoint: LoadCheckpoint) -> Path:
    """`path` itself when it is an export directory; else the (cached) export of checkpoint `path`, loaded for
    exporting by `load_checkpoint`."""
    if (path / mf.MANIFEST).is_file():
        return path
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: neither an export directory ({mf.MANIFEST}) nor a checkpoint (config.json); "
                              f"pass the folder written by `janus-rt export --model CHECKPOINT --out DIR`")
    name = normalize_dtype(dtype or "float32")
    target = export_cache_dir() / f"{mf.checkpoint_hash(path, progress)[:16]}-{name}"
    return export_onnx(load_checkpoint(path), target, name, progress=progress).path


def open_export(path: str | Path, backend: str, device: str | torch.device | None, dtype: str | torch.dtype | None,
                providers: Sequence[str] | None, chat_format: str, progress: bool,
                load_checkpoint: LoadCheckpoint) -> OpenedExport:
    """The step backend that executes an export folder's graphs with ONNX Runtime or TensorRT, and the rest the
    facade needs; a checkpoint folder is exported first (`ensure_export`)."""
    if backend not in ENGINE_BACKENDS:
        raise InputError(f"backend {backend!r} is not an engine backend; choose one of {', '.join(ENGINE_BACKENDS)}")
    if backend == "tensorrt":  # fail before any export work when TensorRT cannot run here
        import_tensorrt()
        gpu_identity()
    export_dir = ensure_export(Path(path).expanduser(), dtype, progress, load_checkpoint)
    manifest = mf.read_manifest(export_dir)
    if dtype is not None and normalize_dtype(dtype) != manifest["dtype"]:
        raise InputError(f"{export_dir / mf.MANIFEST}: this export is {manifest['dtype']}, not {normalize_dtype(dtype)}; "
                         f"pass dtype={manifest['dtype']!r} or export again with --dtype {normalize_dtype(dtype)}")
    mf.verify_files(export_dir, manifest)
    cfg = load_config(export_dir)
    tokenizer = JanusTokenizer(export_dir)
    if backend == "onnxruntime":
        engine = OrtEngine(export_dir, manifest, resolve_providers(providers, device))
    else:
        if providers is not None:
            raise InputError("providers= is an ONNX Runtime option; backend='tensorrt' takes none")
        engine = TrtEngine(export_dir, manifest, device, progress=progress)
    fmt: ChatFormat = ("pro" if tokenizer.has_pro_roles else "legacy") if chat_format == "auto" else chat_format
    return OpenedExport(GraphBackend(backend, engine, cfg), tokenizer, fmt, export_dir)
