"""ONNX / TensorRT export stage for janus-rt: graphs, manifest, checks, and the engine backends.

    m = janus_rt.load(CHECKPOINT, backend="torch", dtype="float32")
    export_onnx(m, "exports/pro-1b")                       # graphs + manifest.json, written atomically
    print(format_report(check_export("exports/pro-1b", m))) # ONNX Runtime vs the torch modules
    e = janus_rt.load("exports/pro-1b", backend="onnxruntime", providers=["CPUExecutionProvider"])

Modules, one component each: `graphs` (export wrappers), `specs` (graph table: names, dtypes, axes),
`onnx_export` (tracing, atomic export dir), `manifest` (manifest.json, hashes, verification), `check`
(`--check` numerics), `ort_engine` / `trt_runner` (graph execution), `trt_builder` (profiles, engine cache,
TensorRT 10 build), `graph_backend` (the engine's step primitives over the graphs), `loading` (an export folder ->
what `janus_rt.load` builds a `Janus` from), `source` (what export reads from a loaded model). The stage never
imports the facade (`janus_rt.api`): `janus_rt.load` imports it.
"""

from janus_rt.export.check import check_export, format_report
from janus_rt.export.loading import open_export
from janus_rt.export.onnx_export import export_onnx

__all__ = ["export_onnx", "check_export", "format_report", "open_export"]
