"""`read_json`: a POST route's body as JSON, read with every bound the server sets.

In order: the Content-Type must be `application/json` (415, browser.py's `require_json`), a declared length over
the limit is refused before reading (413), each piece of the body must arrive within the read timeout (408: a
client that announces 1,000 bytes and sends 12 does not hold a connection forever), the counted size stays under
the limit (413), and the JSON is parsed off the event loop (400 when empty or malformed).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from janus_rt.serve.browser import require_json
from janus_rt.serve.errors import APIError, invalid


def _too_large(max_bytes: int, declared: int | None = None) -> APIError:
    size = "" if declared is None else f" {declared:,} bytes,"
    return APIError(413, f"the request body is{size} over the server's limit of {max_bytes:,} bytes; send smaller "
                         "images or fewer of them", code="body_too_large")


async def read_body(request: Request, max_bytes: int, read_timeout_s: float) -> bytes:
    """The raw body: 413 past `max_bytes`, 408 when a piece takes longer than `read_timeout_s` to arrive."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes, int(declared))
    chunks, size = [], 0
    pieces = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(pieces.__anext__(), read_timeout_s)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise APIError(408, f"the request body did not arrive: nothing came for {read_timeout_s:g} s after "
                                f"{size:,} bytes; send the whole body at once", code="body_timeout",
                           headers={"Connection": "close"}) from None
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int, read_timeout_s: float) -> Any:
    """The body as JSON (see module docstring)."""
    require_json(request)
    raw = await read_body(request, max_bytes, read_timeout_s)
    if not raw.strip():
        raise invalid("the request body is empty; send a JSON object", code="invalid_json")
    try:
        return await run_in_threadpool(json.loads, raw)  # up to the body limit: never parse on the event loop
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise invalid(f"the request body is not valid JSON ({e})", code="invalid_json") from None
    except RecursionError:
        raise invalid("the request body nests JSON too deeply; a request is a flat object with short lists",
                      code="invalid_json") from None
