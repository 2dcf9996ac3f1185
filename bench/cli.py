"""`janus-rt bench`: the subcommand's flags and handler (runtime/cli/main.py lists it and imports this module only
when it runs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from janus_rt.bench.architectures import ARCHITECTURES
from janus_rt.bench.engines import backend_variant
from janus_rt.bench.harness import run_bench
from janus_rt.bench.options import BenchOptions
from janus_rt.bench.report import render
from janus_rt.cli.common import int_list
from janus_rt.errors import InputError
from janus_rt.quant.formats import FORMATS

DESCRIPTION = """\
Benchmark janus-rt on a real Janus architecture with RANDOM weights (nothing is downloaded).

Builds the model on the device, then prints:
  - a card: GPU, measured copy bandwidth and the datasheet figure, weight bytes read per decode step,
    KV bytes per token, and the roofline (the fastest a decode step can be at that bandwidth);
  - image generation per backend and batch of images: prefill ms, decode ms/step, image tokens/s,
    images/s, MBU % (roofline time / measured step time, weights AND KV reads counted), VQ decode
    ms/image, peak VRAM; the first call (warm-up: capture/compile) is excluded and shown apart;
  - understanding (one image per row) per backend and batch: TTFT and decode tokens/s, MBU %;
  - the same work with transformers' JanusForConditionalGeneration holding the same weights (when
    transformers is installed), speedups, and the issue-3 targets on an H100;
  - with --quant int8,int4,fp8: the image and understanding rows again, per format and backend, on the same
    random weights quantized to that format (weight-only: the transformer's linears and the two heads), in
    the same tables with a `weights` column: ms/step, MBU against the QUANTIZED bytes per step, img/s, peak
    VRAM, and decode ms/step vs the float row (the quantization goal: e.g. int8 <= 0.58x on Janus-Pro-7B);
    one variant is on the device at a time (each format rebuilds the weights from the seed), and a format
    this GPU cannot run (fp8 below compute capability 8.9) or that fails is skipped with a note;
  - with --arrivals N: an arrival-driven run, N requests (one image each, or chat with --arrival-kind chat)
    arriving at --rate R per second (open loop) or keeping --concurrency C in flight (closed loop), sharing
    the engine's decode steps: throughput (img/s or tok/s), p50/p95/p99 latency (and TTFT for chat), the
    engine's decode steps and peak rows, beside the same request run alone; bounded by N and
    --arrival-timeout (what is still running then is cancelled);
  - with --cold-start: per backend, a NEW process -> load -> first image, twice: with empty disk caches
    (cold disk: JANUS_RT_CACHE_DIR and TRITON_CACHE_DIR in a fresh temporary folder) and over what that run left
    (warm disk): import s, load s (random weights on the device + backend + engine), first image s (tokens +
    VQ decode), a second image in the same process (warm image s), first - warm, total s (process start -> first
    image); each process bounded by --cold-start-timeout, a failure is a note; the goal (Janus-1.3B, bf16, GPU):
    warm-disk first image <= 2 s over a warm image;
  - last line: everything as one JSON object (also written to --out).

Every row runs through the engine (janus_rt.engine) on its own Janus object over the same weights, warm-up
excluded; a backend that is not available here is skipped with a note. Without a GPU the triton backend
would run in the Triton interpreter (hours per image at a real shape): it is skipped with a note unless
--arch tiny or an explicit --device cpu (then it runs, with a warning). A model built on the CPU is checked
against the host memory available before anything is allocated. Every image decodes the full 576 tokens;
for a quick run use --arch tiny (runs on a CPU in seconds), and --image-grid 6 for a smoke run (36 tokens
per image)."""

EPILOG = """\
examples:
  janus-rt bench                                             # Janus-1.3B shape, bf16, everything
  janus-rt bench --arch janus-pro-7b --images 1,4 --hf-images 1 --out bench/results/h100-pro7b.json
  janus-rt bench --arch janus-1.3b --backends triton --no-hf --text-batches 1
  janus-rt bench --arch janus-1.3b --backends "triton,triton[all],triton[norm+silu]" --no-hf   # fused kernels vs not
  janus-rt bench --arch tiny --images 1 --backends torch --text-batches 1 --no-hf   # CPU smoke run
  janus-rt bench --arch janus-pro-7b --images 1,4 --text-batches 1 --no-hf --quant int8,int4,fp8   # vs bf16
  janus-rt bench --images none --text-batches none --no-hf --arrivals 16 --concurrency 16   # 16 at once vs 1 alone
  janus-rt bench --images none --text-batches none --no-hf --arrivals 32 --rate 4   # open loop, 4 images/s offered
  janus-rt bench --images none --text-batches none --no-hf --arrivals 64 --rate 20 --arrival-kind chat
  janus-rt bench --images none --text-batches none --no-hf --backends triton --cold-start   # new process -> image"""


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _backends(text: str) -> tuple[str, ...]:
    """Backend labels; a triton[FUSIONS] variant must name known fusions."""
    names = _names(text)
    for name in names:
        try:
            backend_variant(name)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return names


def _quant_formats(text: str) -> tuple[str, ...]:
    """'int8,int4' -> ('int8', 'int4'); 'none' or '' -> (); an unknown or repeated format is refused."""
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(x.strip().lower() for x in text.split(","))
    bad = [x for x in names if x not in FORMATS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown weight format(s) {', '.join(repr(b) for b in bad)} in {text!r}: "
                                         f"expected a comma-separated list of {', '.join(FORMATS)} (e.g. int8,int4)")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a format is listed twice in {text!r}")
    return names


def add_bench_args(p: argparse.ArgumentParser) -> None:
    """The `bench` subcommand's description, examples and flags."""
    p.description, p.epilog, p.formatter_class = DESCRIPTION, EPILOG, argparse.RawDescriptionHelpFormatter
    p.add_argument("--arch", default="janus-1.3b", choices=ARCHITECTURES,
                   help="janus-1.3b (= Janus-Pro-1B shape), janus-pro-7b, or tiny for a CPU smoke run "
                        "(default janus-1.3b)")
    p.add_argument("--images", type=int_list, default=(1, 4, 16),
                   help="images per generate call, comma-separated (default 1,4,16); 'none' skips image generation")
    p.add_argument("--backends", type=_backends, default=("triton", "torch"),
                   help="janus-rt backends to time, comma-separated (default triton,torch); triton[FUSIONS] times the "
                        "triton backend with optional fused kernels: all, or norm, silu, attn joined by '+' "
                        "(e.g. triton,triton[all],triton[norm+silu])")
    p.add_argument("--text-batches", type=int_list, default=(1, 8),
                   help="chat rows per call for understanding, comma-separated (default 1,8); 'none' skips it")
    p.add_argument("--text-tokens", type=int, default=128, help="new tokens per chat row, EOS unreachable (default 128)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per row after the warm-up; the median is "
                                                          "reported (default 2)")
    p.add_argument("--device", default=None, help="torch device (default cuda if available, else cpu; an explicit "
                                                     "cpu also runs the triton backend in the Triton interpreter)")
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32", "bfloat16", "float16", "float32"],
                   help="weights/activations dtype (default bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--no-hf", dest="hf", action="store_false",
                   help="skip the transformers column (it takes ~30 s per image on an H100)")
    p.add_argument("--hf-images", type=int_list, default=(1,),
                   help="images per call for the transformers column (default 1)")
    p.add_argument("--hf-text-batches", type=int_list, default=(1,),
                   help="understanding batches for the transformers column (default 1)")
    p.add_argument("--image-grid", type=int, default=None,
                   help="smoke runs only: an image-token grid of this side (e.g. 6 -> 36 tokens per image) instead of "
                        "the architecture's 24; no MBU target applies")
    p.add_argument("--quant", type=_quant_formats, default=(), metavar="LIST",
                   help="also run the image and understanding rows with the same random weights quantized to each "
                        "of these weight formats, comma-separated: int8, int4, fp8 (default: none); MBU counts the "
                        "quantized bytes")
    a = p.add_argument_group("arrival run", "requests arriving over time, sharing the engine (off unless --arrivals)")
    a.add_argument("--arrivals", type=int, default=0, metavar="N",
                   help="send N requests (default 0: no arrival run)")
    how = a.add_mutually_exclusive_group()
    how.add_argument("--rate", type=float, default=None, metavar="R",
                     help="open loop: request i is sent at i / R seconds, whatever is still running")
    how.add_argument("--concurrency", type=int, default=None, metavar="C",
                     help="closed loop: keep C requests in flight (default when no --rate: all N at once)")
    a.add_argument("--arrival-kind", choices=("image", "chat"), default="image",
                   help="image requests (default) or chat requests (one image in the prompt, --text-tokens tokens)")
    a.add_argument("--arrival-images", type=int, default=1, help="images per image request (default 1)")
    a.add_argument("--arrival-timeout", type=float, default=600.0, metavar="S",
                   help="time bound of the arrival run in seconds; requests still running are cancelled, unsent "
                        "ones are never sent (default 600)")
    a.add_argument("--arrival-decode", action="store_true",
                   help="image latency includes the VQ decode to pixels (run beside the engine, as ImageJob does)")
    a.add_argument("--arrival-backends", type=_names, default=None,
                   help="backends of the arrival run, comma-separated (default: the first available of --backends)")
    c = p.add_argument_group("cold start", "new process -> load -> first image (off unless --cold-start)")
    c.add_argument("--cold-start", action="store_true",
                   help="per backend, time two new processes (import, load, first image, a warm image): with empty "
                        "disk caches, then with what the first left")
    c.add_argument("--cold-start-timeout", type=float, default=900.0, metavar="S",
                   help="time bound of each cold-start process in seconds; one that runs over is killed and noted "
                        "(default 900)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights, prompts and sampling (default 0)")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")


def run_bench_command(args: argparse.Namespace) -> int:
    """Handler of `janus-rt bench`: run, print the report (last line JSON), write --out."""
    if args.text_tokens < 2:
        raise InputError(f"--text-tokens must be >= 2 (the first token is TTFT, the rest are timed), got {args.text_tokens}")
    if args.repeats < 1:
        raise InputError(f"--repeats must be >= 1, got {args.repeats}")
    if args.arrivals < 0:
        raise InputError(f"--arrivals must be >= 0, got {args.arrivals}")
    if not args.images and not args.text_batches and not args.arrivals and not args.cold_start:
        raise InputError("--images none and --text-batches none without --arrivals (or --cold-start) leave nothing "
                         "to benchmark")
    if not args.cold_start_timeout > 0:
        raise InputError(f"--cold-start-timeout must be > 0 seconds, got {args.cold_start_timeout}")
    if not args.arrivals and (args.rate is not None or args.concurrency is not None):
        raise InputError("--rate / --concurrency describe an arrival run: add --arrivals N")
    if args.rate is not None and not args.rate > 0:
        raise InputError(f"--rate must be > 0 requests per second, got {args.rate}")
    if args.concurrency is not None and args.concurrency < 1:
        raise InputError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.arrival_images < 1 or not args.arrival_timeout > 0:
        raise InputError("--arrival-images must be >= 1 and --arrival-timeout > 0")
    if args.image_grid is not None and args.image_grid < 1:
        raise InputError(f"--image-grid must be >= 1, got {args.image_grid}")
    if args.quant and not args.images and not args.text_batches:
        raise InputError("--quant reruns the image and understanding rows: --images none and --text-batches none "
                         "leave none to quantize")
    skip = tuple(s for s, wanted in (("image", args.images), ("text", args.text_batches)) if not wanted)
    opts = BenchOptions(arch=args.arch, device=args.device, dtype=args.dtype, images=args.images,
                        backends=args.backends, text_batches=args.text_batches, text_tokens=args.text_tokens,
                        repeats=args.repeats, hf=args.hf, hf_images=args.hf_images,
                        hf_text_batches=args.hf_text_batches, seed=args.seed, skip=skip, image_grid=args.image_grid,
                        arrivals=args.arrivals, rate=args.rate, concurrency=args.concurrency,
                        arrival_kind=args.arrival_kind, arrival_images=args.arrival_images,
                        arrival_timeout=args.arrival_timeout, arrival_decode=args.arrival_decode,
                        arrival_backends=args.arrival_backends, quant=args.quant, cold_start=args.cold_start,
                        cold_start_timeout=args.cold_start_timeout)
    result = run_bench(opts, argv=sys.argv)
    print(render(result), flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0
