"""The HTTP server (`janus-rt serve`), over real HTTP: uvicorn on 127.0.0.1 in a thread (serve_utils).

A tiny checkpoint with a 6x6 image-token grid (36 decode steps an image, 12x12 px) keeps every request short.
What is proven here:
- answers equal the library's for the same inputs: images (greedy and seeded) and chat (image + text, and a
  multi-turn conversation), streaming gives the same text as non-streaming;
- concurrent HTTP requests share decode steps;
- every bad input gets a 4xx with the OpenAI error body, never reaches the engine, and the server stays healthy;
- overload is a 429 with Retry-After (no 5xx), a timeout a 504 that frees the rows, a client that goes away
  has its request cancelled (rows freed, counted in /metrics), auth is 401 / 200;
- /health is 503 once the engine is closed or its loop died, and requests then fail fast with 503;
- `janus-rt serve` in a subprocess finishes an in-flight request on SIGTERM and exits 0.
Requests that must overlap or outlive a timeout are held by a gate in the step backend, never by sleeping.
"""

from __future__ import annotations

import base64
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

import janus_rt  # noqa: E402
from janus_rt.errors import InputError  # noqa: E402
from janus_rt.requests.prompts import conversation_prompt  # noqa: E402
from janus_rt.serve.settings import ServeSettings  # noqa: E402
from janus_rt.checkpoint.tiny import write_tiny_checkpoint  # noqa: E402
from serve_utils import base, ckpt, make, start_server  # noqa: E402,F401 - fixtures
from faults import fail_decode_at  # noqa: E402

IMAGES = "/v1/images/generations"
CHAT = "/v1/chat/completions"
WAIT_S = 60.0  # bound of every polling loop (a failure, not a timing assertion)


def serve(m: janus_rt.Janus, **settings):
    return start_server(m, ServeSettings(port=0, **settings))


def png_bytes(seed: int = 0, size: tuple[int, int] = (30, 40)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(raw: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(raw).decode()}"


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def image_message(raw: bytes, text: str) -> dict:
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_uri(raw)}},
                                        {"type": "text", "text": text}]}


def metric(base_url: str, name: str, labels: str = "") -> float:
    """One sample of /metrics (0 when absent)."""
    text = httpx.get(f"{base_url}/metrics").text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, flags=re.M)
    return float(match.group(1)) if match else 0.0


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def assert_error(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


class Gate:
    """Holds the engine thread inside a backend call (`prefill`, or `decode` from its `at`-th call) until opened."""

    def __init__(self, m: janus_rt.Janus, monkeypatch: pytest.MonkeyPatch, method: str = "prefill", at: int = 1):
        self.entered = threading.Event()
        self.opened = threading.Event()
        original = getattr(m.step_backend, method)
        calls = {"n": 0}

        def gated(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] >= at and not self.opened.is_set():
                self.entered.set()
                self.opened.wait(WAIT_S)
            return original(*args, **kwargs)

        monkeypatch.setattr(m.step_backend, method, gated)

    def open(self) -> None:
        self.opened.set()


def in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    return thread, out


# --------------------------------------------------------------------------------- answers = library
@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 7)])
def test_images_equal_the_library(make, temperature, seed) -> None:
    m = make()
    with serve(m) as url:
        r = httpx.post(url + IMAGES, json={"prompt": "a red fox", "n": 2, "size": "12x12", "temperature": temperature,
                                           "seed": seed, "cfg_weight": 4.0, "response_format": "b64_json"}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 2
    expected = m.generate_images("a red fox", num_images=2, temperature=temperature, seed=seed, cfg_weight=4.0).images
    for item, image in zip(body["data"], expected):
        assert np.array_equal(decode_png(item["b64_json"]), image)
    if seed is not None:
        assert not np.array_equal(expected[0], expected[1])


@pytest.mark.parametrize("sampling", [{}, {"temperature": 0.8, "top_p": 0.9, "seed": 5}])
def test_chat_with_an_image_equals_the_library(make, sampling) -> None:
    m = make()
    raw = png_bytes(1)
    with serve(m) as url:
        r = httpx.post(url + CHAT, json={"messages": [image_message(raw, "What is in this picture?")],
                                         "max_tokens": 12, **sampling}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = m.chat("What is in this picture?", image=Image.open(io.BytesIO(raw)), max_new_tokens=12,
                      temperature=sampling.get("temperature", 0.0), top_p=sampling.get("top_p"),
                      seed=sampling.get("seed"))
    choice = body["choices"][0]
    assert body["object"] == "chat.completion" and choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == ("stop" if expected.finished else "length")
    prompt_ids = m.chat_inputs(expected.prompt, [Image.open(io.BytesIO(raw))], raw=True)[0].ids
    assert body["usage"] == {"prompt_tokens": len(prompt_ids), "completion_tokens": len(expected.token_ids),
                             "total_tokens": len(prompt_ids) + len(expected.token_ids)}


def test_multi_turn_conversation_follows_the_reference_format(make) -> None:
    m = make()
    raw = png_bytes(2)
    messages = [{"role": "system", "content": "You describe pictures."}, image_message(raw, "What is this?"),
                {"role": "assistant", "content": "A square of noise."}, {"role": "user", "content": "Any colours?"}]
    with serve(m) as url:
        r = httpx.post(url + CHAT, json={"messages": messages, "max_completion_tokens": 10}, timeout=60)
    assert r.status_code == 200, r.text
    prompt = conversation_prompt([("user", "<image_placeholder>\nWhat is this?"), ("assistant", "A square of noise."),
                                  ("user", "Any colours?")], m.chat_format, "You describe pictures.")
    assert "<|Assistant|>: A square of noise.<｜end▁of▁sentence｜><|User|>: Any colours?" in prompt
    expected = m.chat(prompt, image=[Image.open(io.BytesIO(raw))], max_new_tokens=10, raw=True)
    assert r.json()["choices"][0]["message"]["content"] == expected.text


def test_streaming_gives_the_same_text_as_a_plain_answer(make) -> None:
    m = make()
    request = {"messages": [{"role": "user", "content": "Tell me about foxes."}], "max_tokens": 16,
               "temperature": 0.9, "seed": 3}
    with serve(m) as url:
        plain = httpx.post(url + CHAT, json=request, timeout=60).json()
        events = []
        with httpx.stream("POST", url + CHAT, json={**request, "stream": True,
                                                    "stream_options": {"include_usage": True}}, timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == [plain["choices"][0]["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}


def test_concurrent_requests_share_decode_steps(make, monkeypatch) -> None:
    m = make()
    prompts = ["a red fox", "a lighthouse at night", "green apples"]
    solo, solo_steps = [], 0
    for i, p in enumerate(prompts):
        before = m.stats()["decode_steps"]
        solo.append(m.generate_images(p, num_images=1, seed=i).images[0])
        solo_steps += m.stats()["decode_steps"] - before
    gate = Gate(m, monkeypatch)  # the first prefill waits until all three requests are in the engine
    before = m.stats()["decode_steps"]
    with serve(m) as url:
        threads = [in_thread(lambda p=p, i=i: httpx.post(url + IMAGES, json={"prompt": p, "seed": i}, timeout=60))
                   for i, p in enumerate(prompts)]
        wait_until(lambda: gate.entered.is_set() and m.stats()["queued_requests"] >= 2, "three requests queued")
        gate.open()
        for thread, _ in threads:
            thread.join(WAIT_S)
    shared_steps = m.stats()["decode_steps"] - before
    for (_, out), expected in zip(threads, solo):
        assert out[0].status_code == 200
        assert np.array_equal(decode_png(out[0].json()["data"][0]["b64_json"]), expected)
    assert shared_steps < solo_steps


# ------------------------------------------------------------------------------------------ bad input
def bomb_png(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height (decoding it would need gigabytes)."""
    raw = bytearray(png_bytes(0, (1, 1)))
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    raw[ihdr + 17:ihdr + 21] = zlib.crc32(bytes(raw[ihdr:ihdr + 17])).to_bytes(4, "big")
    return bytes(raw)


def chat_body(content, **extra) -> dict:
    return {"messages": [{"role": "user", "content": content}], **extra}


def image_part(url: str) -> list:
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What?"}]


BAD_REQUESTS = [  # (route, JSON body or raw bytes, status, param, code)
    (IMAGES, b"{not json", 400, None, "invalid_json"),
    (IMAGES, b"", 400, None, "invalid_json"),
    (IMAGES, b"[1, 2]", 400, None, "invalid_body"),
    (IMAGES, {}, 400, "prompt", "missing_field"),
    (IMAGES, {"prompt": 3}, 400, "prompt", "invalid_type"),
    (IMAGES, {"prompt": "   "}, 400, None, None),
    (IMAGES, {"prompt": "a fox", "n": 0}, 400, "n", None),
    (IMAGES, {"prompt": "a fox", "n": 1000}, 400, "n", None),
    (IMAGES, {"prompt": "a fox", "n": "2"}, 400, "n", "invalid_type"),
    (IMAGES, {"prompt": "a fox", "n": True}, 400, "n", "invalid_type"),
    (IMAGES, {"prompt": "a fox", "size": "1024x1024"}, 400, "size", "unsupported_size"),
    (IMAGES, {"prompt": "a fox", "response_format": "url"}, 400, "response_format", None),
    (IMAGES, {"prompt": "a fox", "temperature": -1}, 400, "temperature", None),
    (IMAGES, {"prompt": "a fox", "top_p": 2.0}, 400, "top_p", None),
    (IMAGES, {"prompt": "a fox", "top_k": 0}, 400, "top_k", None),
    (IMAGES, {"prompt": "a fox", "cfg_weight": -2}, 400, "cfg_weight", None),
    (IMAGES, {"prompt": "a fox", "seed": "7"}, 400, "seed", "invalid_type"),
    (IMAGES, {"prompt": "a fox", "temprature": 1.0}, 400, "temprature", "unknown_field"),
    (IMAGES, {"prompt": "a fox", "model": "dall-e-3"}, 404, "model", "model_not_found"),
    (IMAGES, {"prompt": "fox " * 1000}, 400, "prompt", "context_length_exceeded"),
    (CHAT, {}, 400, "messages", "missing_field"),
    (CHAT, {"messages": []}, 400, "messages", None),
    (CHAT, {"messages": [{"role": "tool", "content": "x"}]}, 400, "messages.0.role", None),
    (CHAT, chat_body(5), 400, "messages.0.content", "invalid_type"),
    (CHAT, chat_body([{"type": "audio"}]), 400, "messages.0.content.0", "invalid_type"),
    (CHAT, chat_body("   "), 400, "messages", "invalid_messages"),
    (CHAT, {"messages": [{"role": "assistant", "content": "hi"}]}, 400, "messages", "invalid_messages"),
    (CHAT, {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, 400, "messages", None),
    (CHAT, chat_body("hi", max_tokens=0), 400, "max_tokens", None),
    (CHAT, chat_body("hi", max_completion_tokens=-3), 400, "max_completion_tokens", None),
    (CHAT, chat_body("hi", max_tokens=1.5), 400, "max_tokens", "invalid_type"),
    (CHAT, chat_body("hi", max_tokens=100000), 400, "max_tokens", "context_length_exceeded"),
    (CHAT, chat_body("hi " * 1200), 400, "messages", "context_length_exceeded"),
    (CHAT, chat_body("hi", temperature="hot"), 400, "temperature", "invalid_type"),
    (CHAT, chat_body("hi", stream="yes"), 400, "stream", "invalid_type"),
    (CHAT, chat_body("hi", n=2), 400, "n", None),
    (CHAT, chat_body("hi", frequency_penalty=0.5), 400, "frequency_penalty", "unknown_field"),
    (CHAT, chat_body(image_part("https://example.com/cat.png")), 400, "messages.0.content.0.image_url.url",
     "image_url_not_supported"),
    (CHAT, chat_body(image_part("data:image/png;base64,@@not base64@@")), 400, "messages.0.content.0.image_url.url",
     "invalid_image"),
    (CHAT, chat_body(image_part(data_uri(b"these bytes are no image"))), 400, "messages.0.content.0.image_url.url",
     "invalid_image"),
    (CHAT, chat_body(image_part(data_uri(png_bytes(0, (20, 30))[:60]))), 400, "messages.0.content.0.image_url.url",
     "invalid_image"),
    (CHAT, chat_body(image_part(data_uri(png_bytes(0, (40, 40))))), 400, "messages.0.content.0.image_url.url",
     "image_too_large"),
    (CHAT, chat_body(image_part(data_uri(bomb_png(100_000, 100_000)))), 400, "messages.0.content.0.image_url.url",
     "image_too_large"),
    (CHAT, chat_body([{"type": "text", "text": "see <image_placeholder>"}]), 400, "messages.0.content.0.text", None),
    (CHAT, {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, 400,
     "messages.1.role", None),
    (CHAT, chat_body("x" * 70_000), 413, None, "body_too_large"),
]


def test_every_bad_request_gets_its_4xx_and_never_reaches_the_engine(make) -> None:
    m = make()
    with serve(m, max_image_pixels=1000, max_body_bytes=64 * 1024, max_images_per_request=4) as url:
        for route, body, status, param, code in BAD_REQUESTS:
            kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) \
                else {"json": body}
            error = assert_error(httpx.post(url + route, timeout=30, **kwargs), status, param, code)
            assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
        assert_error(httpx.get(url + "/v1/nothing-here"), 404, code="not_found")
        assert_error(httpx.get(url + IMAGES), 405, code="method_not_allowed")
        assert m.stats()["prefills"] == 0 and m.stats()["finished_requests"] == 0  # nothing reached the engine
        assert httpx.get(url + "/health").status_code == 200
        assert metric(url, "janus_rt_requests_rejected_total", '{reason="image_too_large"}') == 2
        ok = httpx.post(url + CHAT, json=chat_body(image_part(data_uri(png_bytes(0, (20, 30))))), timeout=60)
        assert ok.status_code == 200, ok.text


def test_the_error_messages_say_what_to_do(make) -> None:
    m = make()
    with serve(m) as url:
        size = assert_error(httpx.post(url + IMAGES, json={"prompt": "x", "size": "256x256"}), 400, "size")
        fetch = assert_error(httpx.post(url + CHAT, json=chat_body(image_part("http://x/y.png"))), 400)
    assert "12x12" in size["message"]  # names the one size accepted
    assert "data URI" in fetch["message"] and "not fetched" in fetch["message"]


# ---------------------------------------------------------------------------------- admission, failure
def test_a_full_queue_answers_429_with_retry_after_and_no_5xx(make, monkeypatch) -> None:
    m = make()
    gate = Gate(m, monkeypatch)
    with serve(m, max_queue=2, retry_after_s=3) as url:
        post = lambda i=0: httpx.post(url + IMAGES, json={"prompt": "a fox", "seed": i}, timeout=60)  # noqa: E731
        threads = [in_thread(lambda i=i: post(i)) for i in range(8)]
        # at most three are held (one in the gated prefill, two waiting): the other five are refused meanwhile
        wait_until(lambda: sum(len(out) for _, out in threads) >= 5, "five refusals")
        gate.open()
        for thread, _ in threads:
            thread.join(WAIT_S)
        statuses = [out[0].status_code for _, out in threads]
        assert set(statuses) <= {200, 429} and statuses.count(429) >= 5 and statuses.count(200) >= 2
        refused = next(out[0] for _, out in threads if out[0].status_code == 429)
        assert_error(refused, 429, code="queue_full")
        assert refused.headers["retry-after"] == "3"
        assert metric(url, "janus_rt_requests_rejected_total", '{reason="queue_full"}') == statuses.count(429)
        assert httpx.get(url + "/health").status_code == 200


def test_a_timeout_is_a_504_and_frees_the_rows(make, monkeypatch) -> None:
    m = make()
    gate = Gate(m, monkeypatch, "decode", at=3)
    with serve(m, request_timeout_s=0.5) as url:
        r = httpx.post(url + IMAGES, json={"prompt": "a fox", "n": 2}, timeout=60)
        assert_error(r, 504, code="timeout")
        assert metric(url, "janus_rt_requests_cancelled_total", '{reason="timeout"}') == 1
        gate.open()
        wait_until(lambda: m.stats()["cancelled_requests"] == 1, "the cancellation")
        s = m.stats()
        assert s["active_rows"] == 0 and s["decode_steps"] < 35  # stopped early, not after the whole image
        assert metric(url, "janus_rt_active_rows") == 0
        assert httpx.post(url + IMAGES, json={"prompt": "a fox"}, timeout=60).status_code == 200


def test_a_client_that_goes_away_has_its_request_cancelled(make, monkeypatch) -> None:
    m = make()
    gate = Gate(m, monkeypatch, "decode", at=3)
    with serve(m) as url:
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            httpx.post(url + IMAGES, json={"prompt": "a fox", "n": 2}, timeout=httpx.Timeout(60, read=0.5))
        wait_until(lambda: metric(url, "janus_rt_requests_cancelled_total", '{reason="client_disconnected"}') == 1,
                   "the server to see the disconnect")
        gate.open()
        wait_until(lambda: m.stats()["cancelled_requests"] == 1, "the cancellation")
        assert m.stats()["active_rows"] == 0 and m.stats()["decode_steps"] < 35
        assert metric(url, "janus_rt_engine_requests_total", '{outcome="cancelled"}') == 1


def test_a_stream_whose_client_goes_away_is_cancelled(make, monkeypatch) -> None:
    m = make()
    gate = Gate(m, monkeypatch, "decode", at=40)
    with serve(m) as url:
        with httpx.stream("POST", url + CHAT, json=chat_body("Tell me a long story.", max_tokens=400, stream=True),
                          timeout=60) as r:
            lines = r.iter_lines()  # kept: a dropped iterator closes the response (the client would leave here)
            assert next(lines).startswith("data: ")
            wait_until(gate.entered.is_set, "the engine to reach the gate")
        wait_until(lambda: metric(url, "janus_rt_requests_cancelled_total", '{reason="client_disconnected"}') == 1,
                   "the server to see the disconnect")
        gate.open()
        wait_until(lambda: m.stats()["cancelled_requests"] == 1, "the cancellation")
        assert m.stats()["active_rows"] == 0 and m.stats()["decode_steps"] < 400


def test_an_api_key_is_required_when_set(make) -> None:
    m = make()
    with serve(m, api_key="s3cret") as url:
        body = {"prompt": "a fox"}
        assert_error(httpx.post(url + IMAGES, json=body), 401, code="invalid_api_key")
        assert_error(httpx.post(url + IMAGES, json=body, headers={"Authorization": "Bearer nope"}), 401)
        assert_error(httpx.get(url + "/v1/models", headers={"Authorization": "Basic s3cret"}), 401)
        good = {"Authorization": "Bearer s3cret"}
        assert httpx.post(url + IMAGES, json=body, headers=good, timeout=60).status_code == 200
        models = httpx.get(url + "/v1/models", headers=good).json()
        assert models["object"] == "list" and [d["id"] for d in models["data"]] == ["janus"]
        assert httpx.get(url + "/health").status_code == 200  # open for load balancers
    assert m.stats()["finished_requests"] == 1


def test_health_is_503_and_requests_fail_fast_once_the_engine_is_closed(make) -> None:
    m = make()
    with serve(m) as url:
        assert httpx.get(url + "/health").json()["status"] == "ok"
        m.close()
        health = httpx.get(url + "/health")
        assert health.status_code == 503 and health.json()["engine"]["closed"] is True
        assert_error(httpx.post(url + IMAGES, json={"prompt": "a fox"}, timeout=30), 503, code="engine_unavailable")
        assert_error(httpx.post(url + CHAT, json=chat_body("hi"), timeout=30), 503, code="engine_unavailable")
        assert metric(url, "janus_rt_engine_alive") == 0


def test_health_is_503_when_the_engine_loop_dies(make, monkeypatch) -> None:
    m = make()

    def broken_bookkeeping() -> None:
        raise RuntimeError("simulated engine bug")

    with serve(m) as url:
        assert httpx.post(url + CHAT, json=chat_body("hi", max_tokens=2), timeout=60).status_code == 200
        monkeypatch.setattr(m.engine, "_count", broken_bookkeeping)  # outside the per-request guard: the loop dies
        # the loop dies after this request's first step, with the request still running: it fails with a 503
        assert_error(httpx.post(url + CHAT, json=chat_body("hi", max_tokens=40), timeout=60), 503,
                     code="engine_unavailable")
        assert_error(httpx.post(url + CHAT, json=chat_body("hi", max_tokens=2), timeout=60), 503,
                     code="engine_unavailable")  # and the next one fails fast
        health = httpx.get(url + "/health")
        assert health.status_code == 503 and "simulated engine bug" in health.json()["engine"]["error"]
        assert_error(httpx.post(url + IMAGES, json={"prompt": "a fox"}, timeout=30), 503, code="engine_unavailable")


def test_one_failing_request_does_not_take_the_server_down(make, monkeypatch) -> None:
    m = make()
    fail_decode_at(m, monkeypatch, call=3)
    with serve(m) as url:
        error = assert_error(httpx.post(url + IMAGES, json={"prompt": "a fox"}, timeout=60), 500, code="engine_error")
        assert "simulated device fault" in error["message"]
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.post(url + IMAGES, json={"prompt": "a fox"}, timeout=60).status_code == 200


def test_metrics_count_what_was_served(make) -> None:
    m = make()
    with serve(m) as url:
        httpx.post(url + IMAGES, json={"prompt": "a fox", "n": 3}, timeout=60).raise_for_status()
        answer = httpx.post(url + CHAT, json=chat_body("hi", max_tokens=5), timeout=60).json()
        text = httpx.get(url + "/metrics").text
        assert metric(url, "janus_rt_images_total") == 3
        assert metric(url, "janus_rt_completion_tokens_total") == answer["usage"]["completion_tokens"]
        assert metric(url, "janus_rt_prompt_tokens_total") == answer["usage"]["prompt_tokens"]
        assert metric(url, "janus_rt_decode_steps_total") == m.stats()["decode_steps"] > 0
        assert metric(url, "janus_rt_request_duration_seconds_count", f'{{route="{IMAGES}"}}') == 1
        assert metric(url, "janus_rt_requests_total", f'{{route="{CHAT}",status="200"}}') == 1
        for name in ("janus_rt_queue_depth", "janus_rt_active_rows", "janus_rt_max_rows"):
            assert f"\n{name} " in text


def test_two_apps_keep_their_own_metrics(make) -> None:
    first, second = make(), make()
    with serve(first) as url_a, serve(second) as url_b:
        httpx.post(url_a + IMAGES, json={"prompt": "a fox"}, timeout=60).raise_for_status()
        assert metric(url_a, "janus_rt_images_total") == 1 and metric(url_b, "janus_rt_images_total") == 0


# ------------------------------------------------------------------------------------- settings, CLI
def test_settings_are_validated() -> None:
    with pytest.raises(InputError, match="max_queue must be an integer >= 1"):
        ServeSettings(max_queue=0)
    with pytest.raises(InputError, match="request_timeout_s must be > 0"):
        ServeSettings(request_timeout_s=-1)
    with pytest.raises(InputError, match="api_key is empty"):
        ServeSettings(api_key=" ")


@pytest.mark.subprocess
def test_serve_help_teaches_with_examples() -> None:
    out = subprocess.run([sys.executable, "-m", "janus_rt.cli.main", "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for needle in ("--max-queue", "--request-timeout", "--api-key", "JANUS_RT_API_KEY", "curl", "/v1/chat/completions"):
        assert needle in out.stdout


def test_a_missing_serve_extra_says_how_to_install_it(monkeypatch) -> None:
    import importlib

    from janus_rt import serve

    real = importlib.import_module

    def without_fastapi(name, *args):
        if name == "fastapi":
            raise ImportError("No module named 'fastapi'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_fastapi)
    with pytest.raises(InputError, match=r"pip install 'janus-rt\[serve\]'"):
        serve.require_serve_extra()


@pytest.mark.parametrize("flags,message", [
    (["--replicas", "2"], "--replicas and --ray-address need --ray"),
    (["--ray", "--port", "0"], "--port 0 .* does not work with --ray"),
    (["--ray", "--replicas", "0"], "--replicas must be an integer >= 1"),
])
def test_ray_flags_are_checked_before_anything_starts(tmp_path, capsys, flags, message) -> None:
    from janus_rt.cli.main import main

    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    assert main(["serve", "--model", str(ckpt), "--device", "cpu", *flags]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_missing_ray_extra_says_how_to_install_it(monkeypatch) -> None:
    import importlib

    from janus_rt.serve.ray_app import require_ray_extra

    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
                        lambda name, *a: (_ for _ in ()).throw(ImportError("No module named 'ray'"))
                        if name.startswith("ray") else real(name, *a))
    with pytest.raises(InputError, match=r"pip install 'janus-rt\[ray\]'"):
        require_ray_extra()


@pytest.mark.subprocess
def test_sigterm_finishes_the_in_flight_request_and_exits_0(tmp_path) -> None:
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")  # what the CLI gives: 24x24 grid, 576 steps an image
    env = {**os.environ, "JANUS_RT_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "janus_rt.cli.main", "serve", "--model", str(ckpt), "--device", "cpu",
                             "--port", "0", "--grace-period", "60", "--warmup"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        url, before = None, []
        for line in proc.stderr:
            if (found := re.search(r"on (http://127\.0\.0\.1:\d+)", line)):
                url = found.group(1)
                break
            before.append(line)
        assert url is not None, "the server never said where it listens"
        assert any(line.startswith("warmed up") for line in before), before  # --warmup ran before the port opened
        threading.Thread(target=lambda: [line for line in proc.stderr], daemon=True).start()  # keep the pipe drained
        wait_until(lambda: _health(url) == 200, "the server to be ready")
        thread, out = in_thread(lambda: httpx.post(url + IMAGES, json={"prompt": "a fox", "seed": 0}, timeout=120))
        wait_until(lambda: metric(url, "janus_rt_active_rows") > 0, "the request to run")
        proc.send_signal(signal.SIGTERM)
        thread.join(120)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out[0].status_code == 200, out[0].text
    assert decode_png(out[0].json()["data"][0]["b64_json"]).shape == (48, 48, 3)


def _health(url: str) -> int:
    try:
        return httpx.get(url + "/health", timeout=5).status_code
    except httpx.TransportError:
        return 0
