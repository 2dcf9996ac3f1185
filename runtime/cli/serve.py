"""`janus-rt serve`: load one model (same flags as generate / chat), then serve it over HTTP with uvicorn.

Order: every flag is checked, the port is bound (so a taken port fails before the slow load; nothing is
accepted yet), the model is loaded, then uvicorn starts listening on the bound socket. SIGTERM or Ctrl-C
stops accepting, lets in-flight requests finish within --grace-period, cuts those still running (503, or an
SSE error event; serve/shutdown.py), closes the engine, says how many were cut and exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from janus_rt.backends.choice import resolve_device
from janus_rt.cli.common import GRAPH_BACKENDS, add_model_args, engine_config, load_model
from janus_rt.errors import InputError
from janus_rt.serve import build_app, require_serve_extra
from janus_rt.serve.connection import CUT_MARGIN_S, CuttingServer, uvicorn_options
from janus_rt.serve.ray_app import run_ray_serve
from janus_rt.serve.settings import API_KEY_ENV, MiB, ServeSettings
from janus_rt.spelling import CLI

SERVE_EPILOG = f"""examples:
  janus-rt serve --model ~/models/Janus-Pro-1B                       # http://127.0.0.1:8000
  janus-rt serve --model ~/models/Janus-Pro-7B --backend triton --host 0.0.0.0 --port 8080 --api-key s3cret
  janus-rt serve --model toy                     # the toy Janus shipped in the package, CPU, no weights
  janus-rt serve --model ~/models/Janus-Pro-7B --backend triton --ray --replicas 4   # 4 GPUs, one replica each

then, from another shell:
  curl -s localhost:8000/health
  curl -s localhost:8000/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{{"prompt": "a red fox in the snow", "n": 1, "seed": 0}}' | jq -r '.data[0].b64_json' | base64 -d > fox.png
  printf '{{"messages": [{{"role": "user", "content": [{{"type": "image_url", "image_url": {{"url": "data:image/png;base64,%s"}}}},
    {{"type": "text", "text": "What is in this picture?"}}]}}], "max_tokens": 64}}' "$(base64 -w0 fox.png)" > ask.json
  curl -s localhost:8000/v1/chat/completions -H 'Content-Type: application/json' -d @ask.json   # a file: base64 is long
  curl -sN localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{{"messages": [{{"role": "user", "content": "Tell me a story."}}], "stream": true}}'
  curl -sN localhost:8000/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{{"prompt": "a red fox", "negative_prompt": "blurry", "stream": true, "partial_images": 2}}'
  curl -s localhost:8000/v1/images/generations -H 'Content-Type: application/json' \\
       -d '{{"prompt": "a red fox", "output_format": "webp", "output_compression": 80}}' | jq -r '.data[0].b64_json' \\
       | base64 -d > fox.webp
  curl -s localhost:8000/v1/models
  curl -s localhost:8000/metrics

Open http://127.0.0.1:8000/ in a browser for the playground (images drawn row by row, chat); --no-ui turns it off.
Routes follow OpenAI's shapes; with --api-key (or ${API_KEY_ENV}) the /v1 routes need
'Authorization: Bearer KEY' (/health, /metrics and the playground page stay open; the page asks for the key).
Images come back as base64 PNG (or jpeg / webp: output_format); with "stream": true as server-sent events
(partial images while drawn, then the completed ones). Input images are data: URIs only (the server never
fetches a URL). needs: pip install 'janus-rt[serve]'
"""


def add_serve_args(p: argparse.ArgumentParser) -> None:
    """The `serve` subcommand's flags (model flags shared with generate / chat)."""
    defaults = ServeSettings()
    p.description = ("Load a model and serve it over HTTP: POST /v1/images/generations, POST /v1/chat/completions, "
                     "GET /v1/models, GET /health, GET /metrics, and a web playground at GET /.\nConcurrent requests "
                     "share the engine's decode steps (README, 'The engine').")
    p.epilog, p.formatter_class = SERVE_EPILOG, argparse.RawDescriptionHelpFormatter
    add_model_args(p)
    s = p.add_argument_group("server")
    s.add_argument("--host", default=defaults.host,
                   help=f"interface to listen on (default {defaults.host}: this machine only; 0.0.0.0 for every one)")
    s.add_argument("--port", type=int, default=defaults.port, help=f"TCP port (default {defaults.port}; 0 = any free port)")
    s.add_argument("--model-name", default=None,
                   help="the model id clients see in /v1/models and may send as `model` (default: the --model folder's name)")
    s.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on /v1 routes (default: ${API_KEY_ENV} when set, else none)")
    a = p.add_argument_group("admission")
    a.add_argument("--max-queue", type=int, default=defaults.max_queue,
                   help=f"requests that may wait for KV rows; one more gets 429 with Retry-After (default {defaults.max_queue})")
    a.add_argument("--request-timeout", type=float, default=defaults.request_timeout_s,
                   help="seconds a request may take before it is cancelled with 504, its rows freed "
                        f"(default {defaults.request_timeout_s:g}; 0 = no limit)")
    a.add_argument("--grace-period", type=float, default=defaults.grace_period_s,
                   help=f"on SIGTERM, seconds in-flight requests may take to finish (default {defaults.grace_period_s:g})")
    a.add_argument("--read-timeout", type=float, default=defaults.read_timeout_s,
                   help="seconds a request's headers, and each piece of its body, may take to arrive; slower clients "
                        f"are cut off (408 for a body; default {defaults.read_timeout_s:g})")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web page origin (e.g. http://localhost:3000; '*' for any) allowed to call this server "
                        "from a browser (CORS); repeatable. Other pages' requests are refused with 403 (default: none)")
    a.add_argument("--max-body-mb", type=float, default=defaults.max_body_bytes / MiB,
                   help=f"largest request body in MiB, images included (default {defaults.max_body_bytes / MiB:g})")
    a.add_argument("--max-image-pixels", type=int, default=defaults.max_image_pixels,
                   help=f"largest input image, width x height, read before decoding (default {defaults.max_image_pixels:,})")
    a.add_argument("--max-images", type=int, default=defaults.max_images_per_request,
                   help=f"largest `n` of one image request (default {defaults.max_images_per_request})")
    s.add_argument("--no-ui", action="store_true",
                   help="do not serve the web playground at GET / (a 404 instead; the API routes stay). By default "
                        "the page is served: a browser on this server's own address generates images (watching "
                        "them drawn) and chats, with no other origin or CDN involved")
    s.add_argument("--warmup", action="store_true",
                   help="compile, tune and capture the common decode shapes before the port opens (the first "
                        "requests then run at full speed; see `janus-rt warmup`)")
    r = p.add_argument_group("ray", "scale out over Ray Serve (pip install 'janus-rt[ray]'): the same routes on N replicas")
    r.add_argument("--ray", action="store_true",
                   help="serve through Ray Serve: --replicas copies of the model behind Ray's proxy on --host/--port")
    r.add_argument("--replicas", type=int, default=1, help="replicas with --ray, one GPU each (default 1)")
    r.add_argument("--cpu-per-replica", type=int, default=1,
                   help="CPU cores each replica asks Ray for (and torch threads on a CPU replica; default 1)")
    r.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (e.g. auto, or ray://head:10001) instead of starting a local one")
    a.add_argument("--default-max-tokens", type=int, default=defaults.default_max_tokens,
                   help="answer length when a chat request gives no max_tokens, cut to what the context holds "
                        f"(default {defaults.default_max_tokens})")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """ServeSettings from the flags (InputError names the bad one)."""
    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None
    name = args.model_name or Path(str(args.model).rstrip("/")).name or "janus"
    try:
        return ServeSettings(host=args.host, port=args.port, model_name=name, max_queue=args.max_queue,
                             request_timeout_s=args.request_timeout or None, api_key=api_key,
                             max_body_bytes=int(args.max_body_mb * MiB), max_image_pixels=args.max_image_pixels,
                             max_images_per_request=args.max_images, default_max_tokens=args.default_max_tokens,
                             grace_period_s=args.grace_period, read_timeout_s=args.read_timeout,
                             allow_origins=tuple(args.allow_origin), ui=not args.no_ui)
    except InputError as e:
        flag = {"max_body_bytes": "max_body_mb", "request_timeout_s": "request_timeout", "grace_period_s": "grace_period",
                "max_images_per_request": "max_images", "read_timeout_s": "read_timeout",
                "allow_origins": "allow_origin"}.get(e.param or "", e.param or "")
        raise InputError(f"--{flag.replace('_', '-')}: {e}", param=e.param) from None


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) but not yet listening: clients are refused until the model is loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    sock.set_inheritable(True)
    return sock


def run_serve(args: argparse.Namespace) -> int:
    """Check the flags, bind, load the model, serve until SIGTERM / Ctrl-C; 0 after a graceful stop."""
    require_serve_extra()
    import uvicorn  # optional extra: uvicorn (checked just above)

    settings = settings_from_args(args)
    config = engine_config(args)
    if args.backend not in GRAPH_BACKENDS:
        resolve_device(args.device, CLI)
    if args.ray:
        if settings.port == 0:
            raise InputError("--port 0 (any free port) does not work with --ray: Ray's proxy needs a fixed --port")
        bind_socket(settings.host, settings.port).close()  # a taken port fails now, not after Ray has started
        return run_ray_serve(args, settings, load_model)
    if args.replicas != 1 or args.ray_address is not None:
        raise InputError("--replicas and --ray-address need --ray (one process serves one model without it)")
    sock = bind_socket(settings.host, settings.port)
    try:
        model = load_model(args, config)
        try:
            if args.warmup:  # before the port opens: say so, and show progress on a terminal
                print("warming up   every decode bucket, then the common shapes (the port opens after)",
                      file=sys.stderr, flush=True)
                steps = model.warmup(progress=sys.stderr.isatty())
                buckets = sum(st.batch for st in steps if st.kind == "buckets")
                shapes = sum(st.kind != "buckets" for st in steps)
                print(f"warmed up    {buckets} decode buckets and {shapes} shapes in "
                      f"{sum(st.seconds for st in steps):.1f} s", file=sys.stderr, flush=True)
            app = build_app(model, settings)
            config = uvicorn.Config(app, log_level="info", **uvicorn_options(settings, CUT_MARGIN_S))
            server = CuttingServer(config, app.state.in_flight, settings.grace_period_s)
            host, port = sock.getsockname()[:2]
            print(f"serving      {settings.model_name} on http://{host}:{port} (auth: "
                  f"{'Bearer key' if settings.api_key else 'none'}; stop with Ctrl-C or SIGTERM)", file=sys.stderr,
                  flush=True)
            with _quiet_after_graceful_stop():
                server.run(sockets=[sock])
        finally:
            model.close()
    finally:
        sock.close()
    if server.cut_count:
        print(f"stopped      {server.cut_count} in-flight request(s) cut when the {settings.grace_period_s:g} s grace "
              "period ended (answered 503 shutting_down)", file=sys.stderr)
    else:
        print("stopped      in-flight requests finished", file=sys.stderr)
    return 0


class _quiet_after_graceful_stop:
    """uvicorn re-raises the signal that stopped it once it is done; handle it here so the exit stays 0."""

    def __enter__(self) -> None:
        self._previous = {sig: signal.signal(sig, self._ignore) for sig in (signal.SIGTERM, signal.SIGINT)}

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @staticmethod
    def _ignore(signum: int, frame: object) -> None:
        pass
