"""`janus_rt.load(..., backend="onnxruntime" | "tensorrt")`: open an export directory behind the `Janus` API.

The path is an export directory (it has `manifest.json`) or a checkpoint directory; a checkpoint is
exported once into the export cache (`$JANUS_RT_EXPORT_CACHE`, default `~/.cache/janus-rt/exports`, one
folder per checkpoint hash and dtype) and the cached export is verified and reused afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from janus_rt.model.config import load_config
from janus_rt.errors import CheckpointError, InputError
from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.export import manifest as mf

ENGINE_BACKENDS = ("onnxruntime", "tensorrt")


def export_cache_dir() -> Path:
    return Path(os.environ.get("JANUS_RT_EXPORT_CACHE", "~/.cache/janus-rt/exports")).expanduser()


def ensure_export(path: Path, dtype: str | torch.dtype | None, progress: bool) -> Path:
    """`path` itself when it is an export directory; else the (cached) export of checkpoint `path`."""
    if (path / mf.MANIFEST).is_file():
        return path
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: neither an export directory ({mf.MANIFEST}) nor a checkpoint (config.json); "
                              f"pass the folder written by `janus-rt export --model CHECKPOINT --out DIR`")
    from janus_rt.api import load
    from janus_rt.export.onnx_export import export_onnx, normalize_dtype

    name = normalize_dtype(dtype or "float32")
    target = export_cache_dir() / f"{mf.checkpoint_hash(path, progress)[:16]}-{name}"
    janus = load(path, device="cpu", dtype="float32", backend="torch", progress=progress)
    return export_onnx(janus, target, name, progress=progress).path


def load_engine(path: str | Path, backend: str, device: str | torch.device | None, dtype: str | torch.dtype | None,
                providers: Sequence[str] | None, chat_format: str, progress: bool, engine_config=None):
    """A `Janus` whose step backend executes the exported graphs with ONNX Runtime or TensorRT."""
    from janus_rt.api import Janus
    from janus_rt.export.graph_backend import GraphBackend

    if backend not in ENGINE_BACKENDS:
        raise InputError(f"backend {backend!r} is not an engine backend; choose one of {', '.join(ENGINE_BACKENDS)}")
    if backend == "tensorrt":  # fail before any export work when TensorRT cannot run here
        from janus_rt.export.trt_builder import gpu_identity, import_tensorrt

        import_tensorrt()
        gpu_identity()
    export_dir = ensure_export(Path(path).expanduser(), dtype, progress)
    manifest = mf.read_manifest(export_dir)
    if dtype is not None:
        from janus_rt.export.onnx_export import normalize_dtype

        if normalize_dtype(dtype) != manifest["dtype"]:
            raise InputError(f"{export_dir / mf.MANIFEST}: this export is {manifest['dtype']}, not {normalize_dtype(dtype)}; "
                             f"pass dtype={manifest['dtype']!r} or export again with --dtype {normalize_dtype(dtype)}")
    mf.verify_files(export_dir, manifest)
    cfg = load_config(export_dir)
    tokenizer = JanusTokenizer(export_dir)
    if backend == "onnxruntime":
        from janus_rt.export.ort_engine import OrtEngine, resolve_providers

        engine = OrtEngine(export_dir, manifest, resolve_providers(providers, device))
    else:
        from janus_rt.export.trt_runner import TrtEngine

        if providers is not None:
            raise InputError("providers= is an ONNX Runtime option; backend='tensorrt' takes none")
        engine = TrtEngine(export_dir, manifest, device, progress=progress)
    fmt = ("pro" if tokenizer.has_pro_roles else "legacy") if chat_format == "auto" else chat_format
    return Janus(GraphBackend(backend, engine, cfg), tokenizer, fmt, export_dir, engine_config)
