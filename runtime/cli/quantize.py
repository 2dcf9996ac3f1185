"""`janus-rt quantize`: a float checkpoint -> a quantized checkpoint folder (int8, int4 or fp8 weights)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from janus_rt import load
from janus_rt.backends.choice import resolve_device
from janus_rt.checkpoint.hub import resolve_model_path
from janus_rt.checkpoint.info import stored_dtype
from janus_rt.errors import InputError
from janus_rt.quant.checkpoint import check_out_dir, write_quantized
from janus_rt.quant.formats import FORMATS, QuantSpec
from janus_rt.spelling import CLI

QUANTIZE_EPILOG = """examples:
  janus-rt quantize --model ~/models/Janus-Pro-7B --out ~/models/Janus-Pro-7B-int4 --format int4
  janus-rt quantize --model ~/models/Janus-Pro-7B --out ~/models/Janus-Pro-7B-int8 --format int8
  janus-rt generate --model ~/models/Janus-Pro-7B-int4 --backend triton "a red fox in the snow"
  janus-rt quantize --model toy --out demo/toy-int8 --format int8

formats (weights of the transformer's linears and the two heads; embeddings, norms, SigLIP and the VQ decoder
stay in the float dtype):
  int8  symmetric, one scale per output channel: half the bytes of bf16, on every GPU
  int4  groups of --group-size weights along the input with float16 scales and uint8 zero points, round to
        nearest after a per-group clipping search: about a quarter of the bytes
  fp8   float8 e4m3 with one scale per output channel: half the bytes; needs an Ada or Hopper GPU to run
        (compute capability 8.9+; on an A100 use int8)
The folder holds config.json (with a `quantization` block), model.safetensors and the tokenizer files; it is
written atomically, and `janus_rt.load(OUT)` / `--model OUT` load it as it is. `janus-rt eval-quant` measures
what quantization does to your model's outputs (logits error, token agreement, side-by-side images).
"""


def add_quantize_args(p: argparse.ArgumentParser) -> None:
    p.description = "Quantize a checkpoint's transformer linears and heads and write a new checkpoint folder."
    p.epilog, p.formatter_class = QUANTIZE_EPILOG, argparse.RawDescriptionHelpFormatter
    p.add_argument("--model", required=True, help="float checkpoint directory (official or Hugging Face layout)")
    p.add_argument("--out", required=True, help="new folder for the quantized checkpoint (replaced only if it is a "
                                                "quantized checkpoint of the same --model)")
    p.add_argument("--format", required=True, choices=FORMATS, help="weight format (see below)")
    p.add_argument("--group-size", type=int, default=128, help="int4: weights per scale along the input (default 128)")
    p.add_argument("--no-zero-point", action="store_true", help="int4: symmetric groups (zero point 8), no zero points")
    p.add_argument("--no-clip-search", action="store_true",
                   help="int4: plain min/max scales (faster, less accurate) instead of the clipping search")
    p.add_argument("--device", default=None,
                   help="where to quantize (default: cuda if available; the int4 search is much faster there)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="dtype of the weights kept in float (default: as stored in the checkpoint)")


def run_quantize(args: argparse.Namespace) -> int:
    try:
        spec = QuantSpec(args.format, args.group_size, not args.no_zero_point, not args.no_clip_search)
    except InputError as e:
        raise InputError(f"--group-size: {e}" if e.param == "group_size" else str(e), param=e.param) from None
    source = Path(resolve_model_path(args.model))
    out = Path(args.out)
    check_out_dir(out, source)  # before the slow part
    device = resolve_device(args.device, CLI)
    stored = stored_dtype(source)
    dtype = args.dtype or (stored if stored in ("float32", "bfloat16", "float16") else "bfloat16")
    m = load(source, device=device, dtype=dtype, quantize=spec, progress=sys.stderr.isatty())
    try:
        written = write_quantized(m.model, spec, source, out)
    finally:
        m.close()
    size = sum(f.stat().st_size for f in written.iterdir() if f.is_file())
    source_size = sum(f.stat().st_size for f in source.iterdir() if f.is_file() and f.suffix in (".safetensors", ".bin"))
    print(f"quantized    {source} -> {written} ({spec.format}, float parts in {dtype}): "
          f"{size / 2**20:,.1f} MiB (source weights {source_size / 2**20:,.1f} MiB)")
    return 0
