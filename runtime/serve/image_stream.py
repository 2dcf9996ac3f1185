"""`ImageStream`: the server-sent events of an image request sent with `"stream": true` (OpenAI's images API shape).

Each event is `event: <type>` then `data: <json>` (the JSON carries the same `type`; responses.py describes them):
    image_generation.partial_image  a preview of one image, sent as soon as the engine has taken it (never held
                                    back until the end: the image is still being drawn when its preview is sent)
    janus_rt.progress               with progress_events: an image's drawn token rows whenever they change (polled
                                    every POLL_S), and once per image while the request waits for KV rows
    image_generation.completed      one per image once the job has ended: the very image a non-streamed request
                                    gets, and the request's usage
    error                           the request failed mid-way; the stream ends after it
The job is watched as a non-streamed one is (waiting.py, shutdown.py): a client that goes away cancels it (the
engine frees its rows at the next step), the request timeout cancels it and sends an error event (504's body), a
shutdown's cut sends an error event (503 shutting_down), an engine failure sends its error. Image files are
encoded in a worker thread, never on the event loop; a served stream is counted in the metrics as a non-streamed
request is (the route's `served` callback).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from janus_rt.engine import EngineError
from janus_rt.jobs import ImageResult
from janus_rt.serve.errors import APIError
from janus_rt.serve.image_formats import image_b64
from janus_rt.serve.metrics import ServerMetrics
from janus_rt.serve.responses import images_usage, sse_event
from janus_rt.serve.shutdown import InFlight, shutting_down_error
from janus_rt.serve.waiting import engine_failure, wait_for_disconnect

POLL_S = 0.1  # how often progress is read (with progress_events)


@dataclass(frozen=True)
class StreamShape:
    """What every event of one stream repeats, and what it needs to build them."""

    size: str  # "SxS", the model's image size
    output_format: str  # "png", "jpeg" or "webp"
    compression: int | None  # quality of a jpeg / webp file
    multiple: bool  # n > 1: events carry `image_index`
    rows: int  # token rows of one image (the model's grid)
    progress_events: bool  # send janus_rt.progress events
    prompt_tokens: int  # the usage's input tokens
    route: str  # the route, for the shutdown log


@dataclass(frozen=True)
class StreamGuards:
    """The server's watch over a running job: shutdown cuts, metrics, timeout, engine health, and what to count
    once the stream is served."""

    in_flight: InFlight
    metrics: ServerMetrics
    timeout_s: float | None
    engine_alive: Callable[[], bool]
    served: Callable[[ImageResult], None]  # counts a served request (images, latency, tokens)


class ImageStream:
    """The events of one streamed image job (see module docstring): iterate `events()`."""

    def __init__(self, job: Any, request: Request, shape: StreamShape, guards: StreamGuards):
        self.job = job  # janus_rt.jobs.ImageJob
        self.request = request
        self.shape = shape
        self.guards = guards
        self._queued_sent = False
        self._rows_sent: list[int] | None = None

    async def events(self) -> AsyncIterator[bytes]:
        """Partial images (and progress) while the job runs, then one completed event per image, or an error."""
        loop = asyncio.get_running_loop()
        timeout = self.guards.timeout_s
        deadline = None if timeout is None else loop.time() + timeout
        watcher = asyncio.ensure_future(self._cancel_on_disconnect())
        self.guards.in_flight.add(self.job, self.request.state.request_id, self.shape.route)
        previews = self.job.apreviews().__aiter__()
        next_preview: asyncio.Future = asyncio.ensure_future(previews.__anext__())
        try:
            while True:
                for payload in self._progress():
                    yield sse_event(payload)
                wait_s = self._wait_s(deadline)
                done, _ = await asyncio.wait({next_preview}, timeout=wait_s)
                if next_preview in done:
                    try:
                        preview = next_preview.result()
                    except StopAsyncIteration:
                        break
                    except EngineError as e:
                        yield sse_event(error_event(engine_failure(e, self.guards.engine_alive())))
                        return
                    yield sse_event(await self._partial(preview))
                    next_preview = asyncio.ensure_future(previews.__anext__())
                elif deadline is not None and loop.time() >= deadline:
                    yield sse_event(error_event(self._timed_out()))
                    return
            for payload in self._progress():  # the rows of the last step
                yield sse_event(payload)
            job_task = asyncio.ensure_future(_awaited(self.job))
            try:
                result = await asyncio.wait_for(job_task, self._remaining(deadline))
            except asyncio.TimeoutError:
                yield sse_event(error_event(self._timed_out()))
                return
            except asyncio.CancelledError:
                if self.guards.in_flight.was_cut(self.job):  # the shutdown's grace period ended: say so, then end
                    yield sse_event(error_event(shutting_down_error()))
                    return
                if any(r.cancel_requested for r in self.job.requests):  # cancelled here (the client left)
                    return
                raise
            except EngineError as e:
                yield sse_event(error_event(engine_failure(e, self.guards.engine_alive())))
                return
            usage = images_usage(self.shape.prompt_tokens, result.tokens.numel())
            for index, image in enumerate(result.images):
                yield sse_event(await self._completed(index, image, usage))
            self.guards.served(result)
        finally:
            self.guards.in_flight.discard(self.job)
            watcher.cancel()
            if not next_preview.done():
                next_preview.cancel()
            if not self.job.done():
                self.job.cancel()

    # ----------------------------------------------------------------------------------------------- events
    def _common(self, kind: str, image_index: int, b64: str) -> dict:
        payload = {"type": kind, "b64_json": b64, "size": self.shape.size, "output_format": self.shape.output_format,
                   "created_at": int(time.time()), "background": "opaque", "quality": "auto"}
        if self.shape.multiple:
            payload["image_index"] = image_index
        return payload

    async def _encoded(self, image: np.ndarray) -> str:
        return await run_in_threadpool(image_b64, image, self.shape.output_format, self.shape.compression)

    async def _partial(self, preview: Any) -> dict:
        payload = self._common("image_generation.partial_image", preview.image_index,
                               await self._encoded(preview.image))
        payload["partial_image_index"] = preview.preview_index
        payload["rows_done"] = preview.rows_done
        return payload

    async def _completed(self, index: int, image: np.ndarray, usage: dict) -> dict:
        payload = self._common("image_generation.completed", index, await self._encoded(image))
        payload["usage"] = usage  # the whole request's, as the non-streamed body's
        return payload

    def _progress(self) -> list[dict]:
        """janus_rt.progress events for what changed since the last call (none without progress_events)."""
        if not self.shape.progress_events:
            return []
        rows_done = list(self.job.rows_done())
        if self.job.waiting():
            if self._queued_sent:
                return []
            self._queued_sent = True
            return [self._progress_event(i, done, queued=True) for i, done in enumerate(rows_done)]
        last = self._rows_sent
        self._rows_sent = rows_done
        return [self._progress_event(i, done, queued=False) for i, done in enumerate(rows_done)
                if last is None or done != last[i]]

    def _progress_event(self, image_index: int, rows_done: int, queued: bool) -> dict:
        return {"type": "janus_rt.progress", "image_index": image_index, "rows_done": rows_done,
                "rows": self.shape.rows, "queued": queued}

    # ---------------------------------------------------------------------------------------------- guards
    def _wait_s(self, deadline: float | None) -> float | None:
        """How long to wait for the next preview: until the next progress poll or the deadline."""
        remaining = self._remaining(deadline)
        if not self.shape.progress_events:
            return remaining
        return POLL_S if remaining is None else min(POLL_S, remaining)

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)

    def _timed_out(self) -> APIError:
        self.job.cancel()
        self.guards.metrics.cancelled.labels("timeout").inc()
        return APIError(504, f"the images did not finish within the server's request timeout "
                             f"({self.guards.timeout_s:g} s) and were cancelled; ask for fewer images or retry when "
                             "the server is less busy", code="timeout")

    async def _cancel_on_disconnect(self) -> None:
        await wait_for_disconnect(self.request)
        if not self.job.done():
            self.job.cancel()
            self.guards.metrics.cancelled.labels("client_disconnected").inc()


def error_event(error: APIError) -> dict:
    """An `error` event: the error body of `error` (errors.py) with its type."""
    return {"type": "error", **error.body()}


async def _awaited(job: Any) -> ImageResult:
    return await job
