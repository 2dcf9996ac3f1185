"""Start the real janus-rt HTTP server for a test: uvicorn on 127.0.0.1, an OS-chosen port, in a thread.

    with start_server(model_or_checkpoint, ServeSettings(...)) as base_url:
        httpx.get(f"{base_url}/health")

The socket is bound before uvicorn starts, so the port is known at once; the context waits until the server
answers, and on exit stops it (in-flight requests finish) and joins the thread. A checkpoint path is loaded on
the CPU in fp32 and closed afterwards; a given `janus_rt.Janus` is left open (its owner closes it).
Also: `with_image_grid(model, 6)` a fresh Janus (own engine) over an already loaded model's weights, whose checkpoint
has that image-token grid, and the server tests' fixtures (import them into a test module): `ckpt` (the session's
tiny checkpoint with a 6x6 grid: 36 decode steps an image, 12x12 px), `base` (a Janus over its weights, own engine),
`make(**engine_config)` (a fresh Janus over base's weights, closed after the test).
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

import janus_rt
from janus_rt.serve.settings import ServeSettings

STARTUP_TIMEOUT_S = 60.0


def with_image_grid(loaded: janus_rt.Janus, grid: int, **engine) -> janus_rt.Janus:
    """A new Janus (own engine) over `loaded`'s weights, whose checkpoint has a `grid` x `grid` image-token grid."""
    from janus_rt.backends.choice import make_backend
    from janus_rt.engine import EngineConfig

    if loaded.config.vq.image_token_grid != grid:
        side = loaded.config.vq.image_token_grid
        raise ValueError(f"{loaded.path}'s image-token grid is {side}x{side}, not {grid}x{grid}: load a checkpoint "
                         f"written with TinySpec(image_token_grid={grid}) (the tiny_small_grid fixture)")
    return janus_rt.Janus(make_backend(loaded.backend, loaded.model), loaded.tokenizer, loaded.chat_format,
                          loaded.path, EngineConfig(**engine))


@contextmanager
def start_server(model_or_checkpoint: janus_rt.Janus | str | Path,
                 settings: ServeSettings | None = None) -> Iterator[str]:
    """Serve a model (or a checkpoint, loaded here) on 127.0.0.1; yields the base URL `http://127.0.0.1:PORT`."""
    import httpx
    import uvicorn

    from janus_rt.serve.app import build_app
    from janus_rt.serve.connection import uvicorn_options

    settings = settings or ServeSettings(host="127.0.0.1", port=0)
    owned = not isinstance(model_or_checkpoint, janus_rt.Janus)
    model = janus_rt.load(model_or_checkpoint, device="cpu", dtype="float32") if owned else model_or_checkpoint
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(build_app(model, settings), log_level="warning", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="janus-rt-test-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        httpx.get(f"{base_url}/metrics", timeout=10).raise_for_status()
        yield base_url
    finally:
        server.should_exit = True
        thread.join(STARTUP_TIMEOUT_S)
        sock.close()
        if owned:
            model.close()


@pytest.fixture(scope="module")
def ckpt(tiny_small_grid: Path) -> Path:
    return tiny_small_grid


@pytest.fixture(scope="module")
def base(small_grid_model: janus_rt.Janus) -> Iterator[janus_rt.Janus]:
    m = with_image_grid(small_grid_model, 6)
    yield m
    m.close()


@pytest.fixture
def make(base):
    """make(**engine_config) -> a fresh Janus (own engine, own counters) over the shared weights; closed after the test."""
    made: list[janus_rt.Janus] = []

    def build(**engine) -> janus_rt.Janus:
        made.append(with_image_grid(base, 6, **engine))
        return made[-1]

    yield build
    for m in made:
        m.close()
