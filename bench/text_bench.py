"""Understanding rows of the benchmark: one backend, `batch` chat requests (one image each) submitted together.

The `batch` requests enter the engine at one step boundary (`submit_together`), so their prefills run one
after the other and every decode step serves all of them. EOS is unreachable (eos id -1), so every request
decodes exactly `new_tokens` tokens. TTFT is the "prefill" phase (from submission until the last request's
first token: SigLIP + prompt prefill + first token of every row); decode is the remaining `new_tokens - 1`
shared steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from janus_rt.api import Janus
from janus_rt.engine import SamplingParams
from janus_rt.model.prefill import TextRequest

from janus_rt.bench.engines import run_alone
from janus_rt.bench.timers import peak_memory_gb, reset_peak_memory, timed

UNREACHABLE_EOS = -1  # no sampled id equals it: every request decodes max_new_tokens


@dataclass
class TextMeasurement:
    """What one (backend, batch) understanding row measured."""

    backend: str
    batch: int
    prompt_tokens: int  # per row, the image's placeholders included
    new_tokens: int  # per row
    warmup_ms: float
    ttft_ms: float
    decode_ms_per_step: float  # one step = one new token for every row
    peak_gb: float | None
    decode_steps: int | None = None  # engine decode steps of one timed run (new_tokens - 1 when shared)

    @property
    def decode_tokens_per_s(self) -> float:
        """New tokens per second summed over the batch (decode steps only)."""
        return self.batch / (self.decode_ms_per_step / 1e3)


def measure_text_row(m: Janus, request: TextRequest, placeholder: int, batch: int, new_tokens: int,
                     repeats: int) -> TextMeasurement:
    """Time `m` answering `batch` copies of `request` together, exactly `new_tokens` greedy tokens each."""
    if new_tokens < 2:
        raise ValueError(f"new_tokens must be >= 2 to time decode steps, got {new_tokens}")
    device = m.device
    params = SamplingParams(temperature=0.0, max_new_tokens=new_tokens)

    def submit():
        return m.engine.submit_text(request.ids, request.pixel_values, UNREACHABLE_EOS, placeholder, params)

    submits = [submit] * batch
    reset_peak_memory(device)
    warm, warmup_ms = timed(lambda: run_alone(m, submits, timer=False), device)
    if any(len(ids) != new_tokens for ids, _ in warm.results):
        raise RuntimeError(f"{m.backend}: a row stopped before {new_tokens} tokens although EOS is unreachable")
    runs = [run_alone(m, submits) for _ in range(max(repeats, 1))]
    runs.sort(key=lambda r: r.total_ms)
    median = runs[(len(runs) - 1) // 2]
    if median.counts.get("decode") != new_tokens - 1:
        raise RuntimeError(f"{m.backend}: text batch {batch} took {median.counts.get('decode')} decode steps, "
                           f"expected {new_tokens - 1}: its requests did not share the steps")
    return TextMeasurement(m.backend, batch, len(request.ids), new_tokens, warmup_ms, median.phases_ms["prefill"],
                           median.decode_ms_per_step, peak_memory_gb(device), median.decode_steps)
