"""Warm-up before the first request: compile, autotune and capture every decode bucket ahead of time.

A server's first image otherwise pays for Triton compiles, tile tuning, and one CUDA-graph capture per
batch bucket (seconds), and its first answer the same for text; so would the first batch that mixes images
and answers in a bucket not seen yet. `warm_up(m)`, on an idle model:
  1. buckets (backends with decode buckets: "triton"): builds the step of every (image rows, text rows)
     bucket the engine can reach with its planned rows (`TritonBackend.reachable_buckets`, mixed ones
     included), largest first, each once on padding rows: one eager run (compiles every kernel and tunes the
     tile of every GEMM it runs, gen head and lm_head included), then on CUDA its capture and one replay. The
     set is the same on a CPU, where a build is the eager run alone (the interpreter has no graphs).
  2. shapes: a short image request per image batch size (1, 2, 4, 8 images) and a few concurrent answers per
     text batch size, each stopped after `steps` decode steps: the prefill paths and, on backends without
     buckets, the decode step itself (the first step runs eagerly; the second captures, where a backend does).
  3. one VQ decode.
It reports each part (`WarmupStep`): for the buckets, how many it built and how long that took. Compiled
kernels and tile choices also land in the disk caches, so the next process starts faster still.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch
from tqdm.auto import tqdm

from janus_rt.errors import InputError
from janus_rt.model.cfg_rows import rows_for_images



class LoadedModel(Protocol):
    """What warm-up drives: a loaded `janus_rt.Janus` (a protocol, so that the facade can import this module)."""

    step_backend: Any
    engine: Any
    config: Any

    def stats(self) -> dict: ...
    def submit_images(self, prompt: str, num_images: int = ..., seed: int | None = ...) -> Any: ...
    def submit_chat(self, question: str, max_new_tokens: int = ..., seed: int | None = ...) -> Any: ...
    def decode_image_tokens(self, tokens: torch.Tensor) -> Any: ...

WARMUP_IMAGES = (1, 2, 4, 8)  # images in flight: 2, 4, 8, 16 rows
WARMUP_TEXT = (1, 2, 4)  # answers in flight
WARMUP_STEPS = 3  # decode steps per shape: eager (compile, tune), capture, replay; where part 1 built: replays
WAIT_S = 600.0  # bound on one shape (a failure, not a timing target)
WARMUP_PROMPT = "warm-up"


@dataclass(frozen=True)
class WarmupStep:
    """One warmed part: "buckets" / "image" / "text" / "vq"; `batch`: buckets built (buckets), images or answers
    in flight (image, text), images decoded (vq); seconds it took."""

    kind: str
    batch: int
    seconds: float


def _wait_for_tokens(requests: list, tokens: int, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while sum(r.progress for r in requests) < tokens and not all(r.done() for r in requests):
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up of {what} did not advance within {WAIT_S:g} s")
        time.sleep(0.001)


def _check_sizes(name: str, sizes: Sequence[int]) -> tuple[int, ...]:
    out = tuple(sizes)
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in out):
        raise InputError(f"{name} must be integers >= 1, got {list(out)!r}", param=name)
    return out


def build_buckets(m: LoadedModel, progress: bool = False) -> list[WarmupStep]:
    """Build every decode bucket `m`'s engine can reach (module docstring, part 1): [WarmupStep("buckets", built,
    seconds)], or [] for a backend without buckets. Buckets built earlier are kept, not counted."""
    backend = m.step_backend
    if not hasattr(backend, "reachable_buckets"):
        return []
    start = time.perf_counter()
    keys = backend.reachable_buckets()
    built = sum(backend.build_bucket(key) for key in
                tqdm(keys, desc="building decode buckets", unit="bucket", disable=not progress))
    return [WarmupStep("buckets", built, time.perf_counter() - start)]


def warm_up(m: LoadedModel, image_batches: Sequence[int] = WARMUP_IMAGES, text_batches: Sequence[int] = WARMUP_TEXT,
            steps: int = WARMUP_STEPS, progress: bool = False) -> list[WarmupStep]:
    """Build every decode bucket, then run each shape for `steps` decode steps on `m`'s engine, then one VQ decode
    (see module docstring); returns what it timed, in that order.

    Shapes larger than the engine's KV rows are skipped (they could never run as one batch).
    """
    image_batches = _check_sizes("image_batches", image_batches)
    text_batches = _check_sizes("text_batches", text_batches)
    if not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}", param="steps")
    max_rows = m.stats()["max_rows"]
    shapes = [("image", n) for n in image_batches if rows_for_images(n) <= max_rows]
    shapes += [("text", n) for n in text_batches if n <= max_rows]
    done = build_buckets(m, progress)
    for kind, n in tqdm(shapes, desc="warming up", unit="shape", disable=not progress):
        start = time.perf_counter()
        if kind == "image":
            job = m.submit_images(WARMUP_PROMPT, num_images=n, seed=0)
            requests = job.requests
            _wait_for_tokens(requests, n * (steps + 1), f"{n} image(s)")  # prefill samples one token per image
            job.cancel()
        else:
            with m.engine.admit_together():  # n answers in one step: the text bucket of n rows
                jobs = [m.submit_chat(WARMUP_PROMPT, max_new_tokens=steps + 1, seed=i) for i in range(n)]
            requests = [j.request for j in jobs]
            _wait_for_tokens(requests, n * (steps + 1), f"{n} answer(s)")
            for j in jobs:
                j.cancel()
        for r in requests:
            r.wait()
        done.append(WarmupStep(kind, n, time.perf_counter() - start))
    if image_batches:
        start = time.perf_counter()
        grid = m.config.vq.image_token_grid
        m.decode_image_tokens(torch.zeros(1, grid * grid, dtype=torch.long))
        done.append(WarmupStep("vq", 1, time.perf_counter() - start))
    m.engine.reset_peak_rows()
    return done
