"""`janus-rt bench-serve`: load on a running `janus-rt serve` over HTTP, level by level of concurrency.

For each concurrency level C, `run_load` sends `requests` requests with at most C in flight (C worker tasks
on one `httpx.AsyncClient`) and measures, per request, the end-to-end latency and for streamed chat the time
to the first content chunk (TTFT) and the completion tokens (from the usage chunk, else the content chunks).
The run is bounded in count and in time: every request has its own timeout, and a level that outlives its
time bound stops starting requests, cancels those in flight (counted as "timeout" errors) and moves on.

A level's result (a JSON-ready dict): requests planned, sent, ok, errors by kind (HTTP status as "429",
"timeout", "connect", "transport", "bad_response", "incomplete", or "stream:CODE" for an error event inside
a 200 stream; only kinds that occurred), wall seconds, requests/s and images/s or output tokens/s, latency
p50/p95/p99 in ms over the successful requests, and for chat the TTFT percentiles and the mean per-request
tokens/s (completion tokens / end-to-end latency). `serve_report.format_report` renders it.

Only loopback addresses are accepted unless `allow_remote` is set: a load test aimed at someone else's
server by a typo is a denial of service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence
from urllib.parse import urlsplit

import numpy as np
from tqdm.auto import tqdm

from janus_rt import __version__ as janus_rt_version
from janus_rt.errors import InputError

try:  # the `serve` extra; `require_httpx` says how to install it
    import httpx
except ImportError:  # pragma: no cover - exercised only without the extra
    httpx = None  # type: ignore[assignment]

KINDS = ("image", "chat")
IMAGES_ROUTE = "/v1/images/generations"
CHAT_ROUTE = "/v1/chat/completions"
PERCENTILES = (50, 95, 99)
HEALTH_TIMEOUT_S = 10.0
LOOPBACK_NAMES = ("localhost",)
IMAGE_PROMPTS = ("a red fox in the snow", "a lighthouse on a cliff at dusk, oil painting",
                 "a bowl of ramen, studio photo", "a city street in the rain at night, neon signs")
CHAT_PROMPTS = ("Describe a quiet beach at sunrise.", "Explain how a bicycle stays upright.",
                "Write a short poem about autumn leaves.", "What should I pack for a weekend hike?")


def require_httpx() -> None:
    """Raise InputError saying how to install httpx (the `serve` extra) when it is missing."""
    if httpx is None:
        raise InputError("bench-serve needs httpx, which is not installed: pip install 'janus-rt[serve]'")


# ------------------------------------------------------------------------------------------ checks
def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (the host part of a URL, brackets removed)."""
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, allow_remote: bool = False) -> str:
    """The server's base URL without a trailing slash; InputError (param --url) when it is unusable or remote."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise InputError(f"--url {url!r} is not a valid URL ({e}); pass e.g. http://127.0.0.1:8000", "--url") from None
    if parts.scheme not in ("http", "https"):
        raise InputError(f"--url {url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000", "--url")
    if not host:
        raise InputError(f"--url {url!r} names no host; pass e.g. http://127.0.0.1:8000", "--url")
    if not allow_remote and not is_loopback(host):
        raise InputError(f"--url {url!r} is not a loopback address (localhost, 127.0.0.0/8, ::1): bench-serve only "
                         "loads this machine's server by default; pass --allow-remote if you really mean to load "
                         f"{host}", "--url")
    return url.strip().rstrip("/")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of `values`, numpy's linear interpolation; None when `values` is empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q, method="linear"))


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """{"p50", "p95", "p99"} in milliseconds (None each when there is nothing to summarize)."""
    return {f"p{q}": None if (p := percentile(seconds, q)) is None else p * 1e3 for q in PERCENTILES}


@dataclass(frozen=True)
class LoadSpec:
    """What a bench-serve run sends (the CLI's flags); checked on creation, flags named in errors."""

    url: str
    kind: str = "image"
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    requests: int = 32  # per concurrency level
    timeout_s: float = 120.0  # per request
    max_seconds: float = 300.0  # per level
    n: int = 1  # images per image request
    max_tokens: int = 64  # per chat request
    api_key: str | None = None
    allow_remote: bool = False

    def __post_init__(self) -> None:
        check_url(self.url, self.allow_remote)
        if self.kind not in KINDS:
            raise InputError(f"--kind must be one of {', '.join(KINDS)}, got {self.kind!r}", "--kind")
        if not self.concurrency or any(c < 1 for c in self.concurrency):
            raise InputError(f"--concurrency needs levels >= 1 such as 1,4,16, got {self.concurrency}", "--concurrency")
        for flag, value in (("--requests", self.requests), ("--n", self.n), ("--max-tokens", self.max_tokens)):
            if value < 1:
                raise InputError(f"{flag} must be >= 1, got {value}", flag)
        for flag, value in (("--timeout", self.timeout_s), ("--max-seconds", self.max_seconds)):
            if not value > 0:
                raise InputError(f"{flag} must be > 0 seconds, got {value}", flag)

    @property
    def base_url(self) -> str:
        return check_url(self.url, self.allow_remote)

    def command(self) -> str:
        """The `janus-rt bench-serve` command that reproduces this run (an API key shows as REDACTED)."""
        parts = ["janus-rt", "bench-serve", "--url", self.base_url, "--kind", self.kind,
                 "--concurrency", ",".join(map(str, self.concurrency)), "--requests", str(self.requests),
                 "--timeout", f"{self.timeout_s:g}", "--max-seconds", f"{self.max_seconds:g}"]
        parts += ["--n", str(self.n)] if self.kind == "image" else ["--max-tokens", str(self.max_tokens)]
        parts += ["--allow-remote"] if self.allow_remote else []
        parts += ["--api-key", "REDACTED"] if self.api_key else []
        return shlex.join(parts)


@dataclass(frozen=True)
class Outcome:
    """One request: "ok" or an error kind, its end-to-end latency, and what it produced."""

    status: str
    latency_s: float
    ttft_s: float | None = None  # chat: first content chunk
    tokens: int = 0  # chat: completion tokens
    images: int = 0  # image: images received

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ----------------------------------------------------------------------------------------- requests
def image_body(spec: LoadSpec, index: int) -> dict[str, Any]:
    """Request `index`'s body: the prompts cycle, the seed is the index (the same run sends the same work)."""
    return {"prompt": IMAGE_PROMPTS[index % len(IMAGE_PROMPTS)], "n": spec.n, "response_format": "b64_json",
            "seed": index}


def chat_body(spec: LoadSpec, index: int) -> dict[str, Any]:
    """A streamed chat request with the usage chunk asked for."""
    return {"messages": [{"role": "user", "content": CHAT_PROMPTS[index % len(CHAT_PROMPTS)]}],
            "max_tokens": spec.max_tokens, "seed": index, "stream": True, "stream_options": {"include_usage": True}}


async def send_image(client: httpx.AsyncClient, spec: LoadSpec, index: int, t0: float) -> Outcome:
    """POST one image request; ok is a 200 carrying `n` base64 images."""
    response = await client.post(IMAGES_ROUTE, json=image_body(spec, index))
    latency = time.perf_counter() - t0
    if response.status_code != 200:
        return Outcome(str(response.status_code), latency)
    data = response.json().get("data")
    if not isinstance(data, list) or len(data) != spec.n or not all(
            isinstance(item, dict) and item.get("b64_json") for item in data):
        return Outcome("bad_response", latency)
    return Outcome("ok", latency, images=len(data))


async def send_chat(client: httpx.AsyncClient, spec: LoadSpec, index: int, t0: float) -> Outcome:
    """POST one streamed chat request and read its server-sent events to `data: [DONE]`."""
    first_chunk = first_content = None
    content_chunks, usage_tokens = 0, None
    async with client.stream("POST", CHAT_ROUTE, json=chat_body(spec, index)) as response:
        if response.status_code != 200:
            await response.aread()
            return Outcome(str(response.status_code), time.perf_counter() - t0)
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:"):].strip()
            now = time.perf_counter()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                return Outcome(f"stream:{(event['error'] or {}).get('code') or 'error'}", now - t0)
            first_chunk = first_chunk or now
            for choice in event.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    content_chunks += 1
                    first_content = first_content or now
            if event.get("usage"):
                usage_tokens = event["usage"].get("completion_tokens")
        else:
            return Outcome("incomplete", time.perf_counter() - t0)  # the stream ended without [DONE]
    end = time.perf_counter()
    tokens = usage_tokens if isinstance(usage_tokens, int) else content_chunks
    return Outcome("ok", end - t0, ttft_s=(first_content or first_chunk or end) - t0, tokens=tokens)


async def send_one(client: httpx.AsyncClient, spec: LoadSpec, index: int) -> Outcome:
    """One request under the per-request timeout; every failure becomes an Outcome (never an exception)."""
    t0 = time.perf_counter()
    try:
        sender = send_image if spec.kind == "image" else send_chat
        return await asyncio.wait_for(sender(client, spec, index, t0), spec.timeout_s)
    except (asyncio.TimeoutError, httpx.TimeoutException):
        status = "timeout"
    except httpx.ConnectError:
        status = "connect"
    except httpx.HTTPError:  # the connection broke or the server spoke bad HTTP
        status = "transport"
    except (ValueError, AttributeError, TypeError):  # a 200 whose body is not what the route returns
        status = "bad_response"
    return Outcome(status, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------- levels
def make_client(spec: LoadSpec, connections: int) -> httpx.AsyncClient:
    """A client for `spec.base_url` holding up to `connections` connections; proxies only for remote URLs."""
    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
    return httpx.AsyncClient(base_url=spec.base_url, headers=headers, timeout=httpx.Timeout(spec.timeout_s),
                             limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
                             trust_env=spec.allow_remote)


async def check_health(spec: LoadSpec) -> None:
    """GET /health must answer 200; otherwise InputError naming the URL and what came back."""
    hint = "is `janus-rt serve` running there? (start it with `janus-rt serve --model DIR`, or pass its --url)"
    async with make_client(spec, 1) as client:
        try:
            response = await client.get("/health", timeout=min(spec.timeout_s, HEALTH_TIMEOUT_S))
        except httpx.ConnectError as e:
            raise InputError(f"could not connect to {spec.base_url} ({e or 'connection refused'}): {hint}",
                             "--url") from None
        except httpx.HTTPError as e:
            raise InputError(f"GET {spec.base_url}/health failed ({type(e).__name__}: {e}): {hint}", "--url") from None
    if response.status_code != 200:
        raise InputError(f"GET {spec.base_url}/health answered {response.status_code}, not 200: {hint}", "--url")


async def run_level(spec: LoadSpec, concurrency: int, progress: bool = False) -> dict[str, Any]:
    """`spec.requests` requests with at most `concurrency` in flight, bounded by `spec.max_seconds`; `progress`:
    a bar on stderr counting finished requests (an image request takes seconds to minutes)."""
    outcomes: dict[int, Outcome] = {}
    started: dict[int, float] = {}
    indices = iter(range(spec.requests))  # shared by the workers: each index is taken once
    workers_n = min(concurrency, spec.requests)

    async def worker(client: httpx.AsyncClient) -> None:
        for index in indices:
            started[index] = time.perf_counter()
            outcomes[index] = await send_one(client, spec, index)
            bar.update(1)

    bar = tqdm(total=spec.requests, desc=f"concurrency {concurrency}", unit="req", disable=not progress,
               file=sys.stderr, leave=False)
    async with make_client(spec, workers_n) as client:
        t0 = time.perf_counter()
        workers = [asyncio.create_task(worker(client)) for _ in range(workers_n)]
        done, pending = await asyncio.wait(workers, timeout=spec.max_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall_s = time.perf_counter() - t0
        bar.close()
        for task in done:
            task.result()  # a bug in a worker surfaces here rather than as missing requests
    for index, start in started.items():
        if index not in outcomes:  # cancelled at the level's time bound
            outcomes[index] = Outcome("timeout", t0 + wall_s - start)
    return summarize_level(spec, concurrency, [outcomes[i] for i in sorted(outcomes)], wall_s, bool(pending))


def summarize_level(spec: LoadSpec, concurrency: int, outcomes: Sequence[Outcome], wall_s: float,
                    hit_bound: bool) -> dict[str, Any]:
    """A level's JSON-ready result (see the module docstring)."""
    ok = [o for o in outcomes if o.ok]
    errors: dict[str, int] = {}
    for o in outcomes:
        if not o.ok:
            errors[o.status] = errors.get(o.status, 0) + 1

    def rate(count: int) -> float | None:
        return count / wall_s if wall_s > 0 else None

    level: dict[str, Any] = {
        "concurrency": concurrency, "requests": spec.requests, "sent": len(outcomes), "ok": len(ok),
        "not_sent": spec.requests - len(outcomes), "errors": dict(sorted(errors.items())),
        "stopped_at_time_bound": hit_bound, "wall_s": wall_s, "requests_per_s": rate(len(ok)),
        "latency_ms": percentiles_ms([o.latency_s for o in ok])}
    if spec.kind == "image":
        images = sum(o.images for o in ok)
        level.update(images=images, images_per_s=rate(images))
    else:
        tokens = sum(o.tokens for o in ok)
        per_request = [o.tokens / o.latency_s for o in ok if o.latency_s > 0]
        level.update(output_tokens=tokens, output_tokens_per_s=rate(tokens),
                     ttft_ms=percentiles_ms([o.ttft_s for o in ok if o.ttft_s is not None]),
                     tokens_per_s_per_request=statistics.fmean(per_request) if per_request else None)
    return level


def versions() -> dict[str, str | None]:
    """janus-rt, httpx and Python versions."""
    return {"janus_rt": janus_rt_version, "httpx": getattr(httpx, "__version__", None),
            "python": platform.python_version()}


async def run_load(spec: LoadSpec, progress: bool = False) -> dict[str, Any]:
    """Health check, then every concurrency level in order (`progress`: a bar per level on stderr); the whole run as
    one JSON-ready dict."""
    require_httpx()
    await check_health(spec)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    levels = [await run_level(spec, c, progress) for c in spec.concurrency]
    settings = {"requests": spec.requests, "timeout_s": spec.timeout_s, "max_seconds": spec.max_seconds}
    settings.update({"n": spec.n} if spec.kind == "image" else {"max_tokens": spec.max_tokens, "stream": True})
    return {"bench": "serve", "kind": spec.kind, "url": spec.base_url, "date": date, "command": spec.command(),
            "versions": versions(), "settings": settings, "results": levels}


def run(spec: LoadSpec, progress: bool = False) -> dict[str, Any]:
    """`run_load` on a fresh event loop (the CLI's entry point)."""
    return asyncio.run(run_load(spec, progress))
