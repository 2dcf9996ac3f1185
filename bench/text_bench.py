"""Understanding rows of the benchmark: one backend, one batch of chat rows with an image, warm-up excluded.

Every row holds the same prompt (text around one image: 576 SigLIP embeddings spliced in). EOS is made
unreachable (eos id -1), so every run decodes exactly `new_tokens` tokens. TTFT is the "prefill" phase
(SigLIP + prompt prefill + the first token); decode is the remaining `new_tokens - 1` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from janus_rt.backend import Runner
from janus_rt.timing import PhaseTimer
from janus_rt.understanding import TextRequest

from .timers import peak_memory_gb, reset_peak_memory, timed

UNREACHABLE_EOS = -1  # no sampled id equals it: every row decodes max_new_tokens


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

    @property
    def decode_tokens_per_s(self) -> float:
        """New tokens per second summed over the batch (decode steps only)."""
        return self.batch / (self.decode_ms_per_step / 1e3)


def measure_text_row(runner: Runner, request: TextRequest, pad_id: int, placeholder: int, batch: int,
                     new_tokens: int, repeats: int) -> TextMeasurement:
    """Time `runner` answering `batch` copies of `request` with exactly `new_tokens` greedy tokens each."""
    if new_tokens < 2:
        raise ValueError(f"new_tokens must be >= 2 to time decode steps, got {new_tokens}")
    device = runner.device
    requests = [request] * batch

    def answer(timer: PhaseTimer | None) -> list[tuple[list[int], bool]]:
        return runner.generate_text(requests, pad_id, placeholder, UNREACHABLE_EOS, new_tokens, 0.0, 0, None, None,
                                    timer)

    reset_peak_memory(device)
    out, warmup_ms = timed(lambda: answer(None), device)
    if any(len(ids) != new_tokens for ids, _ in out):
        raise RuntimeError(f"{runner.name}: a row stopped before {new_tokens} tokens although EOS is unreachable")
    runs = []
    for _ in range(max(repeats, 1)):
        timer = PhaseTimer(device)
        answer(timer)
        phases = timer.elapsed_ms()
        runs.append((phases["prefill"], phases["decode"] / max(timer.counts.get("decode", new_tokens - 1), 1)))
    runs.sort(key=lambda r: r[0] + r[1] * (new_tokens - 1))
    ttft, step = runs[(len(runs) - 1) // 2]
    return TextMeasurement(runner.name, batch, len(request.ids), new_tokens, warmup_ms, ttft, step,
                           peak_memory_gb(device))
