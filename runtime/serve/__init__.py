"""janus-rt's HTTP server: OpenAI-shaped routes over one loaded model and its engine (`janus-rt serve`).

    settings.py   ServeSettings: host, port, queue bound, timeouts, caps, API key (validated once)
    app.py        build_app(model, settings) -> FastAPI: every route, error bodies, auth, metrics
    schemas.py    pydantic request models of each route (what a client may send, and nothing else)
    messages.py   chat messages -> the reference's conversation prompt + decoded images
    data_uri.py   `data:` image URIs -> PIL images, with a pixel cap checked before decoding
    admission.py  the bounded queue and the engine's health in front of every submission
    waiting.py    awaiting a job under a timeout while watching for the client to go away
    responses.py  OpenAI response bodies (chat completion, stream chunks, images)
    errors.py     APIError and the OpenAI error body `{"error": {message, type, param, code}}`
    metrics.py    Prometheus metrics in a per-app registry (no module-global state)
    cli.py        `janus-rt serve`: load the model, then uvicorn with graceful shutdown

Nothing here imports FastAPI, uvicorn or prometheus_client at package import time: `janus_rt.serve` stays
importable without the `serve` extra, and using it without them says `pip install 'janus-rt[serve]'`.
"""

from __future__ import annotations

import importlib

from janus_rt.errors import InputError
from janus_rt.serve.settings import ServeSettings

__all__ = ["ServeSettings", "build_app", "require_serve_extra"]

SERVE_MODULES = {"fastapi": "fastapi", "uvicorn": "uvicorn", "prometheus_client": "prometheus-client"}


def require_serve_extra() -> None:
    """Raise InputError saying how to install the server's packages when one is missing."""
    missing = []
    for module, package in SERVE_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise InputError(f"the server needs {', '.join(missing)}, which is not installed: "
                         "pip install 'janus-rt[serve]'")


def build_app(model, settings: ServeSettings | None = None):  # noqa: ANN001, ANN201 - see app.build_app
    """`janus_rt.serve.app.build_app`, imported on first use (it needs the `serve` extra)."""
    require_serve_extra()
    from janus_rt.serve.app import build_app as build  # optional extra: fastapi (checked just above)

    return build(model, settings or ServeSettings())
