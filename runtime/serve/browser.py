"""Browser hygiene: a web page must not be able to make a server on localhost work for it.

A browser sends `Origin` with every cross-origin request (and a "simple" POST, e.g. `text/plain`, goes out without
a preflight, so CORS headers alone would not stop it from running). `OriginGuard` refuses a request whose `Origin`
is neither the server's own nor listed in `--allow-origin` with a 403 before any work; CORS headers for the listed
origins come from starlette's `CORSMiddleware` (`cors_options`). POST bodies must be `application/json`
(`require_json`, 415 otherwise): no HTML form or `text/plain` body can reach the engine.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from janus_rt.serve.errors import APIError

JSON_MEDIA = "application/json"


def cors_options(allow_origins: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments of `CORSMiddleware`: the listed origins may call every route with a key and a JSON body."""
    return {"allow_origins": list(allow_origins), "allow_methods": ["GET", "POST"],
            "allow_headers": ["Authorization", "Content-Type"], "expose_headers": ["Retry-After", "X-Request-Id"],
            "max_age": 600}


def _own_origins(scope: Scope) -> set[str]:
    """The origins this request would have if a page served by this very server sent it."""
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1")
    return {f"{scheme}://{host}" for scheme in ("http", "https")} if host else set()


class OriginGuard:
    """ASGI middleware: 403 for a request carrying an `Origin` that is not this server's nor an allowed one."""

    def __init__(self, app: ASGIApp, allow_origins: tuple[str, ...]):
        self.app = app
        self.allow_all = "*" in allow_origins
        self.allowed = set(allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allow_all:
            origin = dict(scope.get("headers") or []).get(b"origin")
            if origin is not None:
                name = origin.decode("latin-1")
                if name not in self.allowed and name not in _own_origins(scope):
                    await _refuse(send, APIError(
                        403, f"requests from the web page origin {name!r} are refused: start the server with "
                             f"--allow-origin {name} to let that page call it", code="origin_not_allowed"))
                    return
        await self.app(scope, receive, send)


async def _refuse(send: Send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", JSON_MEDIA.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def require_json(request: Request) -> None:
    """415 unless the body is declared `application/json` (a charset parameter is fine)."""
    declared = request.headers.get("content-type")
    media = (declared or "").split(";", 1)[0].strip().lower()
    if media != JSON_MEDIA:
        shown = "no Content-Type" if declared is None else f"Content-Type {declared!r}"
        raise APIError(415, f"the request body must be JSON sent with 'Content-Type: application/json', got {shown}",
                       code="unsupported_media_type")
