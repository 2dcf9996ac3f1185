"""Cheap checks before costly work, and a 4xx (never a 5xx) for bad input: the one request path's guards.

Library: a text that cannot fit is refused from its byte size without tokenizing; lone surrogates, out-of-range
seeds, temperatures and CFG weights are InputErrors naming the field. Server (a real one on 127.0.0.1): the
same inputs are 400s with the field; deeply nested JSON is a 400; an oversized prompt is refused without being
tokenized; a message with more images than the context holds is refused before any image is decoded.
"""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

import janus_rt
from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.errors import InputError

from serve_utils import base, ckpt, make, start_server  # noqa: F401  (fixtures)



@pytest.fixture
def count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every JanusTokenizer.encode call's text length, in order (to prove a refusal came before tokenizing)."""
    calls: list[int] = []
    real = JanusTokenizer.encode

    def counting(self: JanusTokenizer, text: str) -> list[int]:
        calls.append(len(text))
        return real(self, text)

    monkeypatch.setattr(JanusTokenizer, "encode", counting)
    return calls


def test_a_prompt_that_cannot_fit_is_refused_without_tokenizing(torch_model: janus_rt.Janus,
                                                                 count_encodes: list[int]) -> None:
    per_token = torch_model.tokenizer.max_token_bytes
    assert per_token is not None and per_token > 1
    slots = torch_model.engine.capacity.slots
    too_long = "fox " * (slots * per_token // 4 + 1)  # more bytes than `slots` tokens can cover
    with pytest.raises(InputError, match=r"prompt is [\d,]+ bytes of text, at least [\d,]+ tokens, more than the "
                                         r"[\d,]+ cache slots") as caught:
        torch_model.submit_images(too_long)
    assert caught.value.param == "prompt" and caught.value.code == "context_length_exceeded"
    with pytest.raises(InputError, match=r"question is [\d,]+ bytes of text") as caught:
        torch_model.submit_chat(too_long)
    assert caught.value.code == "context_length_exceeded"
    assert count_encodes == []  # neither text was tokenized
    # a text at the bound's edge is tokenized and then refused by the exact count (the bound is a lower bound)
    just_under = "fox " * (slots * per_token // 4 - 1)
    with pytest.raises(InputError, match=r"cache slots"):
        torch_model.submit_images(just_under)
    assert len(count_encodes) == 1


def test_the_byte_bound_never_refuses_what_fits(torch_model: janus_rt.Janus) -> None:
    """max_token_bytes is an upper bound of every token's text: no real tokenization beats it."""
    tok = torch_model.tokenizer
    rng = np.random.default_rng(0)
    words = ["fox", "snow", " ", "  ", "\n", "é", "狐", "🦊", "<image_placeholder>", "<begin_of_image>", "aaaa"]
    for _ in range(50):
        text = "".join(rng.choice(words, size=int(rng.integers(1, 60))))
        ids = tok.encode(text)
        assert len(text.encode("utf-8")) <= len(ids) * tok.max_token_bytes


@pytest.mark.parametrize("call, param", [
    (lambda m: m.submit_images("a \ud800 fox"), "prompt"),
    (lambda m: m.submit_images(["a fox", "\udfff"]), "prompt"),
    (lambda m: m.submit_chat("what is \ud83d?"), "question"),
    (lambda m: m.submit_chat("what is it?", system_prompt="be \udc00 brief"), "question"),
])
def test_lone_surrogates_are_input_errors(torch_model: janus_rt.Janus, count_encodes: list[int], call, param) -> None:
    with pytest.raises(InputError, match=r"is not valid Unicode: '\\ud[89a-f][0-9a-f]{2}' at character \d+") as caught:
        call(torch_model)
    assert caught.value.param == param
    assert count_encodes == []


@pytest.mark.parametrize("kwargs, param", [
    ({"seed": 2**64}, "seed"), ({"seed": -1}, "seed"), ({"temperature": 1e-300}, "temperature"),
    ({"temperature": math.inf}, "temperature"), ({"cfg_weight": 1e308}, "cfg_weight"),
])
def test_out_of_range_sampling_is_an_input_error(torch_model: janus_rt.Janus, kwargs: dict, param: str) -> None:
    with pytest.raises(InputError) as caught:
        torch_model.submit_images("a fox", **kwargs)
    assert caught.value.param == param


def test_the_largest_seed_runs_and_repeats(make) -> None:
    m = make()
    a = m.generate_images("a fox", num_images=2, seed=2**64 - 1).tokens
    b = m.generate_images("a fox", num_images=2, seed=2**64 - 1).tokens
    assert torch_equal(a, b)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


# ---------------------------------------------------------------------------------------------------- server
def _png(side: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def server(base):  # noqa: F811
    with start_server(base) as url:
        yield url


def _post(url: str, route: str, body: bytes | str) -> tuple[int, dict]:
    import httpx

    response = httpx.post(f"{url}{route}", content=body if isinstance(body, bytes) else body.encode(),
                          headers={"content-type": "application/json"}, timeout=60)
    return response.status_code, response.json()


@pytest.mark.parametrize("route, raw, param", [
    ("/v1/images/generations", '{"prompt": "a \\ud800 fox"}', "prompt"),
    ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "hi \\udfff"}]}', "messages"),
    ("/v1/chat/completions", '{"messages": [{"role": "system", "content": "\\ud800"}, '
                             '{"role": "user", "content": "hi"}]}', "messages"),
    ("/v1/images/generations", json.dumps({"prompt": "a fox", "seed": 2**64}), "seed"),
    ("/v1/images/generations", json.dumps({"prompt": "a fox", "temperature": 1e-300}), "temperature"),
    ("/v1/images/generations", json.dumps({"prompt": "a fox", "cfg_weight": 1e308}), "cfg_weight"),
    ("/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": "hi"}], "seed": 2**64}), "seed"),
])
def test_bad_values_are_400s_naming_the_field(server: str, route: str, raw: str, param: str) -> None:
    status, body = _post(server, route, raw)
    assert status == 400, body
    assert body["error"]["param"] == param, body


def test_deeply_nested_json_is_a_400(server: str) -> None:
    status, body = _post(server, "/v1/chat/completions", "[" * 10_000 + "]" * 10_000)
    assert status == 400 and body["error"]["code"] == "invalid_json", body
    status, body = _post(server, "/v1/images/generations", '{"prompt": "a fox", "user": ' + "[" * 5000 + "]" * 5000 + "}")
    assert status == 400, body


def test_an_oversized_prompt_is_refused_before_tokenizing(server: str, count_encodes: list[int]) -> None:
    status, body = _post(server, "/v1/images/generations", json.dumps({"prompt": "fox " * 500_000}))  # 2 MB
    assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
    assert body["error"]["param"] == "prompt"
    status, body = _post(server, "/v1/chat/completions",
                         json.dumps({"messages": [{"role": "user", "content": "fox " * 500_000}]}))
    assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
    assert count_encodes == []


def test_too_many_images_are_refused_before_any_is_decoded(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    image = {"type": "image_url", "image_url": {"url": _png(64)}}
    decoded: list[int] = []
    real_load = Image.Image.load

    def counting_load(self: Image.Image):
        decoded.append(1)
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", counting_load)
    content = [image] * 40 + [{"type": "text", "text": "compare"}]  # 40 images: far over the tiny context
    status, body = _post(server, "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": content}]}))
    assert status == 400 and body["error"]["code"] == "context_length_exceeded", body
    assert decoded == []
    status, body = _post(server, "/v1/chat/completions", json.dumps(
        {"messages": [{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}], "max_tokens": 2}))
    assert status == 200, body  # one image fits, and is decoded then
    assert decoded
