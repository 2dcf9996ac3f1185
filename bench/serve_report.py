"""`janus-rt bench-serve`'s printed report: one table row per concurrency level, then the result as JSON.

`format_report(result)` takes the dict `serve_load.run` returns: a heading (kind, URL, requests per level,
bounds), the table (sent, ok, errors by kind, wall seconds, throughput, latency p50/p95/p99, and for chat the
TTFT percentiles and tokens/s per request), a line per level stopped at its time bound, the command; its last
line is the whole result as one JSON object, as `janus-rt bench` prints.
"""

from __future__ import annotations

import json
from typing import Any

from janus_rt.bench.report import table


def _cell(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def format_errors(errors: dict[str, int]) -> str:
    return " ".join(f"{kind}:{count}" for kind, count in errors.items()) or "-"


def format_table(result: dict[str, Any]) -> str:
    """One row per concurrency level."""
    chat = result["kind"] == "chat"
    headers = ["concurrency", "sent", "ok", "errors", "wall s", "req/s", "out tok/s" if chat else "img/s",
               "p50 ms", "p95 ms", "p99 ms"]
    if chat:
        headers += ["TTFT p50 ms", "TTFT p95 ms", "TTFT p99 ms", "tok/s/req"]
    rows = []
    for r in result["results"]:
        lat = r["latency_ms"]
        row = [str(r["concurrency"]), str(r["sent"]), str(r["ok"]), format_errors(r["errors"]), _cell(r["wall_s"], 2),
               _cell(r["requests_per_s"], 2), _cell(r["output_tokens_per_s" if chat else "images_per_s"], 2),
               _cell(lat["p50"]), _cell(lat["p95"]), _cell(lat["p99"])]
        if chat:
            row += [_cell(r["ttft_ms"]["p50"]), _cell(r["ttft_ms"]["p95"]), _cell(r["ttft_ms"]["p99"]),
                    _cell(r["tokens_per_s_per_request"])]
        rows.append(row)
    return table(headers, rows)


def format_report(result: dict[str, Any]) -> str:
    """Heading, table, notes, the command; the last line is the result as one JSON object."""
    s = result["settings"]
    what = (f"{s['n']} image(s) per request" if result["kind"] == "image"
            else f"streamed chat, max_tokens {s['max_tokens']}")
    lines = [f"janus-rt bench-serve  {result['kind']} at {result['url']}: {s['requests']} requests per level, {what}; "
             f"timeout {s['timeout_s']:g} s per request, {s['max_seconds']:g} s per level",
             format_table(result)]
    for r in result["results"]:
        if r["stopped_at_time_bound"]:
            lines.append(f"  concurrency {r['concurrency']}: stopped at the {s['max_seconds']:g} s bound; "
                         f"{r['not_sent']} request(s) never sent, those in flight counted as timeout")
    lines.append(f"command: {result['command']}")
    return "\n".join(lines) + "\n" + json.dumps(result, separators=(",", ":"), allow_nan=False)
