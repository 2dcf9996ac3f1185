"""How uvicorn runs the app: its options (`uvicorn_options`) and an HTTP/1.1 protocol with a header read timeout.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`) and the size of unfinished headers
(`h11_max_incomplete_event_size`), but not how long headers may take: a client that opens a connection and
trickles a byte now and then holds it forever. `HeaderTimeoutProtocol` closes a connection whose request headers
are not complete `header_timeout_s` after it opened (or after its previous answer). The body is bounded by
body.py's per-piece read timeout; a slow reader of a long answer is not bounded here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from janus_rt.serve.settings import ServeSettings
from janus_rt.serve.shutdown import InFlight

MAX_HEADER_BYTES = 64 * 1024  # a request's headers larger than this are refused (400) by h11
CUT_MARGIN_S = 10.0  # uvicorn's own cancel (a backstop) waits this long after the grace period's cut


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers do not arrive in time."""

    header_timeout_s = 30.0  # set per server by `with_header_timeout`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request on this connection gets the same bound

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no complete request yet
            self.transport.close()


def with_header_timeout(header_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """A `HeaderTimeoutProtocol` class bound to `header_timeout_s` (uvicorn builds one instance per connection)."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": header_timeout_s})


def uvicorn_options(settings: ServeSettings, cut_margin_s: float = 0.0) -> dict[str, Any]:
    """`uvicorn.Config` keyword arguments for `settings` (the app, log level and sockets are the caller's);
    `cut_margin_s`: with a `CuttingServer`, how long uvicorn waits after the cut before cancelling tasks itself."""
    return {"http": with_header_timeout(settings.read_timeout_s), "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
            "timeout_graceful_shutdown": settings.grace_period_s + cut_margin_s, "access_log": False}


class CuttingServer(uvicorn.Server):
    """uvicorn's server that, once a shutdown's grace period is over, cuts the app's in-flight requests (shutdown.py)
    so each gets its answer (503 / an SSE error event); `cut_count` says how many were cut."""

    def __init__(self, config: uvicorn.Config, in_flight: InFlight, grace_period_s: float):
        super().__init__(config)
        self.in_flight = in_flight
        self.grace_period_s = grace_period_s
        self.cut_count = 0

    async def shutdown(self, sockets: Any = None) -> None:
        timer = asyncio.get_running_loop().call_later(self.grace_period_s, self._cut)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()

    def _cut(self) -> None:
        self.cut_count += self.in_flight.cut(self.grace_period_s)
