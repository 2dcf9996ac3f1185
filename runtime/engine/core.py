"""The engine: the one request loop of janus-rt. Requests arrive from any thread; one engine thread steps them.

Loop (one iteration = one step boundary):
    1. take new requests from the inbox; drop cancelled ones (their rows are freed now)
    2. admit waiting groups, first come first served, while their rows fit the pool: prefill each
    3. one decode step for every admitted group: image rows and text rows share it
    4. read text tokens back every `backend.sync_every` steps: EOS, streaming; snapshot image tokens where a
       preview is due (a copy on the device, never a wait: `PreviewSnapshot`); retire finished groups
    5. mark the step; wait until at most MAX_STEPS_IN_FLIGHT - 1 steps are still running on the device
A request never depends on its companions: a group's rows run the same arithmetic alone or in a batch,
and its random draws are keyed by its own seed (see README, "Batch invariance").

The engine thread is the only thread that touches the KV cache, the CUDA graphs or the Triton kernels, so
concurrent callers are safe on every backend. It starts at the first submission and stops with `close()`
(or at interpreter exit: it is a daemon thread); it also exits after IDLE_EXIT_S seconds without work, so
an unused model holds no thread and can be garbage-collected. So "alive" (`alive`, `health()`, what a
server's health check asks) means: not closed and the loop has not died, whether or not a thread runs now.
A failing request never ends the loop (it fails alone); should the loop itself die (a bug outside the
guarded work), every pending request fails with EngineError and new submissions are refused at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict
from typing import Iterator, Sequence

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.errors import InputError
from janus_rt.timing import PhaseTimer
from janus_rt.engine.params import SamplingParams
from janus_rt.engine.capacity import RowCapacity
from janus_rt.model.cfg_rows import images_in_rows
from janus_rt.engine.pool import EngineConfig, RowPool, plan_rows
from janus_rt.engine.primitives import StepBackend, StepMarker, step_marker_source
from janus_rt.engine.request import EngineStats, Group, PreviewSnapshot, Request


IDLE_EXIT_S = 5.0  # an engine thread with nothing to do for this long exits; the next submission starts one
MAX_STEPS_IN_FLIGHT = 3
"""Most decode steps enqueued on the device and not yet run, each time the engine enqueues one.

A step's work is enqueued asynchronously (a CUDA-graph replay returns at once), and an image-only batch reads
nothing back until an image ends, so without a bound the host would enqueue hundreds of steps ahead of the
GPU: a request arriving then would join only after that backlog ran, and cancellation, timeouts and VQ decodes
(queued on the same stream) would wait behind it. So after enqueuing step n the engine waits until step
n - MAX_STEPS_IN_FLIGHT + 1 has run (`step_marker_source`). 3 keeps two steps queued behind the running one: a
host pause of up to two steps (an eager prefill's launches, a garbage collection) leaves the GPU busy, while a
new request, a cancellation or a VQ decode waits at most 3 steps (a few milliseconds) for the device. 1 would
idle the GPU at every boundary; 2 leaves one step of slack. Where steps run synchronously (CPU) nothing waits.
"""
log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine failed while running a request (the message names the phase and the cause)."""


class Engine:
    """Continuous batching over a `StepBackend` (see the module docstring)."""

    def __init__(self, backend: StepBackend, config: EngineConfig | None = None):
        self.backend = backend
        self.config = config or EngineConfig()
        rows, seq = plan_rows(self.config, backend.cfg.llm, backend.device, backend.dtype)
        self.pool = RowPool(rows, seq)
        backend.allocate(rows, seq)
        self.timer: PhaseTimer | None = None  # benchmarks: marks "prefill" per group and "decode" per step
        self._stats = EngineStats()
        self._cv = threading.Condition()
        self._inbox: list[Request] = []
        self._waiting: deque[Group] = deque()
        self._active: list[Group] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._crash: BaseException | None = None  # why the loop died, if it did (then the engine takes no work)
        self._steps_since_sync = 0
        self._mark_step = step_marker_source(backend)  # None: steps are synchronous, nothing to bound
        self._max_in_flight = MAX_STEPS_IN_FLIGHT
        self._in_flight: deque[StepMarker] = deque()  # markers of the steps that may still run, oldest first

    @property
    def cfg(self) -> JanusConfig:
        return self.backend.cfg

    @property
    def max_rows(self) -> int:
        return self.pool.rows

    @property
    def max_seq_len(self) -> int:
        return self.pool.max_seq_len

    @property
    def capacity(self) -> RowCapacity:
        """The one capacity check of every request path (`RowCapacity`: row size and model context)."""
        return RowCapacity(self.max_seq_len, self.cfg.llm.max_position_embeddings)

    @property
    def images_per_group(self) -> int:
        """Most images admitted as one group (2 rows each): a larger request runs in waves of this size."""
        return images_in_rows(self.pool.rows)

    # ------------------------------------------------------------------------------------- submission
    def submit_images(self, prompt_ids: list[int], pad_id: int, num_images: int, params: SamplingParams,
                      negative_ids: list[int] | None = None, preview_steps: Sequence[int] = ()) -> Request:
        """Queue `num_images` images of one prompt (ids end with `<begin_of_image>`); returns at once.

        `negative_ids`: the unconditional rows' own prompt (formatted like the prompt) instead of the pad-filled
        copy; `preview_steps`: tokens per image (increasing, each in [1, grid*grid)) at which to snapshot them."""
        steps = self.cfg.image_tokens_per_image
        self.capacity.check_image(len(prompt_ids), steps)
        if negative_ids is not None:
            self.capacity.check_image(len(negative_ids), steps, field="negative_prompt")
        points = list(preview_steps)
        if points != sorted(set(points)) or any(not 1 <= p < steps for p in points):
            raise InputError(f"preview steps must increase within [1, {steps}), got {points}", param="partial_images")
        if self.max_rows < 2:
            words = self.config.spelling
            raise InputError(f"one image needs 2 KV rows but the engine has {words.setting('max_rows', self.max_rows)}; "
                             f"raise {words.name('max_rows')}", param="max_rows")
        request = Request("image", prompt_ids, params, max_steps=steps, num_images=num_images, pad_id=pad_id,
                          seed=self._seed(params), negative_ids=negative_ids, preview_steps=tuple(points))
        per = self.images_per_group
        request.groups = [Group(request, images=min(per, num_images - first), first_image=first, index=i)
                          for i, first in enumerate(range(0, num_images, per))]
        return self._enqueue(request)

    def submit_text(self, ids: list[int], pixel_values: torch.Tensor | None, eos_id: int, placeholder_id: int,
                    params: SamplingParams) -> Request:
        """Queue one answer to `ids` (placeholders expanded; `pixel_values` fill the `placeholder_id` runs)."""
        self.capacity.check_text(len(ids), params.max_new_tokens)
        request = Request("text", ids, params, max_steps=params.max_new_tokens, pixel_values=pixel_values,
                          eos_id=eos_id, placeholder_id=placeholder_id, seed=self._seed(params))
        request.groups = [Group(request, images=1, first_image=0, index=0)]
        return self._enqueue(request)

    @staticmethod
    def _seed(params: SamplingParams) -> int:
        """The request's seed: as given, or a fresh one from torch's global generator (so manual_seed repeats runs)."""
        return params.seed if params.seed is not None else int(torch.randint(0, 2**62, (1,)).item())

    def _enqueue(self, request: Request) -> Request:
        request._groups_left = len(request.groups)
        request._wake = self._wake
        with self._cv:
            if self._closing:
                raise EngineError("the engine is closed")
            if self._crash is not None:
                raise EngineError(f"the engine loop died ({type(self._crash).__name__}: {self._crash}); "
                                  "reload the model")
            self._inbox.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="janus-rt-engine", daemon=True)
                self._thread.start()
            self._cv.notify()
        return request

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    # -------------------------------------------------------------------------------------------- state
    @property
    def alive(self) -> bool:
        """True while the engine takes work: not closed and its loop has not died (an idle engine is alive)."""
        return not self._closing and self._crash is None

    def health(self) -> dict:
        """{"alive", "closed", "error" (why the loop died, or None), "thread_running"}; safe from any thread."""
        with self._cv:
            crash = self._crash
            return {"alive": not self._closing and crash is None, "closed": self._closing,
                    "error": None if crash is None else f"{type(crash).__name__}: {crash}",
                    "thread_running": self._thread is not None}

    def stats(self) -> dict:
        """Counters (see `EngineStats`) plus the pool's size; safe to call from any thread."""
        with self._cv:
            out = asdict(self._stats)
            out["queued_requests"] += len(self._inbox)
        out.update(max_rows=self.max_rows, max_seq_len=self.max_seq_len, images_per_group=self.images_per_group)
        return out

    @contextmanager
    def admit_together(self) -> Iterator[None]:
        """Requests submitted inside this block join the batch at the same step boundary.

        The engine thread waits at its next boundary until the block ends (keep the block short: only the
        submissions). Benchmarks use it to start a batch at once; the lock is reentrant, so `submit_*` work inside.
        """
        with self._cv:
            yield

    def reset_peak_rows(self) -> None:
        """Start `peak_rows` afresh (e.g. after a warm-up), so that it covers what runs from now on."""
        with self._cv:
            self._stats.peak_rows = 0

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the engine thread; requests still queued or running fail with EngineError."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --------------------------------------------------------------------------------------------- loop
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - the loop itself died: record it, fail what is pending
            log.exception("janus-rt engine loop died")
            with self._cv:
                self._crash = e
                self._thread = None
            self._fail_all(EngineError(f"the engine loop died: {type(e).__name__}: {e}"), cause=e)

    def _loop(self) -> None:
        if self.backend.device.type == "cuda":
            torch.cuda.set_device(self.backend.device)
        with torch.inference_mode():
            while True:
                with self._cv:
                    idle_since = time.monotonic()
                    while not (self._inbox or self._active or self._waiting or self._closing):
                        if time.monotonic() - idle_since > IDLE_EXIT_S:
                            self._thread = None  # idle: let the thread go (the next submission starts another)
                            return
                        self._cv.wait(IDLE_EXIT_S)
                    if self._closing:
                        break
                    for request in self._inbox:
                        self._waiting.extend(request.groups)
                    self._inbox.clear()
                    self._count_waiting()
                try:
                    self._drop_cancelled()
                    self._admit()
                    if self._active:
                        self._step()
                except Exception as e:  # noqa: BLE001 - a bug or a device fault outside a step: fail what runs, go on
                    self._fail_all(EngineError(f"the engine loop failed: {type(e).__name__}: {e}"), cause=e)
                self._count()
        self._fail_all(EngineError("the engine was closed before this request finished"))

    def _count(self) -> None:
        with self._cv:
            self._stats.active_rows = sum(g.rows for g in self._active)
            self._count_waiting()

    def _count_waiting(self) -> None:
        """queued_requests = requests with a group waiting for rows (call holding the lock)."""
        self._stats.queued_requests = len({g.request.id for g in self._waiting})

    def _drop_cancelled(self) -> None:
        for g in [g for g in self._active if g.request.cancel_requested]:
            self._retire(g)
        kept = deque(g for g in self._waiting if not g.request.cancel_requested)
        for g in self._waiting:
            if g.request.cancel_requested and g.request.group_finished():
                self._finish(g.request)
        self._waiting = kept

    def _admit(self) -> None:
        while self._waiting:
            group = self._waiting[0]
            first = self.pool.allocate(group.rows)
            if first is None:
                return  # first come first served: later groups wait behind it
            self._waiting.popleft()
            group.first_row = first
            group.request.admitted_at = group.request.admitted_at or time.monotonic()
            with self._cv:
                self._active.append(group)
                self._count_waiting()
            try:
                self.backend.prefill(group)
            except Exception as e:  # noqa: BLE001 - the request fails, the engine goes on
                self._fail(group.request, EngineError(f"prefill failed: {type(e).__name__}: {e}"), e)
                continue
            group.steps_done = 1
            group.request.first_token_at = group.request.first_token_at or time.monotonic()
            self._stats.prefills += 1
            self._stats.tokens_sampled += group.images
            if self.timer is not None:
                self.timer.mark("prefill")
            self._collect(group, sync=True)

    def _step(self) -> None:
        batch = list(self._active)
        try:
            self.backend.decode(batch)
        except Exception as e:  # noqa: BLE001 - a failed step fails the requests in it, not the engine
            error = EngineError(f"decode step failed: {type(e).__name__}: {e}")
            for request in {g.request.id: g.request for g in batch}.values():
                self._fail(request, error, e)
            return
        rows = 0
        for g in batch:
            g.steps_done += 1
            rows += g.rows
            self._stats.tokens_sampled += g.images
        with self._cv:
            self._stats.decode_steps += 1
            self._stats.peak_rows = max(self._stats.peak_rows, rows)
        if self.timer is not None:
            self.timer.mark("decode")
        self._steps_since_sync += 1
        sync = self._steps_since_sync >= self.backend.sync_every
        if sync:
            self._steps_since_sync = 0
        for g in batch:
            self._collect(g, sync)
        if self._mark_step is not None:
            self._bound_in_flight()

    def _bound_in_flight(self) -> None:
        """Mark the step just enqueued; wait until fewer than MAX_STEPS_IN_FLIGHT steps may still be running.

        Called at the end of a step, so the next boundary (new requests, cancellations) is decided when the device
        is at most MAX_STEPS_IN_FLIGHT - 1 steps behind, and the next step makes it at most MAX_STEPS_IN_FLIGHT.
        """
        self._in_flight.append(self._mark_step())
        while len(self._in_flight) >= self._max_in_flight:
            self._in_flight.popleft().synchronize()

    def _collect(self, group: Group, sync: bool) -> None:
        """Read tokens back where due; retire the group when it is done (all tokens, or EOS)."""
        request = group.request
        done = group.done
        if request.kind == "text" and (sync or done) and group.fetched < group.steps_done:
            new = self.backend.read_tokens(group, group.fetched, group.steps_done)[0].tolist()
            group.fetched = group.steps_done
            done = request.publish_text(new) or done
        if not done:
            if request.preview_steps:
                self._snapshot_previews(group)
            return
        if request.kind == "image":
            tokens = self.backend.read_tokens(group, 0, group.max_steps)
            request.image_tokens[group.first_image:group.first_image + group.images] = tokens
        self._retire(group)

    def _snapshot_previews(self, group: Group) -> None:
        """Publish a snapshot of the group's tokens where a preview is due: a copy enqueued on the device and a
        marker after it, so the engine goes on at once; whoever renders it waits for the marker in its own thread."""
        points = group.request.preview_steps
        while group.previews_taken < len(points) and group.steps_done >= points[group.previews_taken]:
            steps = points[group.previews_taken]
            tokens = self.backend.snapshot_tokens(group, steps)  # [images, steps]
            marker = self._mark_step() if self._mark_step is not None else None
            group.request.publish_preview(PreviewSnapshot(group.first_image, group.previews_taken, steps, tokens,
                                                          marker))
            group.previews_taken += 1

    def _retire(self, group: Group) -> None:
        """Free the group's rows; finish its request when it was the last group."""
        with self._cv:
            if group in self._active:
                self._active.remove(group)
        self.backend.release(group)
        self.pool.free(group.first_row, group.rows)
        if group.request.group_finished():
            self._finish(group.request)

    def _finish(self, request: Request, error: BaseException | None = None) -> None:
        if error is not None:
            self._stats.failed_requests += 1
        elif request.cancel_requested:
            self._stats.cancelled_requests += 1
        else:
            self._stats.finished_requests += 1
        request.finish(error)

    def _fail(self, request: Request, error: EngineError, cause: BaseException | None) -> None:
        """Drop every group of `request` (running or waiting) and resolve it with `error`."""
        if cause is not None:
            error.__cause__ = cause
        for g in request.groups:
            if g in self._active:
                with self._cv:
                    self._active.remove(g)
                self.backend.release(g)
                self.pool.free(g.first_row, g.rows)
        self._waiting = deque(g for g in self._waiting if g.request is not request)
        self._finish(request, error)

    def _fail_all(self, error: EngineError, cause: BaseException | None = None) -> None:
        with self._cv:
            pending = list(self._inbox)
            self._inbox.clear()
        requests = {g.request.id: g.request for g in [*self._active, *self._waiting]}
        requests.update({r.id: r for r in pending})
        for request in requests.values():
            try:
                self._fail(request, error, cause)
            except Exception:  # noqa: BLE001 - the request must still be resolved
                request.finish(error)
        with self._cv:
            self._active.clear()
            self._waiting.clear()
