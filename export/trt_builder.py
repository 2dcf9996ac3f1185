"""TensorRT 10 engines from the exported ONNX graphs: optimisation profiles, an on-disk engine cache, the build.

Profiles come from the manifest's axis names (see specs.py): every graph gets batch 1..max_batch; the
transformer gets two profiles, `prefill` (past_sequence 0, sequence 1..context) and `decode` (sequence 1,
past_sequence 1..context-1), so each phase runs a kernel tuned for its shapes.
Precision: the network is built STRONGLY_TYPED, so TensorRT keeps the graph's own types: an fp16 / bf16
export runs in that dtype with the fp32 islands the exporter wrote (norm statistics, softmax, RoPE tables).
Engines are cached under `$JANUS_RT_ENGINE_CACHE` (default `~/.cache/janus-rt/engines`), keyed by the GPU
(name and compute capability), the TensorRT version, the graph file's sha256 and the profiles.

`tensorrt` is imported only when an engine is built or loaded; without it every entry point raises an
`InputError` saying what to install. Everything else here is plain Python and is tested without TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from janus_rt.errors import CheckpointError, InputError, JanusRTError
from janus_rt.files import atomic_write_bytes

Range = tuple[int, int, int]  # min, opt, max
WORKSPACE_BYTES = 4 << 30
DEFAULT_CONTEXT = 4096  # the Janus-Pro context window; profiles stop here unless asked for more


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile: input name -> (min, opt, max) shapes."""

    name: str
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    def to_json(self) -> dict:
        return {"name": self.name, "shapes": {k: [list(s) for s in v] for k, v in sorted(self.shapes.items())}}


def import_tensorrt():
    """The tensorrt module, or an InputError that says what to install."""
    try:
        import tensorrt  # noqa: F401  (optional extra)
    except ImportError as e:
        raise InputError(
            f"backend 'tensorrt' is not available here: TensorRT is not importable ({e}). TensorRT engines "
            "(backend='tensorrt', `janus-rt export --trt`) need an NVIDIA GPU and TensorRT 10: pip install "
            "'janus-rt[trt]' (the tensorrt wheel matching your CUDA), or use backend='onnxruntime' instead"
        ) from None
    if int(tensorrt.__version__.split(".")[0]) < 10:
        raise InputError(f"TensorRT {tensorrt.__version__} is installed; janus-rt builds engines with the TensorRT 10 "
                         "API: pip install 'tensorrt>=10'")
    return tensorrt


def axis_ranges(graph: str, max_batch: int, context: int, max_images: int) -> list[tuple[str, dict[str, Range]]]:
    """Named profiles of axis ranges for a graph (opt: batch 2 = one CFG image, a 64-token prompt)."""
    if max_batch < 1 or context < 2 or max_images < 1:
        raise InputError(f"profiles need max_batch >= 1, context >= 2 and max_images >= 1, got {max_batch}, "
                         f"{context}, {max_images}")
    batch = (1, min(2, max_batch), max_batch)
    images = (1, 1, max_images)
    prompt = (1, min(64, context), context)
    if graph == "transformer":
        decode_past = (1, min(640, context - 1), context - 1)
        return [
            ("prefill", {"batch": batch, "sequence": prompt, "past_sequence": (0, 0, 0), "total_sequence": prompt}),
            ("decode", {"batch": batch, "sequence": (1, 1, 1), "past_sequence": decode_past,
                        "total_sequence": tuple(p + 1 for p in decode_past)}),  # type: ignore[dict-item]
        ]
    if graph in ("vision", "vq_decoder"):
        return [("all", {"images": images})]
    if graph in ("text_embed", "gen_embed"):
        return [("all", {"batch": batch, "sequence": prompt})]
    return [("all", {"batch": batch})]


def profiles_for(graph: str, entry: dict, max_batch: int, context: int, max_images: int) -> list[Profile]:
    """The profiles of one manifest graph entry: each input's axes replaced by their (min, opt, max)."""
    profiles = []
    for name, ranges in axis_ranges(graph, max_batch, context, max_images):
        shapes = {}
        for t in entry["inputs"]:
            dims = []
            for axis in t["shape"]:
                if isinstance(axis, int):
                    dims.append((axis, axis, axis))
                elif axis in ranges:
                    dims.append(ranges[axis])
                else:
                    raise CheckpointError(f"graph {graph}: input {t['name']} has axis {axis!r}, which the TensorRT "
                                          f"profiles do not know; re-export with this janus-rt version")
            shapes[t["name"]] = tuple(tuple(d[i] for d in dims) for i in range(3))
        profiles.append(Profile(name, shapes))  # type: ignore[arg-type]
    return profiles


def engine_cache_key(graph_sha256: str, trt_version: str, gpu_name: str, compute_capability: tuple[int, int],
                     profiles: list[Profile], workspace_bytes: int = WORKSPACE_BYTES) -> str:
    """Hex key of an engine: any change of GPU, TensorRT, graph bytes, profiles or workspace gives a new one."""
    blob = json.dumps({"graph": graph_sha256, "tensorrt": trt_version, "gpu": gpu_name,
                       "sm": list(compute_capability), "profiles": [p.to_json() for p in profiles],
                       "workspace": workspace_bytes}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def engine_cache_dir() -> Path:
    return Path(os.environ.get("JANUS_RT_ENGINE_CACHE", "~/.cache/janus-rt/engines")).expanduser()


def engine_path(cache_dir: Path, graph: str, key: str) -> Path:
    return cache_dir / f"{graph}-{key}.engine"


def build_engine(onnx_path: Path, profiles: list[Profile], target: Path, workspace_bytes: int = WORKSPACE_BYTES) -> Path:
    """Build and serialise one engine to `target` (temp file, then renamed: never half-written)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # reads NAME.onnx.data beside the graph itself
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CheckpointError(f"{onnx_path}: TensorRT cannot parse this graph ({errors}); re-export it with "
                              "`janus-rt export`, or report the failing node")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    for prof in profiles:
        p = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.shapes.items():
            p.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(p)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise JanusRTError(f"{onnx_path}: TensorRT failed to build an engine (see its log above); try a smaller "
                           "max_batch / context or more workspace")
    return atomic_write_bytes(target, memoryview(serialized))


def gpu_identity() -> tuple[str, tuple[int, int]]:
    import torch

    if not torch.cuda.is_available():
        raise InputError("TensorRT engines need an NVIDIA GPU, and torch sees no CUDA device here; "
                         "use backend='onnxruntime' on this machine")
    return torch.cuda.get_device_name(), torch.cuda.get_device_capability()


def build_engines(export_dir: Path, manifest: dict, max_batch: int = 8, context: int | None = None,
                  max_images: int = 4, cache_dir: Path | None = None, progress: bool = False) -> dict[str, tuple[Path, list[Profile]]]:
    """Engines for every graph of an export (built, or taken from the cache): graph -> (engine file, profiles)."""
    from tqdm.auto import tqdm

    trt = import_tensorrt()
    gpu, sm = gpu_identity()
    context = context or min(int(manifest.get("context_length", DEFAULT_CONTEXT)), DEFAULT_CONTEXT)
    cache_dir = cache_dir or engine_cache_dir()
    out = {}
    for graph, entry in tqdm(manifest["graphs"].items(), desc="TensorRT engines", unit="engine", disable=not progress):
        profiles = profiles_for(graph, entry, max_batch, context, max_images)
        key = engine_cache_key(manifest["files"][entry["file"]]["sha256"], trt.__version__, gpu, sm, profiles)
        path = engine_path(cache_dir, graph, key)
        if not path.is_file():
            build_engine(export_dir / entry["file"], profiles, path)
        out[graph] = (path, profiles)
    return out
