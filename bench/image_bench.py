"""Image-generation rows of the benchmark: one backend, one batch of images, warm-up excluded.

A row runs `runner.generate_image_tokens` once as warm-up (its wall time is the first-call cost: CUDA-graph
capture / compilation for fast backends, reported apart), then `repeats` timed runs with a `PhaseTimer`
(prefill, decode steps); the run with the median total is reported. The VQ decode of the produced tokens
is timed the same way (warm-up, then median of `repeats`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from janus_rt.backend import Runner
from janus_rt.timing import PhaseTimer

from .timers import peak_memory_gb, reset_peak_memory, timed


@dataclass
class ImageMeasurement:
    """What one (backend, images) row measured; throughput is derived from these."""

    backend: str
    images: int
    steps: int  # image tokens per image (decode steps + 1)
    warmup_ms: float  # the first call, excluded from everything else
    prefill_ms: float | None  # None when the backend cannot separate it (transformers)
    decode_ms_per_step: float
    total_ms: float  # prefill + all decode steps (one image batch, VQ decode excluded)
    vq_ms_per_image: float | None
    peak_gb: float | None  # torch.cuda.max_memory_allocated during the row (GPU only)

    @property
    def images_per_s(self) -> float:
        return self.images / (self.total_ms / 1e3)

    @property
    def image_tokens_per_s(self) -> float:
        return self.images * self.steps / (self.total_ms / 1e3)


def measure_image_row(runner: Runner, prompt_ids: list[int], pad_id: int, num_images: int, repeats: int,
                      cfg_weight: float = 5.0, temperature: float = 1.0, seed: int = 0) -> ImageMeasurement:
    """Time `runner` generating `num_images` images (2 CFG rows each) for `prompt_ids`, then their VQ decode."""
    device = runner.device
    steps = runner.cfg.image_tokens_per_image

    def generate(timer: PhaseTimer | None) -> torch.Tensor:
        return runner.generate_image_tokens(prompt_ids, pad_id, num_images, cfg_weight, temperature, seed, None, None,
                                            False, timer)

    reset_peak_memory(device)
    tokens, warmup_ms = timed(lambda: generate(None), device)
    runs: list[dict[str, float]] = []
    decode_steps = steps - 1
    for _ in range(max(repeats, 1)):
        timer = PhaseTimer(device)
        tokens = generate(timer)
        phases = timer.elapsed_ms()
        decode_steps = timer.counts.get("decode", steps - 1)
        runs.append(phases)
    runs.sort(key=lambda p: p["prefill"] + p["decode"])
    median = runs[(len(runs) - 1) // 2]
    runner.decode_tokens(tokens)  # VQ warm-up
    vq_ms = statistics.median(timed(lambda: runner.decode_tokens(tokens), device)[1] for _ in range(max(repeats, 1)))
    return ImageMeasurement(
        backend=runner.name,
        images=num_images,
        steps=steps,
        warmup_ms=warmup_ms,
        prefill_ms=median["prefill"],
        decode_ms_per_step=median["decode"] / max(decode_steps, 1),
        total_ms=median["prefill"] + median["decode"],
        vq_ms_per_image=vq_ms / num_images,
        peak_gb=peak_memory_gb(device),
    )
