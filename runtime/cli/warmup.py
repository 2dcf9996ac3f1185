"""`janus-rt warmup`: build every decode bucket and run the common shapes, filling the disk caches."""

from __future__ import annotations

import argparse
import time

from janus_rt.cli.common import add_model_args, int_list, load_model, show_progress


def add_warmup_args(w: argparse.ArgumentParser) -> None:
    w.description = ("Load a model, build every decode bucket the engine can reach with its planned "
                     "rows (triton: compile, tune every GEMM tile, capture its CUDA graph; mixed image "
                     "+ text buckets too), then run each common decode shape for a few steps; it prints "
                     "how many buckets and how long. Triton compiles "
                     "and tile choices land in the disk cache (JANUS_RT_CACHE_DIR, default "
                     "~/.cache/janus-rt), so later processes reach their first image sooner. Servers: "
                     "`janus-rt serve --warmup` does the same before opening the port.")
    w.epilog = ("examples:\n  janus-rt warmup --model ~/models/Janus-Pro-7B --backend triton\n"
                "  janus-rt warmup --model toy --images 1,2 --text 1")
    w.formatter_class = argparse.RawDescriptionHelpFormatter
    add_model_args(w)
    w.add_argument("--images", type=int_list, default=(1, 2, 4, 8), metavar="N1,N2,...",
                   help="image batch sizes to warm (images in flight; 2 KV rows each; default 1,2,4,8; none to skip)")
    w.add_argument("--text", type=int_list, default=(1, 2, 4), metavar="N1,N2,...",
                   help="answer batch sizes to warm (answers in flight; default 1,2,4; none to skip)")


def run_warmup(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    m = load_model(args)
    loaded = time.perf_counter()
    try:
        steps = m.warmup(args.images, args.text, progress=show_progress())
    finally:
        m.close()
    for step in steps:
        what = {"buckets": f"{step.batch} bucket(s)", "image": f"{step.batch} image(s)",
                "text": f"{step.batch} answer(s)", "vq": "VQ decode"}[step.kind]
        print(f"warmed       {what:<14} {step.seconds:8.2f} s")
    print(f"done         load {loaded - start:.2f} s, warm-up {time.perf_counter() - loaded:.2f} s")
    return 0
