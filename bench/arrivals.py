"""Arrival-driven runs: N requests reach the engine over time, as a server's clients would send them.

    open loop   (rate R):        request i is sent at t0 + i / R, whatever is still running
    closed loop (concurrency C): C requests in flight; each completion sends the next one

Each request is one image request (`images` images, 2 CFG rows each) or one chat request (one image in the
prompt, `new_tokens` greedy tokens, EOS unreachable). The clients are asyncio tasks on one event loop; the
engine thread steps whatever has arrived, so concurrent requests share decode steps.

Measured per request: latency = send -> result (image tokens, or the whole answer; with `decode`, image
latency also covers the VQ decode, run in a thread pool as `ImageJob` does), and for chat the time to first
token (send -> first streamed token). Over the run: throughput (images/s or new tokens/s from the first send to
the last completion), p50/p95/p99 latency, and the engine's decode steps and peak rows (`m.stats()`).

Before it: a warm-up that runs every batch bucket the run can reach for a few steps (Triton autotuning and
CUDA-graph capture happen there, not in the measured run), then the solo reference: the same request alone,
`repeats` times (median; its own bound, SOLO_TIMEOUT_S). The run is bounded: at most N requests, and after
`timeout_s` the requests still running are cancelled and the unsent ones never sent.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from janus_rt.api import Janus
from janus_rt.engine import Request, SamplingParams
from janus_rt.model.prefill import TextRequest

from janus_rt.bench.engines import submit_together
from janus_rt.bench.text_bench import UNREACHABLE_EOS

KINDS = ("image", "chat")
PERCENTILES = (50, 95, 99)
WARM_STEPS = 3  # decode steps per warm-up batch: the first runs eagerly (compile, autotune), the second captures
DRAIN_S = 60.0  # after the time bound: how long cancelled requests may take to leave the engine
SOLO_TIMEOUT_S = 600.0  # the solo reference's own bound (the run's --arrival-timeout does not apply to it)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty list")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float]) -> dict | None:
    """p50/p95/p99, mean, min and max of `values` (None when empty)."""
    if not values:
        return None
    out = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    out.update(mean=statistics.fmean(values), min=min(values), max=max(values))
    return out


@dataclass(frozen=True)
class ArrivalSpec:
    """What an arrival run sends (the CLI's --arrivals, --rate / --concurrency, --arrival-* flags)."""

    requests: int  # N: requests sent in all (at most)
    kind: str = "image"  # "image" or "chat"
    rate: float | None = None  # open loop: requests per second
    concurrency: int | None = None  # closed loop: requests in flight (default: all N at once)
    images: int = 1  # images per image request
    new_tokens: int = 128  # new tokens per chat request
    timeout_s: float = 600.0  # the run's time bound (warm-up and solo reference excluded)
    decode: bool = False  # image latency includes the VQ decode to pixels

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ValueError(f"requests must be >= 1, got {self.requests}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.rate is not None and self.concurrency is not None:
            raise ValueError("give a rate (open loop) or a concurrency (closed loop), not both")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of requests per second, got {self.rate}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.images < 1 or self.new_tokens < 1 or not self.timeout_s > 0:
            raise ValueError("images and new_tokens must be >= 1 and timeout_s > 0")

    @property
    def mode(self) -> str:
        return "open" if self.rate is not None else "closed"

    @property
    def in_flight(self) -> int:
        """The most requests in flight at once (open loop: all of them, in the worst case)."""
        return self.requests if self.rate is not None else min(self.concurrency or self.requests, self.requests)

    @property
    def rows_per_request(self) -> int:
        return 2 * self.images if self.kind == "image" else 1

    def describe(self) -> str:
        what = (f"{self.requests} image requests of {self.images} image(s)" if self.kind == "image"
                else f"{self.requests} chat requests of {self.new_tokens} tokens")
        how = (f"open loop at {self.rate:g} req/s" if self.rate is not None
               else f"closed loop, {self.in_flight} in flight")
        return f"{what}, {how}"


@dataclass
class Record:
    """One request of a run (times from time.perf_counter)."""

    index: int
    sent: float | None = None
    first_token: float | None = None
    done: float | None = None
    work: int = 0  # images, or new tokens, delivered
    request: Request | None = None
    error: str | None = None

    @property
    def latency(self) -> float | None:
        return None if self.done is None or self.sent is None else self.done - self.sent

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None or self.sent is None else self.first_token - self.sent


@dataclass
class Workload:
    """How to send request i of a run, and what a finished one delivered."""

    spec: ArrivalSpec
    submit: Callable[[int], Request]
    decode: Callable[[object], object] | None = None  # image tokens -> pixels (with spec.decode)
    records: list[Record] = field(default_factory=list)


def image_workload(m: Janus, spec: ArrivalSpec, prompts: Callable[[int], list[int]], pad_id: int,
                   cfg_weight: float, temperature: float, seed: int) -> Workload:
    """Request i: `spec.images` images of `prompts(i)` with seed `seed + i`."""
    def submit(i: int) -> Request:
        params = SamplingParams(temperature=temperature, cfg_weight=cfg_weight, seed=seed + i)
        return m.engine.submit_images(prompts(i), pad_id, spec.images, params)

    def decode(tokens) -> object:
        return m.step_backend.decode_pixels(tokens.to(m.device))

    return Workload(spec, submit, decode if spec.decode else None)


def chat_workload(m: Janus, spec: ArrivalSpec, request: TextRequest, placeholder: int) -> Workload:
    """Request i: a greedy answer of exactly `spec.new_tokens` tokens to `request` (EOS unreachable)."""
    params = SamplingParams(temperature=0.0, max_new_tokens=spec.new_tokens)

    def submit(i: int) -> Request:
        return m.engine.submit_text(request.ids, request.pixel_values, UNREACHABLE_EOS, placeholder, params)

    return Workload(spec, submit)


async def _client(w: Workload, rec: Record, t0: float, gate: asyncio.Semaphore | None,
                  pool: ThreadPoolExecutor) -> None:
    spec = w.spec
    if gate is not None:
        await gate.acquire()
    try:
        if spec.rate is not None:
            await asyncio.sleep(max(0.0, t0 + rec.index / spec.rate - time.perf_counter()))
        rec.sent = time.perf_counter()
        rec.request = req = w.submit(rec.index)
        if spec.kind == "chat":
            async for _ in req.astream():
                if rec.first_token is None:
                    rec.first_token = time.perf_counter()
        out = await req
        if spec.kind == "image":
            if w.decode is not None:
                await asyncio.get_running_loop().run_in_executor(pool, w.decode, out)
            rec.work = int(out.shape[0])
        else:
            rec.work = len(out[0])
        rec.done = time.perf_counter()
    except asyncio.CancelledError:
        if rec.request is not None:
            rec.request.cancel()  # the time bound: free its rows at the next step boundary
        raise
    except Exception as e:  # noqa: BLE001 - a failed request is counted, the run goes on
        rec.error = f"{type(e).__name__}: {e}"
    finally:
        if gate is not None:
            gate.release()


async def _drive(w: Workload, timeout_s: float) -> tuple[list[Record], float, bool]:
    """Send the workload's requests; (records, t0, whether the time bound stopped the run)."""
    spec = w.spec
    records = [Record(i) for i in range(spec.requests)]
    gate = asyncio.Semaphore(spec.in_flight) if spec.rate is None else None
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-vq") as pool:
        tasks = [asyncio.ensure_future(_client(w, rec, t0, gate, pool)) for rec in records]
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return records, t0, bool(pending)


def drive(m: Janus, w: Workload, timeout_s: float) -> tuple[list[Record], float, bool]:
    """Run the clients on a fresh event loop in this thread, then wait until the engine is idle again
    (cancelled requests leave it at its next step boundary). Returns `_drive`'s tuple."""
    records, t0, timed_out = asyncio.run(_drive(w, timeout_s))
    deadline = time.perf_counter() + DRAIN_S
    while time.perf_counter() < deadline:
        stats = m.stats()
        if (stats["active_rows"] == 0 and stats["queued_requests"] == 0
                and all(r.request is None or r.request.done() for r in records)):
            break
        time.sleep(0.005)
    return records, t0, timed_out


def warm_buckets(m: Janus, w: Workload) -> int:
    """Run every batch size the run can reach (powers of two requests, and the most in flight) for a few
    steps, then cancel: compilation, autotuning and graph capture happen here. Returns batches run."""
    spec = w.spec
    cap = min(spec.in_flight, max(m.engine.max_rows // spec.rows_per_request, 1))
    sizes = sorted({2 ** k for k in range(cap.bit_length()) if 2 ** k <= cap} | {cap})
    for k in sizes:
        requests = submit_together(m.engine, [lambda i=i: w.submit(i) for i in range(k)])
        deadline = time.perf_counter() + 600.0
        while time.perf_counter() < deadline and not all(
                r.done() or (r.groups and all(g.steps_done >= WARM_STEPS for g in r.groups)) for r in requests):
            time.sleep(0.001)
        for r in requests:
            r.cancel()
        for r in requests:
            while not r.done() and time.perf_counter() < deadline:
                time.sleep(0.001)
    return len(sizes)


def _reset_peak_rows(m: Janus) -> None:
    """Start the engine's `peak_rows` afresh so that it covers the measured run only (not the warm-up)."""
    m.engine.reset_peak_rows()


def _unit(spec: ArrivalSpec) -> str:
    return "img/s" if spec.kind == "image" else "tok/s"


def run_arrivals(m: Janus, w: Workload, repeats: int = 1) -> dict:
    """Warm-up, the solo reference, then the arrival run of `w.spec`; a JSON-ready dict (see the module doc)."""
    spec = w.spec
    t = time.perf_counter()
    warm_batches = warm_buckets(m, w)
    if w.decode is not None:  # the VQ decoder's first call (allocator, cuDNN algorithm search) is warm-up too
        w.decode(torch.zeros(spec.images, m.config.image_tokens_per_image, dtype=torch.long))
    warmup_s = time.perf_counter() - t

    solo_records = []
    solo_steps = []
    for _ in range(max(repeats, 1)):
        before = m.stats()["decode_steps"]
        alone = ArrivalSpec(1, spec.kind, None, 1, spec.images, spec.new_tokens, SOLO_TIMEOUT_S, spec.decode)
        recs, _, _ = drive(m, Workload(alone, w.submit, w.decode), SOLO_TIMEOUT_S)
        if recs[0].latency is None:
            raise RuntimeError(f"{m.backend}: the solo reference request did not finish: {recs[0].error or 'timeout'}")
        solo_records.append(recs[0])
        solo_steps.append(m.stats()["decode_steps"] - before)
    solo_records.sort(key=lambda r: r.latency)
    solo = solo_records[(len(solo_records) - 1) // 2]
    solo_tput = solo.work / solo.latency

    _reset_peak_rows(m)
    before = m.stats()
    records, t0, timed_out = drive(m, w, spec.timeout_s)
    after = m.stats()
    done = [r for r in records if r.done is not None]
    sent = [r for r in records if r.sent is not None]
    end = max((r.done for r in done), default=time.perf_counter())
    wall = end - min((r.sent for r in sent), default=t0)
    work = sum(r.work for r in done)
    cancelled = sum(1 for r in sent if r.done is None and r.error is None)
    throughput = work / wall if wall > 0 and done else 0.0
    latencies = [r.latency for r in done]
    ttfts = [r.ttft for r in sent if r.ttft is not None]
    steps = after["decode_steps"] - before["decode_steps"]
    return {
        "backend": m.backend,
        "kind": spec.kind,
        "mode": spec.mode,
        "rate_rps": spec.rate,
        "concurrency": spec.in_flight if spec.rate is None else None,
        "requests": spec.requests,
        "images_per_request": spec.images if spec.kind == "image" else None,
        "new_tokens": spec.new_tokens if spec.kind == "chat" else None,
        "vq_decode_included": spec.decode if spec.kind == "image" else None,
        "timeout_s": spec.timeout_s,
        "sent": len(sent),
        "completed": len(done),
        "cancelled": cancelled,
        "failed": sum(1 for r in records if r.error is not None),
        "not_sent": spec.requests - len(sent),
        "timed_out": timed_out,
        "errors": sorted({r.error for r in records if r.error})[:3],
        "warmup_s": warmup_s,
        "warmup_batches": warm_batches,
        "wall_s": wall,
        "throughput": throughput,
        "throughput_unit": _unit(spec),
        "images_per_s": throughput if spec.kind == "image" else None,
        "tokens_per_s": throughput if spec.kind == "chat" else None,
        "requests_per_s": len(done) / wall if wall > 0 and done else 0.0,
        "latency_s": summarize(latencies),
        "ttft_s": summarize(ttfts) if spec.kind == "chat" else None,
        "decode_steps": steps,
        "peak_rows": after["peak_rows"],
        "max_rows": after["max_rows"],
        "finished_requests": after["finished_requests"] - before["finished_requests"],
        "solo": {"latency_s": solo.latency, "ttft_s": solo.ttft, "decode_steps": statistics.median(solo_steps),
                 "throughput": solo_tput, "repeats": len(solo_records)},
        "sequential_decode_steps": statistics.median(solo_steps) * len(done),
        "sequential_s": solo.latency * len(done),
        "speedup_vs_solo": throughput / solo_tput if solo_tput > 0 and done else None,
    }
