"""How the benchmark drives janus-rt's engine: Janus objects over one shared model, batches, timed runs.

Every backend gets its own `Janus` (its own engine and KV rows) over the SAME random-weight module tree, so
no backend copies the weights. The bench talks to the engine at the token level (`engine.submit_images`,
`engine.submit_text`): its prompts are synthetic ids (there is no tokenizer), and pixels are decoded apart.

    make_janus(model, backend, max_rows, max_seq_len)   a Janus sized for one measurement
    backend_variant(label)                              "triton[norm+silu]" -> ("triton", its Fusions)
    submit_together(engine, submits)                    requests that the engine admits at one step boundary
    run_alone(m, submits)                               one batch alone on the engine, with its phase times
    release_memory(device)                              after `m.close()` and dropping `m`: free its KV rows
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from janus_rt.api import Janus

from janus_rt.backends.choice import make_backend, parse_fusions
from janus_rt.engine import EngineConfig, Request
from janus_rt.engine.pool import plan_rows
from janus_rt.errors import InputError
from janus_rt.backends.triton_ops import Fusions
from janus_rt.timing import PhaseTimer
from janus_rt.backends.graph_capture import empty_cuda_cache

SEQ_ALIGN = 64  # KV rows are sized to a multiple of this many slots (at most the model's context)


def seq_len_for(need: int, context: int) -> int:
    """KV slots per row for requests that need `need` slots: rounded up to SEQ_ALIGN, capped at the context."""
    return min(-(-need // SEQ_ALIGN) * SEQ_ALIGN, context)


def backend_variant(label: str) -> tuple[str, Fusions | None]:
    """A bench backend label -> (janus-rt backend, triton fusions). "triton[all]", "triton[norm+silu]": the triton
    backend with those optional fused kernels (`janus_rt.backends.triton_ops.Fusions`); a plain name: its default."""
    label = label.strip()
    if not label.endswith("]") or "[" not in label:
        return label, None
    name, _, inner = label[:-1].partition("[")
    if name != "triton":
        raise InputError(f"backend {label!r}: only triton takes a [fusions] variant (e.g. triton[all], triton[norm+silu])")
    return name, parse_fusions(inner, name)


def make_janus(model, backend: str, max_rows: int, max_seq_len: int) -> Janus:
    """A Janus over `model` (shared weights) with backend `backend` (a label: "triton[all]" picks fusions, see
    `backend_variant`) and an engine of exactly these KV rows.

    On CUDA the rows are capped at what the engine's default memory budget (`plan_rows`) allows. There is no
    tokenizer: the bench submits token ids to `m.engine` itself. Close it (`m.close()`) when done.
    """
    name, fusions = backend_variant(backend)
    step = make_backend(name, model, fusions)
    if step.device.type == "cuda":  # never more rows than the engine's own memory budget would plan
        budget, _ = plan_rows(EngineConfig(max_seq_len=max_seq_len), step.cfg.llm, step.device, step.dtype)
        max_rows = min(max_rows, budget)
    return Janus(step, None, "pro", Path(f"<random weights: {model.cfg.variant_name()}>"),  # type: ignore[arg-type]
                 EngineConfig(max_rows=max_rows, max_seq_len=max_seq_len))


def submit_together(engine, submits: list[Callable[[], Request]]) -> list[Request]:
    """Queue every request so that the engine admits them all at the same step boundary (one batch).

    `Engine.admit_together` keeps the engine thread from taking a partial batch. If one submission fails, the
    ones already queued are cancelled.
    """
    requests: list[Request] = []
    with engine.admit_together():
        try:
            for submit in submits:
                requests.append(submit())
        except BaseException:
            for r in requests:
                r.cancel()
            raise
    return requests


@dataclass
class TimedRun:
    """One batch run alone on an idle engine."""

    results: list  # each request's result: image tokens [N, grid*grid], or (ids, finished)
    phases_ms: dict[str, float]  # "prefill": from submission until the last group's first token; "decode"
    counts: dict[str, int]  # marks per phase: groups prefilled, decode steps
    decode_steps: int  # engine decode steps the batch took (m.stats() difference)
    peak_rows: int  # m.stats()["peak_rows"] afterwards (the most rows of one step since the engine started)

    @property
    def total_ms(self) -> float:
        return self.phases_ms.get("prefill", 0.0) + self.phases_ms.get("decode", 0.0)

    @property
    def decode_ms_per_step(self) -> float:
        return self.phases_ms.get("decode", 0.0) / max(self.counts.get("decode", 0), 1)


def run_alone(m: Janus, submits: list[Callable[[], Request]], timer: bool = True) -> TimedRun:
    """Run these requests as one batch on `m`'s idle engine; with `timer`, its phase marks are recorded.

    `engine.timer` is set only for this run (no other request may run meanwhile: the marks are global).
    """
    engine = m.engine
    before = engine.stats()["decode_steps"]
    phase_timer = PhaseTimer(m.device) if timer else None
    engine.timer = phase_timer
    try:
        requests = submit_together(engine, submits)
        results = [r.result() for r in requests]
    finally:
        engine.timer = None
    stats = engine.stats()
    phases = phase_timer.elapsed_ms() if phase_timer is not None else {}
    counts = dict(phase_timer.counts) if phase_timer is not None else {}
    return TimedRun(results, phases, counts, stats["decode_steps"] - before, stats["peak_rows"])


def release_memory(device: torch.device) -> None:
    """Give freed device memory (a closed Janus's KV rows, graph pools) back, before the next measurement."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        empty_cuda_cache()
