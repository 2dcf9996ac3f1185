"""`janus-rt eval-quant`: measure a quantized model against its float reference (logits error, token agreement,
side-by-side images)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from janus_rt.backends.choice import resolve_device
from janus_rt.checkpoint.hub import resolve_model_path
from janus_rt.cli.common import check_out_folder, show_progress
from janus_rt.errors import InputError
from janus_rt.model.config_loading import load_config
from janus_rt.quant.checkpoint import QUANT_KEY, read_quant_block
from janus_rt.quant.eval_inputs import DEFAULT_IMAGE_TOKENS, DEFAULT_MAX_NEW_TOKENS, DEFAULT_SEED, EvalSettings, PromptSet
from janus_rt.quant.eval_report import format_table, summary
from janus_rt.quant.evaluate import run_eval
from janus_rt.quant.formats import FORMATS, QuantSpec
from janus_rt.quant.loading import check_format_supported
from janus_rt.spelling import CLI

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


def add_eval_quant_args(p: argparse.ArgumentParser) -> None:
    p.description = ("Compare a quantized model with its float reference on a fixed prompt set: logits error, greedy "
                     "token agreement, and images sampled with the same seed side by side.")
    p.epilog, p.formatter_class = EVAL_QUANT_EPILOG, argparse.RawDescriptionHelpFormatter
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
    try:
        raw = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return {k: v for k, v in raw.items() if k != QUANT_KEY} if isinstance(raw, dict) else None


def check_eval_quant_args(args: argparse.Namespace):
    """Every check that needs no model, before the slow loads; returns (model dir, quantized dir or None, format,
    out folder, prompt set, settings, device)."""
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
    model_dir, quantized, fmt, out, prompts, settings, device = check_eval_quant_args(args)
    report = run_eval(model_dir, fmt, out, quantized=quantized, device=device, dtype=args.dtype, prompts=prompts,
                      settings=settings, progress=show_progress())
    print(f"{fmt} vs the float model ({report['reference']}), {len(prompts.image_prompts)} image prompt(s), "
          f"{len(prompts.chat_questions)} chat question(s):")
    print(format_table(report))
    print(f"files        {', '.join(str(out / name) for name in report['files'])}")
    print(json.dumps(summary(report)))
    return 0
