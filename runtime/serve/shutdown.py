"""`InFlight`: the jobs a server is running, so a shutdown can cut those still running when its grace period ends.

On SIGTERM the server stops accepting and lets in-flight requests finish for `--grace-period` seconds; then
`cut()` cancels every job still running (the engine frees its rows), logs one line per request, and the handlers
answer: a plain request with a JSON 503 (code `shutting_down`), a stream with an SSE error event then `[DONE]`.
The CLI reports how many were cut (connection.py's `CuttingServer` calls `cut()` when the grace period ends).
"""

from __future__ import annotations

import logging
from typing import Any

from janus_rt.serve.errors import APIError

LOG = logging.getLogger("janus_rt.serve")


def shutting_down_error() -> APIError:
    return APIError(503, "the server is shutting down and this request was still running when its grace period "
                         "ended; it was cancelled: retry it against another server or after the restart",
                    code="shutting_down")


class InFlight:
    """The running jobs of one app, by a key per request (see module docstring)."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[Any, str, str]] = {}  # id(job) -> (job, request id, route)
        self._cut: set[int] = set()
        self.cutting = False

    def add(self, job: Any, request_id: str, route: str) -> None:
        self._running[id(job)] = (job, request_id, route)

    def discard(self, job: Any) -> None:
        self._running.pop(id(job), None)

    def was_cut(self, job: Any) -> bool:
        return id(job) in self._cut

    def cut(self, grace_period_s: float) -> int:
        """Cancel every job still running; returns how many were cut."""
        self.cutting = True
        count = 0
        for key, (job, request_id, route) in list(self._running.items()):
            if job.done():
                continue
            self._cut.add(key)
            job.cancel()
            count += 1
            LOG.warning("cut request_id=%s route=%s: still running when the shutdown grace period (%g s) ended; "
                        "answered 503 shutting_down", request_id, route, grace_period_s)
        return count
