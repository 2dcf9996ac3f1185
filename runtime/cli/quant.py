"""`janus-rt quantize`: a float checkpoint -> a quantized checkpoint folder (int8, int4 or fp8 weights)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from janus_rt.errors import InputError
from janus_rt.quant.formats import FORMATS, QuantSpec

QUANTIZE_EPILOG = """examples:
  janus-rt quantize --model ~/models/Janus-Pro-7B --out ~/models/Janus-Pro-7B-int4 --format int4
  janus-rt quantize --model ~/models/Janus-Pro-7B --out ~/models/Janus-Pro-7B-int8 --format int8
  janus-rt generate --model ~/models/Janus-Pro-7B-int4 --backend triton "a red fox in the snow"
  janus-rt demo --out demo && janus-rt quantize --model demo/tiny-janus --out demo/tiny-int8 --format int8

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


def add_quantize_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("quantize", help="write a quantized checkpoint folder (int8 / int4 / fp8 weights)",
                              description="Quantize a checkpoint's transformer linears and heads and write a new "
                                          "checkpoint folder.", epilog=QUANTIZE_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
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
    from janus_rt import load
    from janus_rt.api import resolve_device
    from janus_rt.checkpoint.hub import resolve_model_path
    from janus_rt.checkpoint.info import stored_dtype
    from janus_rt.spelling import CLI
    from janus_rt.quant.checkpoint import check_out_dir, write_quantized

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


EVAL_QUANT_EPILOG = """examples:
  janus-rt eval-quant --model ~/models/Janus-Pro-7B --format int4
  janus-rt eval-quant --model ~/models/Janus-Pro-7B --quantized ~/models/Janus-Pro-7B-int4 --out eval-int4
  janus-rt eval-quant --model ~/models/Janus-Pro-1B --format int8 --all-image-tokens --prompts my-prompts.txt

what is compared: the REFERENCE is the float model of --model in --dtype (default bfloat16 on CUDA, float32 on
CPU); the quantized model is --model quantized while loading (--format), or the --quantized folder written by
`janus-rt quantize`. The float model is measured and freed before the quantized one is loaded (one model in
memory at a time). Prompts: 4 built-in image prompts and 4 chat questions (text only), or --prompts FILE with
one a line, `image: PROMPT` (or no prefix) or `chat: QUESTION`.

the numbers, per kind (image = image tokens with CFG, text = chat answers):
  logits rel. error, mean / max   teacher-forced: the reference's own greedy sequence is fed to both models and
                                  the logits the sampler sees are compared at each position (text: lm_head;
                                  image: uncond + w * (cond - uncond) with generate's default w = 5), in fp32:
                                  ||l_q - l_f|| / ||l_f|| over the vocabulary, mean and max over positions and
                                  prompts. 0 = identical; int8 is typically well below int4
  argmax agreement                teacher-forced: how often both models' top token is the same at those positions
  greedy token agreement          each model generates greedily (temperature 0) on its own; the fraction of
                                  positions with the same token (one early divergence changes all that follows,
                                  so this is a strict measure for 576 image tokens)
  first greedy divergence         the earliest position where a prompt's greedy tokens differ (none = equal)
  seeded image pixels, mean |diff| the two images sampled with --seed (shown side by side in the PNGs)
files in --out: side_by_side_K.png (reference left, quantized right, image prompt K) and report.json (every
number, per prompt too). The last line printed is one JSON object with the pooled numbers.

On random weights (`janus-rt demo`) the numbers only show that the tool runs: they say nothing about how well a
real model survives quantization. Run it on your real checkpoint.
"""


def add_eval_quant_parser(subparsers: argparse._SubParsersAction) -> None:
    from janus_rt.quant.evaluate import DEFAULT_IMAGE_TOKENS, DEFAULT_MAX_NEW_TOKENS, DEFAULT_SEED

    p = subparsers.add_parser("eval-quant", help="measure a quantized model against the float one (logits error, "
                                                 "token agreement, side-by-side images)",
                              description="Compare a quantized model with its float reference on a fixed prompt set: "
                                          "logits error, greedy token agreement, and images sampled with the same "
                                          "seed side by side.", epilog=EVAL_QUANT_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the FLOAT checkpoint directory (the reference)")
    p.add_argument("--format", default=None, choices=FORMATS,
                   help="quantization format to evaluate (required unless --quantized gives it)")
    p.add_argument("--quantized", default=None, metavar="QDIR",
                   help="a folder written by `janus-rt quantize` from --model: evaluate it instead of quantizing "
                        "--model while loading")
    p.add_argument("--out", default=None, help="folder for the PNGs and report.json (default: eval-quant-FORMAT)")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="prompt file, one a line: 'image: PROMPT' (or no prefix) or 'chat: QUESTION' "
                        "(default: the built-in set)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="dtype of the reference and of the quantized model's float parts (default: bfloat16 on "
                        "CUDA, float32 on CPU)")
    p.add_argument("--image-tokens", type=int, default=DEFAULT_IMAGE_TOKENS,
                   help=f"teacher-forced image positions measured per prompt, the first ones (default "
                        f"{DEFAULT_IMAGE_TOKENS}); greedy agreement always covers every token")
    p.add_argument("--all-image-tokens", action="store_true", help="measure every image position (576)")
    p.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS,
                   help=f"longest greedy answer per chat question (default {DEFAULT_MAX_NEW_TOKENS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the sampled side-by-side images (default {DEFAULT_SEED})")


def _config_without_quantization(model_dir: Path) -> dict | None:
    import json

    from janus_rt.quant.checkpoint import QUANT_KEY

    try:
        raw = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: v for k, v in raw.items() if k != QUANT_KEY} if isinstance(raw, dict) else None


def check_eval_quant_args(args: argparse.Namespace):
    """Every check that needs no model, before the slow loads; returns (model dir, quantized dir or None, format,
    out folder, prompt set, settings, device)."""
    from janus_rt.api import resolve_device
    from janus_rt.cli.main import check_out_folder
    from janus_rt.model.config import load_config
    from janus_rt.checkpoint.hub import resolve_model_path
    from janus_rt.spelling import CLI
    from janus_rt.quant.checkpoint import read_quant_block
    from janus_rt.quant.evaluate import EvalSettings, PromptSet
    from janus_rt.quant.formats import QuantSpec
    from janus_rt.quant.loading import check_format_supported

    settings = EvalSettings(image_tokens=None if args.all_image_tokens else args.image_tokens,
                            max_new_tokens=args.max_new_tokens, seed=args.seed)
    prompts = PromptSet.from_file(args.prompts) if args.prompts else PromptSet()
    device = resolve_device(args.device, CLI)
    model_dir = Path(resolve_model_path(args.model))
    block = read_quant_block(model_dir)
    if block is not None:
        raise InputError(f"--model {model_dir} is a quantized folder ({block['format']}); --model takes the float "
                         f"checkpoint it was made from, and the quantized folder goes to --quantized")
    cfg = load_config(model_dir)
    settings.image_positions(cfg.image_tokens_per_image)
    fmt = args.format
    quantized = None
    if args.quantized is not None:
        quantized = Path(args.quantized).expanduser()
        if not quantized.is_dir():
            raise InputError(f"--quantized {quantized}: no such folder; pass a folder written by `janus-rt quantize`")
        qblock = read_quant_block(quantized)
        if qblock is None:
            raise InputError(f"--quantized {quantized} is not a quantized checkpoint (its config.json has no "
                             "'quantization' block); write one with `janus-rt quantize`, or leave --quantized out "
                             "to quantize --model while loading")
        if fmt is not None and fmt != qblock["format"]:
            raise InputError(f"--format {fmt} but --quantized {quantized} holds {qblock['format']} weights; drop "
                             "--format or make them agree")
        fmt = qblock["format"]
        if _config_without_quantization(quantized) != _config_without_quantization(model_dir):
            raise InputError(f"--quantized {quantized} was not made from --model {model_dir}: their config.json "
                             "files differ (besides the quantization block); compare a model with its own "
                             "quantized folder")
    elif fmt is None:
        raise InputError(f"--format is required (one of {', '.join(FORMATS)}) unless --quantized names a folder "
                         "written by `janus-rt quantize`")
    check_format_supported(QuantSpec(fmt), device)
    out = Path(args.out if args.out is not None else f"eval-quant-{fmt}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is a file; pass a folder (new or existing)")
    check_out_folder(out)
    return model_dir, quantized, fmt, out, prompts, settings, device


def run_eval_quant(args: argparse.Namespace) -> int:
    import json

    from janus_rt.quant.evaluate import format_table, run_eval, summary

    model_dir, quantized, fmt, out, prompts, settings, device = check_eval_quant_args(args)
    report = run_eval(model_dir, fmt, out, quantized=quantized, device=device, dtype=args.dtype, prompts=prompts,
                      settings=settings, progress=sys.stderr.isatty())
    print(f"{fmt} vs the float model ({report['reference']}), {len(prompts.image_prompts)} image prompt(s), "
          f"{len(prompts.chat_questions)} chat question(s):")
    print(format_table(report))
    print(f"files        {', '.join(str(out / name) for name in report['files'])}")
    print(json.dumps(summary(report)))
    return 0
