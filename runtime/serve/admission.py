"""Admission: the engine's health and the bounded queue, checked in front of every submission.

`Admission.submit(fn)` runs `fn` (which queues work on the engine) only when the engine is alive (else 503)
and fewer than `max_queue` requests wait for KV rows (else 429 with Retry-After). The check and the submission
happen under one lock, so concurrent handlers cannot all pass a check that only one of them should: the
engine counts a submitted request as waiting at once. Call it from a worker thread (it tokenizes).
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from janus_rt.api import Janus
from janus_rt.engine import EngineError
from janus_rt.errors import InputError
from janus_rt.serve.errors import APIError, from_input_error

Job = TypeVar("Job")


class Admission:
    """Gatekeeper of one model's engine (see module docstring)."""

    def __init__(self, model: Janus, max_queue: int, retry_after_s: int):
        self.model = model
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()

    def check_alive(self) -> None:
        """503 when the engine takes no work (closed, or its loop died)."""
        health = self.model.engine.health()
        if not health["alive"]:
            why = "it was closed" if health["closed"] else f"its loop died ({health['error']})"
            raise APIError(503, f"the engine is not running: {why}; the server must be restarted",
                           code="engine_unavailable")

    def submit(self, fn: Callable[[], Job]) -> Job:
        with self._lock:
            self.check_alive()
            waiting = self.model.engine.stats()["queued_requests"]
            if waiting >= self.max_queue:
                raise APIError(429, f"the server is at capacity: {waiting} requests already wait for the engine "
                                    f"(--max-queue {self.max_queue}); retry in {self.retry_after_s} s",
                               code="queue_full", headers={"Retry-After": str(self.retry_after_s)})
            try:
                return fn()
            except InputError as e:
                raise from_input_error(e) from None
            except EngineError as e:  # closed or died between the check and the submission
                raise APIError(503, f"the engine is not running: {e}", code="engine_unavailable") from None
