"""The engine's own host time per decode step: the request loop over a backend whose steps cost nothing.

    python -m janus_rt.bench.host_overhead                    # 1 and 16 images, Janus-1.3B's token counts
    python -m janus_rt.bench.host_overhead --images 1,4,16 --requests 10

A CUDA-graph step is launched asynchronously, so the GPU stays busy only while the host enqueues each step
faster than the GPU runs it: this bounds the loop's share (admission, bookkeeping, token reads) from above,
apart from the backend's own host work (the triton backend adds its bucket lookup and one graph launch). The
backend here keeps a token record on the CPU and does nothing per step; no model, no weights, no GPU. Prints
a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from janus_rt.engine import EngineConfig, SamplingParams
from janus_rt.engine.core import Engine
from janus_rt.engine.request import Group

from janus_rt.bench.architectures import architecture_config

PROMPT = list(range(1, 33))  # 32 prompt ids


class NullBackend:
    """A `StepBackend` whose prefill and decode do nothing (tokens stay 0): only the engine's loop costs time."""

    name = "null"
    device = torch.device("cpu")
    dtype = torch.bfloat16
    sync_every = 16  # as the triton backend
    model = None

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.steps = 0
        self.tokens = torch.zeros(0, 0, dtype=torch.long)

    def allocate(self, rows: int, max_seq_len: int) -> None:
        self.tokens = torch.zeros(rows + 1, max_seq_len, dtype=torch.long)  # [rows + scratch, slots]

    def prefill(self, group: Group) -> None:
        pass

    def decode(self, groups: list[Group]) -> None:
        self.steps += 1

    def read_tokens(self, group: Group, start: int, stop: int) -> torch.Tensor:
        return self.tokens[group.first_row:group.first_row + group.images, start:stop]

    def release(self, group: Group) -> None:
        pass

    def decode_pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def describe_mode(self) -> str:
        return "null backend (no kernels)"


def measure(cfg, images: int, requests: int) -> dict:
    """Host microseconds per decode step over `requests` image requests of `images` images, one after another."""
    backend = NullBackend(cfg)
    engine = Engine(backend, EngineConfig(max_rows=2 * images, max_seq_len=len(PROMPT) + cfg.image_tokens_per_image))
    params = SamplingParams(temperature=1.0, seed=0)
    try:
        engine.submit_images(PROMPT, 0, images, params).result()  # warm-up
        first = backend.steps
        start = time.perf_counter()
        for _ in range(requests):
            engine.submit_images(PROMPT, 0, images, params).result()
        elapsed = time.perf_counter() - start
    finally:
        engine.close()
    steps = backend.steps - first
    return {"images": images, "requests": requests, "steps": steps, "us_per_step": elapsed / steps * 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="janus-1.3b", help="token counts of this architecture (default janus-1.3b)")
    p.add_argument("--images", default="1,16", help="images per request, comma-separated (default 1,16)")
    p.add_argument("--requests", type=int, default=5, help="timed requests per row (default 5)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.images.split(",") if x.strip()]
    if not sizes or min(sizes) < 1 or args.requests < 1:
        p.error("--images must list positive counts and --requests must be >= 1")
    cfg = architecture_config(args.arch)
    rows = [measure(cfg, n, args.requests) for n in sizes]
    print(f"engine host time per decode step ({args.arch} token counts, null backend, torch threads "
          f"{torch.get_num_threads()})")
    print("| images | steps | us/step |\n|--------|-------|---------|")
    for r in rows:
        print(f"| {r['images']:>6} | {r['steps']:>5} | {r['us_per_step']:>7.1f} |")
    print(json.dumps({"schema": "janus-rt-host-overhead/1", "arch": args.arch, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
