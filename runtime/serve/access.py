"""`ResponseCounter`: the outermost ASGI middleware. It counts every answer by route and status and writes one
access-log line per request.

An exception that escapes the app (a fault outside the route handlers' own error handling) is answered 500 by
starlette's outermost error middleware, after this one has seen it pass: it is counted and logged here as a 500.
The access log (logger `janus_rt.access`, INFO) has one line per request:
`request_id=3f2a... route=/v1/chat/completions status=200 latency_ms=812.4 tokens=37` (tokens: answer tokens,
`-` when none). The request id comes from the client's `X-Request-Id` header when it sends one (else a fresh one)
and is sent back in the answer's `X-Request-Id`.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from janus_rt.serve.metrics import ServerMetrics

ACCESS_LOG = logging.getLogger("janus_rt.access")
MAX_CLIENT_ID = 64  # a longer X-Request-Id from the client is replaced by our own


def route_label(path: str, routes: tuple[str, ...], models_route: str, model_route: str) -> str:
    """The metrics label of `path`: a known route, `model_route` for every /v1/models/<id>, else "other"."""
    return path if path in routes else model_route if path.startswith(models_route + "/") else "other"


def request_id(scope: Scope) -> str:
    sent = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1").strip()
    return sent if sent and len(sent) <= MAX_CLIENT_ID and sent.isprintable() else uuid.uuid4().hex


class ResponseCounter:
    """ASGI middleware: counts every answer by route and status and logs it (see module docstring)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, label: Callable[[str], str]):
        self.app = app
        self.metrics = metrics
        self.label = label  # path -> route label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = self.label(scope["path"])
        rid = request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                self.metrics.responses.labels(route, str(message["status"])).inc()
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            if not status:  # answered 500 by starlette's error middleware, outside this one
                status.append(500)
                self.metrics.responses.labels(route, "500").inc()
            raise
        finally:
            tokens = state.get("tokens")
            ACCESS_LOG.info("request_id=%s route=%s status=%s latency_ms=%.1f tokens=%s", rid, route,
                            status[0] if status else "-", (time.perf_counter() - started) * 1000,
                            "-" if tokens is None else tokens)
