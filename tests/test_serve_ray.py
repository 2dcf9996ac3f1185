"""`janus-rt serve --ray --replicas 2`: a local Ray on the CPU, two replicas of a tiny checkpoint behind Ray's proxy.

One server process for the module (Ray takes ~20 s to start on two cores): both routes answer what the library
answers for the same seed, both replicas serve, the app's errors come through Ray unchanged, and SIGTERM lets
an in-flight request finish before the command exits 0. Skips only where Ray Serve is not installed.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'janus-rt[ray]'")
httpx = pytest.importorskip("httpx", reason="the server tests need the serve extra: pip install 'janus-rt[serve]'")

pytestmark = [pytest.mark.ray, pytest.mark.subprocess, pytest.mark.slow]

IMAGES = "/v1/images/generations"
CHAT = "/v1/chat/completions"
START_TIMEOUT_S = 240.0  # bound on Ray + two replicas starting (a failure, not a timing assertion)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(url: str) -> int:
    try:
        return httpx.get(url + "/health", timeout=5).status_code
    except httpx.TransportError:
        return 0


class RayServer:
    """The `janus-rt serve --ray` process; its output is collected for failure messages."""

    def __init__(self, ckpt: Path, port: int):
        env = {**os.environ, "JANUS_RT_API_KEY": "", "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "janus_rt.cli.main", "serve", "--model", str(ckpt), "--device", "cpu", "--dtype",
             "float32", "--port", str(port), "--ray", "--replicas", "2", "--grace-period", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def log(self) -> str:
        return "".join(self.lines[-60:])

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while health(self.url) != 200:
            if self.proc.poll() is not None:
                raise AssertionError(f"janus-rt serve --ray exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"janus-rt serve --ray was not healthy within {START_TIMEOUT_S:g} s:\n{self.log()}")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(60)


@pytest.fixture(scope="module")
def ckpt(tiny_official: Path) -> Path:
    return tiny_official


@pytest.fixture(scope="module")
def server(ckpt: Path):
    running = RayServer(ckpt, free_port())
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def library(torch_model):
    return torch_model  # the session's model of the same checkpoint (tiny_official), read only


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def png_data_uri(seed: int) -> tuple[str, Image.Image]:
    image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, size=(20, 30, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}", image


def test_both_routes_answer_what_the_library_answers(server: RayServer, library) -> None:
    r = httpx.post(server.url + IMAGES, json={"prompt": "a red fox", "n": 2, "seed": 3}, timeout=120)
    assert r.status_code == 200, r.text + server.log()
    expected = library.generate_images("a red fox", num_images=2, seed=3).images
    for item, image in zip(r.json()["data"], expected, strict=True):
        assert np.array_equal(decode_png(item["b64_json"]), image)

    uri, image = png_data_uri(1)
    message = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                           {"type": "text", "text": "What is in this picture?"}]}
    r = httpx.post(server.url + CHAT, json={"messages": [message], "max_tokens": 8}, timeout=120)
    assert r.status_code == 200, r.text
    answer = library.chat("What is in this picture?", image=image, max_new_tokens=8)
    assert r.json()["choices"][0]["message"]["content"] == answer.text

    with httpx.stream("POST", server.url + CHAT, timeout=120,
                      json={"messages": [message], "max_tokens": 8, "stream": True}) as streamed:
        events = [line[len("data: "):] for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]]
    assert "".join(pieces) == answer.text


def test_both_replicas_serve(server: RayServer) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    seen: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(10):  # bounded: Ray spreads concurrent requests over the replicas with fewer in flight
            answers = list(pool.map(lambda _: httpx.post(server.url + CHAT, json=body, timeout=120), range(8)))
            assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
            seen |= {a.headers["x-janus-rt-replica"] for a in answers}
            if len(seen) == 2:
                break
    assert len(seen) == 2, seen


def test_errors_come_through_ray_unchanged(server: RayServer) -> None:
    r = httpx.post(server.url + IMAGES, json={"prompt": "a fox", "size": "1024x1024"}, timeout=60)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "unsupported_size" and r.json()["error"]["param"] == "size"
    r = httpx.post(server.url + CHAT, content=b"{not json", headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    models = httpx.get(server.url + "/v1/models", timeout=60).json()
    assert [m["id"] for m in models["data"]] == ["ckpt"]
    metrics = httpx.get(server.url + "/metrics", timeout=60)
    assert re.search(r"^janus_rt_engine_alive 1(\.0)?$", metrics.text, flags=re.M), metrics.text  # the replica's own
    assert health(server.url) == 200


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0(server: RayServer) -> None:
    body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 600, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + CHAT, json=body, timeout=180) as streamed:
        lines = streamed.iter_lines()
        assert next(lines).startswith("data: ")  # the request runs on a replica now
        server.proc.send_signal(signal.SIGTERM)
        events = [line[len("data: "):] for line in lines if line.startswith("data: ")]
    assert server.proc.wait(180) == 0, server.log()
    assert events[-1] == "[DONE]", events[-3:]
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 600 or json.loads(events[-3])["choices"][0]["finish_reason"] == "stop"
    assert re.search(r"stopped\s+in-flight requests finished", server.log())
