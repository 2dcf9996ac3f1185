"""Awaiting a job in a request handler: under the request timeout, and cancelled when the client goes away.

Either way the job is cancelled, so the engine frees its rows at the next step boundary; the outcome is
counted in the metrics. A job that fails because the engine died is a 503 (the engine takes no more work);
one that fails alone (a fault in its own step) is a 500 and the engine goes on.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import CancelledError as FutureCancelledError
from typing import Any, Awaitable, Callable

from starlette.requests import Request

from janus_rt.engine import EngineError
from janus_rt.serve.errors import APIError
from janus_rt.serve.metrics import ServerMetrics


class ClientGone(Exception):
    """The client disconnected before its answer was ready (nothing is sent back)."""


async def wait_for_disconnect(request: Request) -> None:
    """Return once the client has closed the connection (call after the body was read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _consume(task: asyncio.Future) -> None:
    """Retrieve a finished task's outcome so asyncio never warns that it was lost."""
    if not task.cancelled():
        task.exception()


async def await_job(job: Any, request: Request, timeout_s: float | None, metrics: ServerMetrics,
                    engine_alive: Callable[[], bool]) -> Any:
    """`await job` unless the timeout passes (504) or the client disconnects (ClientGone); both cancel the job."""
    job_task = asyncio.ensure_future(_awaited(job))
    gone_task = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        done, _ = await asyncio.wait({job_task, gone_task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this handler is cancelled (e.g. the shutdown grace period ran out)
        gone_task.cancel()
        gone_task.add_done_callback(_consume)
        if not job_task.done():
            job.cancel()  # the engine frees the rows; the task then ends on its own
            job_task.add_done_callback(_consume)
    if job_task in done:
        return outcome(job_task, engine_alive)
    if gone_task in done:
        metrics.cancelled.labels("client_disconnected").inc()
        raise ClientGone()
    metrics.cancelled.labels("timeout").inc()
    raise APIError(504, f"the request did not finish within the server's request timeout ({timeout_s:g} s) and was "
                        "cancelled; ask for less work (fewer images or tokens) or retry when the server is less busy",
                   code="timeout")


async def _awaited(job: Awaitable) -> Any:
    return await job


def outcome(task: asyncio.Future, engine_alive: Callable[[], bool]) -> Any:
    """A finished job task's result, or its failure as an APIError."""
    try:
        return task.result()
    except (asyncio.CancelledError, FutureCancelledError):
        raise APIError(503, "the request was cancelled by the server (it is shutting down or its engine stopped)",
                       code="cancelled") from None
    except EngineError as e:
        raise engine_failure(e, engine_alive()) from None


def engine_failure(error: EngineError, alive: bool) -> APIError:
    if not alive:
        return APIError(503, f"the engine stopped while running this request ({error}); the server must be restarted",
                        code="engine_unavailable")
    return APIError(500, f"the engine failed on this request ({error}); the engine goes on, the request may be retried",
                    code="engine_error")
