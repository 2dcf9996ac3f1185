"""Trace every graph of `specs.graph_specs` to ONNX and write the export directory atomically.

Exporter: `torch.onnx.export(..., dynamo=False)`, the TorchScript-based exporter, in torch 2.11 and 2.13
alike: it keeps the named dynamic axes of the spec table through the concatenated KV cache and the mask
arithmetic without guards. Opset 17 (LayerNormalization; what TensorRT 10 and ONNX Runtime >= 1.14 run).

Everything is written to a hidden temp folder beside the target and renamed into place at the end, so an
interrupted export leaves nothing half-written. A second export of the same checkpoint and dtype into the
same folder verifies the existing files and skips the work; an export of another checkpoint there fails.
Graphs whose weights exceed `external_data_bytes` (any graph over 2 GB must) keep their weights in one
`NAME.onnx.data` file beside `NAME.onnx`.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from janus_rt.errors import CheckpointError, InputError
from janus_rt.files import check_out_folder, staged_folder
from janus_rt.export import manifest as mf
from janus_rt.export.source import ExportSource
from janus_rt.export.specs import DTYPE_ALIASES, EXPORT_DTYPES, TRACE_SIZES, GraphSpec, build_module, graph_specs, random_inputs
from janus_rt.quant.linear import QuantLinear
from janus_rt.version import __version__

OPSET = 17
EXPORTER = "torch.onnx.export (TorchScript-based, dynamo=False)"
EXTERNAL_DATA_BYTES = 1 << 30  # graphs with more weight bytes than this store them in NAME.onnx.data
# metadata_props stamped into every graph: a graph from another export or checkpoint is caught at load time
META_SOURCE, META_GRAPH, META_DTYPE = "janus_rt.source_sha256", "janus_rt.graph", "janus_rt.dtype"
ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 7: "int64", 9: "bool", 6: "int32"}  # TensorProto codes


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the export directory
    skipped: bool  # True when an identical export was already there (verified, not rewritten)
    manifest: dict


def normalize_dtype(dtype: str | torch.dtype) -> str:
    name = str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else DTYPE_ALIASES.get(dtype, dtype)
    if name not in EXPORT_DTYPES:
        raise InputError(f"export dtype {dtype!r} is not supported; use one of {', '.join(EXPORT_DTYPES)}")
    return name


def onnx_io(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, dtype) of a graph file's inputs and outputs, read without its weights."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def pairs(values) -> list[tuple[str, str]]:
        return [(v.name, ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))) for v in values]

    inits = {i.name for i in model.graph.initializer}
    return pairs(v for v in model.graph.input if v.name not in inits), pairs(model.graph.output)


def _trace(spec: GraphSpec, janus: ExportSource, dtype: str, target: Path, opset: int, external_data_bytes: int,
           metadata: dict[str, str]) -> list[str]:
    """Export one graph to `target` (plus `target.data` when large), stamped with `metadata`; return its files."""
    import onnx

    module = build_module(spec.name, janus.model, dtype)
    example = random_inputs(spec, janus.config, TRACE_SIZES, torch.Generator().manual_seed(0))
    dynamic = {t.name: {i: s for i, s in enumerate(t.shape) if isinstance(s, str)} for t in spec.inputs + spec.outputs}
    scratch = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        raw = scratch / spec.file
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            torch.onnx.export(module, tuple(example.values()), str(raw), dynamo=False, opset_version=opset,
                              input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
                              dynamic_axes=dynamic, do_constant_folding=True)
        weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
        extra = [p for p in scratch.iterdir() if p != raw]  # the exporter wrote external data itself (> 2 GB)
        model = onnx.load(str(raw), load_external_data=True)
        onnx.helper.set_model_props(model, {**metadata, META_GRAPH: spec.name})
        if weight_bytes <= external_data_bytes and not extra:
            onnx.save_model(model, str(target))
            files = [target.name]
        else:
            data = target.name + ".data"
            onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data, size_threshold=1024)
            files = [target.name, data]
        onnx.checker.check_model(str(target))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    got_in, got_out = onnx_io(target)
    mf.check_graph_io(target, [t.to_json() for t in spec.inputs], [t.to_json() for t in spec.outputs], got_in, got_out)
    return files


def _existing(out: Path, source_hash: str, dtype: str) -> dict | None:
    """The manifest of an identical export already in `out` (verified), None if `out` is empty or absent."""
    state = check_out_folder(out, replaces="a janus-rt export",
                             same_kind=lambda folder: (folder / mf.MANIFEST).is_file())
    if state != "same kind":
        return None
    manifest = mf.read_manifest(out)
    if manifest["source"].get("sha256") != source_hash:
        raise CheckpointError(f"{out / mf.MANIFEST}: this folder holds an export of another checkpoint "
                              f"({manifest['source'].get('path')}); choose another --out or delete {out}")
    if manifest["dtype"] != dtype:
        raise InputError(f"{out / mf.MANIFEST}: this folder holds a {manifest['dtype']} export of this checkpoint; "
                         f"export {dtype} into another folder")
    mf.verify_files(out, manifest, full_hash=True)
    return manifest


def export_onnx(janus: ExportSource, out_dir: str | Path, dtype: str | torch.dtype = "float32", opset: int = OPSET,
                progress: bool = False, external_data_bytes: int = EXTERNAL_DATA_BYTES) -> ExportResult:
    """Export every graph of a torch-backend `Janus` to `out_dir` in `dtype`, with `manifest.json`."""
    import onnx  # optional extra: onnx

    if janus.model is None:
        raise InputError(f"export needs the torch modules: load the checkpoint with backend='torch' "
                         f"(this model runs on backend {janus.backend!r})")
    if any(isinstance(m, QuantLinear) for m in janus.model.modules()):
        raise InputError(f"{janus.path} is quantized; the ONNX export takes float checkpoints only: export the float "
                         "checkpoint it was quantized from (`janus-rt quantize` recorded it as 'source' in config.json)")
    dtype = normalize_dtype(dtype)
    out = Path(out_dir).expanduser()
    source_hash = mf.checkpoint_hash(janus.path, progress)
    existing = _existing(out, source_hash, dtype)
    if existing is not None:
        return ExportResult(out, True, existing)
    with staged_folder(out) as staging:  # `out` is missing or empty here (checked by _existing)
        specs = graph_specs(janus.config, dtype)
        graph_entries = {}
        for spec in tqdm(list(specs.values()), desc="exporting ONNX graphs", unit="graph", disable=not progress):
            files = _trace(spec, janus, dtype, staging / spec.file, opset, external_data_bytes,
                           {META_SOURCE: source_hash, META_DTYPE: dtype})
            graph_entries[spec.name] = {"file": spec.file, "external_data": files[1] if len(files) > 1 else None,
                                        "doc": spec.doc, "inputs": [t.to_json() for t in spec.inputs],
                                        "outputs": [t.to_json() for t in spec.outputs]}
        for name in mf.SUPPORT_FILES:
            if (janus.path / name).is_file():
                shutil.copyfile(janus.path / name, staging / name)
        files = {p.name: mf.file_record(p) for p in sorted(staging.iterdir()) if p.name != mf.MANIFEST}
        c = janus.config.llm
        manifest = {
            "format": mf.FORMAT,
            "format_version": mf.FORMAT_VERSION,
            "janus_rt_version": __version__,
            "exporter": EXPORTER,
            "torch_version": torch.__version__,
            "onnx_version": onnx.__version__,
            "opset": opset,
            "dtype": dtype,
            "source": {"path": str(janus.path), "sha256": source_hash},
            "context_length": c.max_position_embeddings,
            "kv_cache": {"layers": c.num_layers, "inputs": "past_key_values.{i}.key, past_key_values.{i}.value",
                         "outputs": "present.{i}.key, present.{i}.value",
                         "shape": "[batch, kv_heads, past_sequence | total_sequence, head_dim]"},
            "axes": {"batch": "rows (2 x images for CFG generation)", "sequence": "new tokens in this call",
                     "past_sequence": "tokens in the KV cache (0 = prefill)",
                     "total_sequence": "past_sequence + sequence", "images": "images through vision / VQ"},
            "graphs": graph_entries,
            "files": files,
        }
        mf.write_manifest(staging, manifest)
    return ExportResult(out, False, manifest)

