"""`janus-rt bench-serve`: the subcommand's flags and handler (runtime/cli/main.py lists it and imports this module
only when it runs)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from janus_rt.bench.serve_load import LoadSpec, require_httpx, run
from janus_rt.bench.serve_report import format_report
from janus_rt.cli.common import int_list, show_progress
from janus_rt.errors import InputError
from janus_rt.files import atomic_write_json
from janus_rt.serve.settings import API_KEY_ENV

DESCRIPTION = """\
Load-test a running `janus-rt serve` over HTTP (its OpenAI-compatible routes) and report what a client sees.

For each --concurrency level C, sends --requests requests with at most C in flight, then prints one table row:
  - sent, ok, and errors by kind: the HTTP status ("429", "401", ...), "timeout" (over --timeout, or still
    running when the level's --max-seconds ran out), "connect", "transport", "bad_response", "incomplete",
    or "stream:CODE" (an error event inside a 200 stream);
  - wall seconds and throughput: requests/s, plus images/s (--kind image) or output tokens/s (--kind chat);
  - end-to-end latency p50/p95/p99 in ms over the successful requests (numpy's linear percentiles);
  - chat only (streamed, usage chunk asked for): time to the first content chunk (TTFT) p50/p95/p99 and the
    mean per-request tokens/s (completion tokens / end-to-end latency).
The last line is the whole result as one JSON object (versions, date, command, every level); --json-out
also writes it to a file.

Image requests cycle through a few fixed prompts with seed = request index (n = --n, the server's own image
size); chat requests ask --max-tokens tokens of a fixed set of questions. GET /health must answer 200 first.
Bounded: at most --requests per level, --timeout per request, --max-seconds per level (then what is in flight
is cancelled and counted as "timeout", the rest is not sent). Only loopback URLs (localhost, 127.0.0.0/8,
::1) unless --allow-remote."""

EPILOG = f"""\
examples:
  janus-rt serve --model toy &              # the toy Janus shipped in the package; http://127.0.0.1:8000
  janus-rt bench-serve --url http://127.0.0.1:8000 --kind image --concurrency 1,4 --requests 8
  janus-rt bench-serve --url http://127.0.0.1:8000 --kind chat --concurrency 1,4,16,64 --requests 64 --max-tokens 32
  janus-rt bench-serve --url http://127.0.0.1:8000 --kind chat --json-out results/serve-chat.json
  janus-rt bench-serve --url https://gpu-box.example:8443 --allow-remote --kind image   # a server elsewhere

--api-key defaults to ${API_KEY_ENV} (as `janus-rt serve` reads it); it is sent as 'Authorization: Bearer KEY'
and never printed. Needs httpx: pip install 'janus-rt[serve]'."""


def _levels(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16); at least one level, each an integer >= 1 (the CLI's list parser)."""
    values = int_list(text)
    if not values:
        raise argparse.ArgumentTypeError(f"give at least one concurrency level such as 1,4,16, got {text!r}")
    return values


def add_bench_serve_args(p: argparse.ArgumentParser) -> None:
    """The `bench-serve` subcommand's description, examples and flags."""
    p.description, p.epilog, p.formatter_class = DESCRIPTION, EPILOG, argparse.RawDescriptionHelpFormatter
    p.add_argument("--url", default="http://127.0.0.1:8000",
                   help="base URL of the server (default http://127.0.0.1:8000; loopback only unless --allow-remote)")
    p.add_argument("--kind", choices=("image", "chat"), default="image",
                   help="POST /v1/images/generations (default) or streamed POST /v1/chat/completions")
    p.add_argument("--concurrency", type=_levels, default=(1, 4, 16, 64), metavar="C1,C2,...",
                   help="requests in flight at most, one level after another (default 1,4,16,64)")
    p.add_argument("--requests", type=int, default=32, metavar="N", help="requests per level (default 32)")
    p.add_argument("--n", type=int, default=1, help="image requests: images per request (default 1)")
    p.add_argument("--max-tokens", type=int, default=64, help="chat requests: max_tokens (default 64)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="per request, in seconds; a request still running is cancelled, counted as timeout "
                        "(default 120)")
    p.add_argument("--max-seconds", type=float, default=300.0, metavar="S",
                   help="per level: after this, no request is started and those in flight are cancelled "
                        "(default 300)")
    p.add_argument("--api-key", default=None, help=f"the server's key (default: ${API_KEY_ENV} when set, else none)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a URL that is not this machine (a load test hits a server hard: only your own)")
    p.add_argument("--json-out", default=None, metavar="FILE", help="also write the JSON result to FILE (atomically)")


def run_bench_serve_command(args: argparse.Namespace) -> int:
    """Handler of `janus-rt bench-serve`: check, run every level, print the table (last line JSON), --json-out."""
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    spec = LoadSpec(url=args.url, kind=args.kind, concurrency=args.concurrency, requests=args.requests,
                    timeout_s=args.timeout, max_seconds=args.max_seconds, n=args.n, max_tokens=args.max_tokens,
                    api_key=api_key, allow_remote=args.allow_remote)
    out = Path(args.json_out) if args.json_out else None
    if out is not None and out.is_dir():
        raise InputError(f"--json-out {out} is a folder; pass a file path such as {out / 'serve.json'}", "--json-out")
    require_httpx()
    result = run(spec, progress=show_progress())  # levels of image requests run for minutes
    print(format_report(result), flush=True)
    if out is not None:
        atomic_write_json(out, result, allow_nan=False)
    return 0
