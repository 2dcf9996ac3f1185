"""Image-generation rows of the benchmark: one backend, one request of N images alone on the engine.

A row runs the request once as warm-up (its wall time is the first-call cost: Triton compilation,
autotuning, CUDA-graph capture of the step's bucket; reported apart), then `repeats` timed runs with the
engine's `PhaseTimer` (prefill, then one mark per decode step); the run with the median total is reported.
The engine holds exactly 2 * N rows, so the N images are one group (one prefill, 575 shared decode steps).
The VQ decode of the produced tokens is timed the same way (warm-up, then median of `repeats`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from janus_rt.api import Janus
from janus_rt.engine import SamplingParams

from janus_rt.bench.engines import run_alone
from janus_rt.bench.timers import peak_memory_gb, reset_peak_memory, timed
from janus_rt.engine.params import IMAGE_DEFAULTS


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
    decode_steps: int | None = None  # engine decode steps of one timed run (steps - 1 when the images shared them)

    @property
    def images_per_s(self) -> float:
        return self.images / (self.total_ms / 1e3)

    @property
    def end_to_end_s(self) -> float | None:
        """Seconds from request to pixels for the whole batch: prefill + every decode step + VQ decode."""
        if self.vq_ms_per_image is None:
            return None
        return (self.total_ms + self.vq_ms_per_image * self.images) / 1e3

    def share_pct(self, part_ms: float | None) -> float | None:
        """`part_ms` as a percentage of the end-to-end time (which of prefill / VQ is worth speeding up)."""
        e2e = self.end_to_end_s
        return None if part_ms is None or not e2e else 100.0 * part_ms / (e2e * 1e3)

    @property
    def image_tokens_per_s(self) -> float:
        return self.images * self.steps / (self.total_ms / 1e3)


def measure_image_row(m: Janus, prompt_ids: list[int], pad_id: int, num_images: int, repeats: int,
                      cfg_weight: float = IMAGE_DEFAULTS.cfg_weight, temperature: float = IMAGE_DEFAULTS.temperature, seed: int = 0) -> ImageMeasurement:
    """Time `m`'s engine generating `num_images` images (2 CFG rows each) for `prompt_ids`, then their VQ decode."""
    device = m.device
    steps = m.config.image_tokens_per_image
    params = SamplingParams(temperature=temperature, cfg_weight=cfg_weight, seed=seed)

    def submit():
        return m.engine.submit_images(prompt_ids, pad_id, num_images, params)

    reset_peak_memory(device)
    _, warmup_ms = timed(lambda: submit().result(), device)
    runs = [run_alone(m, [submit]) for _ in range(max(repeats, 1))]
    runs.sort(key=lambda r: r.total_ms)
    median = runs[(len(runs) - 1) // 2]
    if median.counts.get("decode") != steps - 1:
        raise RuntimeError(f"{m.backend}: {num_images} image(s) took {median.counts.get('decode')} decode steps, "
                           f"expected {steps - 1} (one group): the engine split the request")
    tokens = median.results[0].to(device)
    m.step_backend.decode_pixels(tokens)  # VQ warm-up
    vq_ms = statistics.median(timed(lambda: m.step_backend.decode_pixels(tokens), device)[1]
                              for _ in range(max(repeats, 1)))
    return ImageMeasurement(
        backend=m.backend,
        images=num_images,
        steps=steps,
        warmup_ms=warmup_ms,
        prefill_ms=median.phases_ms["prefill"],
        decode_ms_per_step=median.decode_ms_per_step,
        total_ms=median.total_ms,
        vq_ms_per_image=vq_ms / num_images,
        peak_gb=peak_memory_gb(device),
        decode_steps=median.decode_steps,
    )
