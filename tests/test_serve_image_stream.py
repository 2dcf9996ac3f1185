"""Streamed images, negative prompts, output formats and the playground route, over real HTTP (serve_utils).

A tiny checkpoint with a 6x6 image-token grid (36 decode steps an image, 12x12 px); with partial_images=2 the
previews come after rows 2 and 4. What is proven here:
- the official `openai` SDK parses every event of `images.generate(stream=True, partial_images=2)`: partial images
  (12x12 PNGs, rows not drawn yet flat gray) before the completed one, which equals the non-streamed image and
  the library's for the same seed; with n=2 events carry image_index; progress_events gives increasing rows_done;
- a partial image is sent while the engine is held before the last row (never kept until the end);
- a client that leaves mid-stream has its job cancelled (rows freed); a timeout or an engine fault ends the stream
  with an error event;
- output_format jpeg / webp round-trip through Pillow and output_compression changes the file; png stays the bytes
  the server always sent; every refusal is a 400 naming its field, before any work;
- negative_prompt changes the image for a fixed seed, an empty one does not;
- GET / serves the playground with a same-origin Content-Security-Policy, a 404 with --no-ui; /health's load.
The engine is held by a gate in the backend's decode step, never by sleeping; every wait is bounded.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Iterator

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from PIL import Image  # noqa: E402

import janus_rt  # noqa: E402
from janus_rt.cli.main import build_parser  # noqa: E402
from janus_rt.errors import InputError  # noqa: E402
from janus_rt.cli.serve import settings_from_args  # noqa: E402
from janus_rt.serve.settings import ServeSettings  # noqa: E402
from faults import fail_decode_at  # noqa: E402
from serve_utils import base, ckpt, make, start_server  # noqa: E402,F401 - fixtures
from test_serve import Gate, wait_until  # noqa: E402

IMAGES = "/v1/images/generations"
PROMPT = "a red fox"
WAIT_S = 60.0  # bound of every wait (a failure, not a timing assertion)
PARTIAL = "image_generation.partial_image"
COMPLETED = "image_generation.completed"
PROGRESS = "janus_rt.progress"


def serve(m: janus_rt.Janus, **settings):
    return start_server(m, ServeSettings(port=0, **settings))


def client(url: str) -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=WAIT_S)


def decode(b64: str) -> tuple[np.ndarray, str]:
    """base64 image file -> (uint8 pixels, Pillow's format name)."""
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    return np.asarray(image), image.format


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    """(event name, JSON data) of each server-sent event read from `lines`."""
    name, data = None, []
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = None, []


def stream_images(url: str, **body) -> list[dict]:
    """Every event of one streamed request (each event's name checked against its JSON's type)."""
    with httpx.stream("POST", url + IMAGES, json={"prompt": PROMPT, "stream": True, **body}, timeout=WAIT_S) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.read()
        events = list(sse_events(r.iter_lines()))
    for name, event in events:
        assert name == event["type"], (name, event["type"])
    return [event for _, event in events]


def metric(url: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{url}/metrics", timeout=WAIT_S).text
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, flags=re.M)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------------------------------------ the SDK's stream
def test_sdk_parses_the_stream_and_the_completed_image_is_the_non_streamed_one(make) -> None:
    m = make()
    side, grid = m.config.vq.image_size, m.config.vq.image_token_grid
    with serve(m) as url:
        sdk = client(url)
        events = list(sdk.images.generate(model="janus", prompt=PROMPT, stream=True, partial_images=2,
                                          extra_body={"seed": 7}))
        plain = sdk.images.generate(model="janus", prompt=PROMPT, extra_body={"seed": 7})
    kinds = [e.type for e in events]
    assert set(kinds) == {PARTIAL, COMPLETED} and kinds.count(COMPLETED) == 1 and kinds[-1] == COMPLETED
    partials = [e for e in events if e.type == PARTIAL]
    assert [p.partial_image_index for p in partials] == sorted({p.partial_image_index for p in partials})
    assert {p.partial_image_index for p in partials} <= {0, 1}  # latest wins: one may be skipped, never reordered
    for p in partials:
        pixels, kind = decode(p.b64_json)
        assert kind == "PNG" and pixels.shape == (side, side, 3)
        assert (p.size, p.output_format, p.background, p.quality) == (f"{side}x{side}", "png", "opaque", "auto")
        assert 0 < p.rows_done < grid and not hasattr(p, "image_index")
        assert (pixels[side * p.rows_done // grid:] == 128).all()  # rows not drawn yet are flat gray
    completed = events[-1]
    streamed, kind = decode(completed.b64_json)
    assert kind == "PNG" and streamed.shape == (side, side, 3)
    assert np.array_equal(streamed, decode(plain.data[0].b64_json)[0])
    assert np.array_equal(streamed, m.generate_images(PROMPT, seed=7).images[0])
    assert completed.usage.output_tokens == grid * grid == plain.usage.output_tokens
    assert completed.usage.input_tokens == plain.usage.input_tokens > 0


def test_n2_events_carry_image_index_and_progress_rows_increase(make) -> None:
    m = make()
    grid = m.config.vq.image_token_grid
    with serve(m) as url:
        events = stream_images(url, n=2, seed=3, partial_images=1, progress_events=True)
        plain = httpx.post(url + IMAGES, json={"prompt": PROMPT, "n": 2, "seed": 3}, timeout=WAIT_S).json()
    completed = [e for e in events if e["type"] == COMPLETED]
    assert [e["image_index"] for e in completed] == [0, 1]
    assert events.index(completed[0]) > max(i for i, e in enumerate(events) if e["type"] != COMPLETED)
    for event, item in zip(completed, plain["data"]):
        assert np.array_equal(decode(event["b64_json"])[0], decode(item["b64_json"])[0])
    partials = [e for e in events if e["type"] == PARTIAL]
    assert partials and all(e["image_index"] in (0, 1) and e["partial_image_index"] == 0 for e in partials)
    for image in (0, 1):
        drawn = [e["rows_done"] for e in events if e["type"] == PROGRESS and e["image_index"] == image
                 and not e["queued"]]
        assert drawn == sorted(set(drawn)) and drawn[-1] == grid, drawn  # sent when it changes: increasing
        assert all(e["rows"] == grid for e in events if e["type"] == PROGRESS)


# ----------------------------------------------------------------------------------- held by the engine
def test_a_partial_image_is_sent_before_the_last_row_is_drawn(make, monkeypatch) -> None:
    m = make()
    grid = m.config.vq.image_token_grid
    held = Gate(m, monkeypatch, "decode", at=grid * grid // 3 + 2)  # after the first preview point (row 2 of 6)
    with serve(m) as url:
        body = {"prompt": PROMPT, "stream": True, "partial_images": 2, "seed": 1}
        with httpx.stream("POST", url + IMAGES, json=body, timeout=WAIT_S) as r:
            events = sse_events(r.iter_lines())
            name, first = next(events)
            assert name == PARTIAL and first["rows_done"] == grid // 3
            wait_until(held.entered.is_set, "the engine to reach the held step")
            assert not held.opened.is_set() and m.stats()["active_rows"] > 0  # the image is still being drawn
            held.opened.set()
            rest = [event for _, event in events]
    assert rest[-1]["type"] == COMPLETED and all(e["type"] in (PARTIAL, COMPLETED) for e in rest)


def test_a_stream_whose_client_goes_away_frees_its_rows(make, monkeypatch) -> None:
    m = make()
    held = Gate(m, monkeypatch, "decode", at=20)
    with serve(m) as url:
        body = {"prompt": PROMPT, "stream": True, "partial_images": 1, "n": 2}
        with httpx.stream("POST", url + IMAGES, json=body, timeout=WAIT_S) as r:
            events = sse_events(r.iter_lines())  # kept: a dropped iterator closes the response
            assert next(events)[0] == PARTIAL
            wait_until(held.entered.is_set, "the engine to reach the held step")
        wait_until(lambda: metric(url, "janus_rt_requests_cancelled_total", '{reason="client_disconnected"}') == 1,
                   "the server to see the disconnect")
        held.opened.set()
        wait_until(lambda: m.stats()["cancelled_requests"] == 1, "the cancellation")
        assert m.stats()["active_rows"] == 0 and m.stats()["decode_steps"] < 35
        assert httpx.get(url + "/health", timeout=WAIT_S).json()["load"]["active_rows"] == 0


def test_a_stream_past_the_timeout_ends_with_an_error_event(make, monkeypatch) -> None:
    m = make()
    held = Gate(m, monkeypatch, "decode", at=3)
    with serve(m, request_timeout_s=0.5) as url:
        events = stream_images(url, partial_images=1)
        held.opened.set()
        last = events[-1]
        assert set(last) == {"type", "error"} and last["type"] == "error" and last["error"]["code"] == "timeout"
        assert all(e["type"] != COMPLETED for e in events)
        wait_until(lambda: m.stats()["cancelled_requests"] == 1, "the cancellation")
        assert m.stats()["active_rows"] == 0
        assert metric(url, "janus_rt_requests_cancelled_total", '{reason="timeout"}') == 1


def test_an_engine_fault_mid_stream_ends_it_with_an_error_event(make, monkeypatch) -> None:
    m = make()
    fail_decode_at(m, monkeypatch, call=20)  # after the first preview (row 2 of 6)
    with serve(m) as url:
        events = stream_images(url, partial_images=2)
        assert httpx.get(url + "/health", timeout=WAIT_S).status_code == 200  # the engine goes on
    assert events[0]["type"] == PARTIAL and all(e["type"] != COMPLETED for e in events)
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "engine_error"
    assert "simulated device fault" in events[-1]["error"]["message"]


# ------------------------------------------------------------------------------------------ formats, fields
def test_output_formats_round_trip_and_png_stays_the_same_bytes(make) -> None:
    m = make()
    side = m.config.vq.image_size
    def post(**body) -> httpx.Response:
        return httpx.post(url + IMAGES, json={"prompt": PROMPT, "seed": 5, **body}, timeout=WAIT_S)
    with serve(m) as url:
        png = post().json()["data"][0]["b64_json"]
        files = {(fmt, q): base64.b64decode(post(output_format=fmt, output_compression=q).json()["data"][0]["b64_json"])
                 for fmt in ("jpeg", "webp") for q in (5, 95)}
        default_quality = post(output_format="jpeg").json()["data"][0]["b64_json"]
        streamed = stream_images(url, seed=5, output_format="webp", output_compression=95, partial_images=1)
    expected = m.generate_images(PROMPT, seed=5).images[0]
    buffer = io.BytesIO()
    Image.fromarray(expected).save(buffer, format="PNG")
    assert base64.b64decode(png) == buffer.getvalue()  # PNG by default, byte for byte what the server always sent
    for (fmt, q), raw in files.items():
        image = Image.open(io.BytesIO(raw))
        assert image.format == fmt.upper() and image.size == (side, side)
    for fmt in ("jpeg", "webp"):
        assert len(files[fmt, 5]) < len(files[fmt, 95]), fmt  # lower quality, smaller file
    assert decode(default_quality)[1] == "JPEG"
    assert {e["output_format"] for e in streamed if e["type"] in (PARTIAL, COMPLETED)} == {"webp"}
    assert base64.b64decode(streamed[-1]["b64_json"]) == files["webp", 95]


REFUSALS = [  # (extra body fields, the param the 400 names)
    ({"partial_images": 4, "stream": True}, "partial_images"),
    ({"partial_images": -1, "stream": True}, "partial_images"),
    ({"partial_images": 2}, "partial_images"),  # needs stream
    ({"partial_images": 1, "stream": False}, "partial_images"),
    ({"output_compression": 101, "output_format": "jpeg"}, "output_compression"),
    ({"output_compression": -1, "output_format": "webp"}, "output_compression"),
    ({"output_compression": 50}, "output_compression"),  # png takes none
    ({"output_compression": 50, "output_format": "png"}, "output_compression"),
    ({"background": "transparent"}, "background"),
    ({"output_format": "gif"}, "output_format"),
    ({"output_format": "jpg"}, "output_format"),
    ({"progress_events": True}, "progress_events"),  # needs stream
    ({"negative_prompt": 5}, "negative_prompt"),
    ({"stream": "yes"}, "stream"),
    ({"quality": "ultra"}, "quality"),
]


def test_every_refusal_is_a_400_naming_the_field_before_any_work(make) -> None:
    m = make()
    with serve(m) as url:
        for extra, param in REFUSALS:
            r = httpx.post(url + IMAGES, json={"prompt": PROMPT, **extra}, timeout=WAIT_S)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, (extra, r.text)
            assert r.json()["error"]["message"]
        needs_stream = httpx.post(url + IMAGES, json={"prompt": PROMPT, "partial_images": 2}, timeout=WAIT_S)
        assert "stream" in needs_stream.json()["error"]["message"]
        accepted = httpx.post(url + IMAGES, json={"prompt": PROMPT, "quality": "high", "background": "opaque",
                                                  "moderation": "low", "partial_images": None,
                                                  "output_format": None}, timeout=WAIT_S)
        assert accepted.status_code == 200, accepted.text
    assert m.stats()["finished_requests"] == 1  # only the accepted request reached the engine


def test_negative_prompt_changes_the_image_and_an_empty_one_does_not(make) -> None:
    m = make()
    def post(**body) -> httpx.Response:
        return httpx.post(url + IMAGES, json={"prompt": PROMPT, "seed": 11, **body}, timeout=WAIT_S)
    with serve(m) as url:
        plain, empty, negative = (decode(post(**extra).json()["data"][0]["b64_json"])[0]
                                  for extra in ({}, {"negative_prompt": ""}, {"negative_prompt": "blurry, gray"}))
        streamed = stream_images(url, seed=11, negative_prompt="blurry, gray")
    assert np.array_equal(plain, empty) and not np.array_equal(plain, negative)
    assert np.array_equal(negative, m.generate_images(PROMPT, seed=11, negative_prompt="blurry, gray").images[0])
    assert np.array_equal(negative, decode(streamed[-1]["b64_json"])[0])


# --------------------------------------------------------------------------------------- playground, health
def test_the_playground_page_has_a_same_origin_policy_and_no_ui_turns_it_off(make) -> None:
    m = make()
    with serve(m) as url:
        page = httpx.get(url + "/", timeout=WAIT_S)
        health = httpx.get(url + "/health", timeout=WAIT_S).json()
        assert metric(url, "janus_rt_requests_total", '{route="/",status="200"}') == 1
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "img-src 'self' data: blob:" in policy
    assert "<html" in page.text.lower()
    assert set(health["load"]) == {"queued_requests", "active_rows", "max_rows"} and health["load"]["max_rows"] > 0
    with serve(m, ui=False) as url:
        off = httpx.get(url + "/", timeout=WAIT_S)
        assert httpx.get(url + "/health", timeout=WAIT_S).status_code == 200
    assert off.status_code == 404 and off.json()["error"]["code"] == "not_found"


def test_no_ui_flag_sets_the_setting_and_help_teaches_it(capsys) -> None:
    parse = build_parser("serve").parse_args
    assert settings_from_args(parse(["serve", "--model", "m"])).ui is True
    assert settings_from_args(parse(["serve", "--model", "m", "--no-ui"])).ui is False
    with pytest.raises(SystemExit):
        parse(["serve", "--help"])
    text = capsys.readouterr().out
    assert "--no-ui" in text and "playground" in text and "partial_images" in text and "output_format" in text
    with pytest.raises(InputError):
        ServeSettings(ui="no")
