"""`janus-rt export`: trace a checkpoint to ONNX graphs + manifest; optionally check them and build TensorRT engines."""

from __future__ import annotations

import argparse
from pathlib import Path

from janus_rt import load
from janus_rt.checkpoint.hub import resolve_model_path
from janus_rt.export import check_export, export_onnx, format_report
from janus_rt.export.trt_builder import build_engines, gpu_identity, import_tensorrt

EXPORT_EPILOG = """examples:
  janus-rt export --model ~/models/Janus-Pro-1B --out exports/pro-1b --check
  janus-rt export --model ~/models/Janus-Pro-1B --out exports/pro-1b-fp16 --dtype float16 --trt
  janus-rt generate --model exports/pro-1b --backend onnxruntime "a red fox in the snow" --seed 0

needs: pip install 'janus-rt[export]' (onnx, onnxscript, onnxruntime); --trt also needs 'janus-rt[trt]'
(tensorrt>=10) and an NVIDIA GPU. Graphs with over 1 GiB of weights keep them in NAME.onnx.data beside NAME.onnx.
"""


def add_export_args(e: argparse.ArgumentParser) -> None:
    e.description = ("Export the vision encoder, the transformer (KV cache in / out), the heads, the image-token "
                     "embedding and the VQ decoder to ONNX in --out, with manifest.json.\n"
                     "The folder is written atomically; exporting the same checkpoint again verifies it and skips "
                     "the work.")
    e.epilog, e.formatter_class = EXPORT_EPILOG, argparse.RawDescriptionHelpFormatter
    e.add_argument("--model", required=True, help="checkpoint directory (or a hub id)")
    e.add_argument("--out", required=True, help="export folder to create (must be new, empty, or an earlier export "
                                                "of the same checkpoint and dtype)")
    e.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="graph dtype (default float32); norms and softmax statistics stay fp32 in every dtype")
    e.add_argument("--check", action="store_true",
                   help="run every graph in ONNX Runtime on random inputs and compare with the torch modules (fp32)")
    e.add_argument("--providers", default=None, help="ONNX Runtime providers for --check, comma-separated (default CPU)")
    e.add_argument("--trt", action="store_true", help="also build TensorRT engines (needs an NVIDIA GPU and tensorrt>=10)")
    e.add_argument("--max-batch", type=int, default=8, help="TensorRT profiles: largest batch (rows; 2 per CFG image)")


def run_export(args: argparse.Namespace) -> int:
    if args.trt:  # fail before the slow part when TensorRT cannot run here
        import_tensorrt()
        gpu_identity()
    # --check compares with fp32 torch modules; without it, load in the export dtype (half the memory for fp16)
    m = load(resolve_model_path(args.model), device="cpu", dtype="float32" if args.check else args.dtype, progress=True)
    result = export_onnx(m, Path(args.out), args.dtype, progress=True)
    size = sum(r["bytes"] for r in result.manifest["files"].values())
    verb = "already exported (verified, nothing rewritten)" if result.skipped else "exported"
    print(f"{verb}: {len(result.manifest['graphs'])} {args.dtype} graphs, {size / 2**20:.1f} MiB -> {result.path}")
    status = 0
    if args.check:
        rows = check_export(result.path, m, args.providers.split(",") if args.providers else None)
        print(format_report(rows))
        status = 0 if all(r.ok for r in rows) else 1
    if args.trt:
        for graph, (path, _) in build_engines(result.path, result.manifest, max_batch=args.max_batch,
                                              progress=True).items():
            print(f"engine       {graph}: {path}")
    return status
