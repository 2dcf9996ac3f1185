"""OpenAI compatibility, proven with the official `openai` SDK against a real server on 127.0.0.1 (serve_utils).

- `models.list` / `models.retrieve` (`GET /v1/models/{id}`, a 404 in OpenAI's error shape for another id, ids with
  a slash included);
- `chat.completions.create`, plain and streamed, with `stop` (the answer ends right before the first match,
  finish_reason "stop", a stream never shows text past it), and the library's answer for the same question;
- `images.generate` (b64_json) with `usage` (input = the prompt's tokens, output = grid x grid per image);
- role `developer` is `system`; bad `stop` values are 400s naming `stop`; a 405 carries `Allow`.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from PIL import Image  # noqa: E402

import janus_rt  # noqa: E402
from janus_rt.requests.image import check_generation_args, prepare_images  # noqa: E402
from janus_rt.serve.settings import ServeSettings  # noqa: E402
from serve_utils import base, ckpt, make, start_server  # noqa: E402,F401 - fixtures

CHAT = "/v1/chat/completions"
QUESTION = "Tell me about foxes."
NAME = "deepseek/janus-tiny"  # a hub-style id: the slash must survive models.retrieve


def client(url: str) -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def pick_stop(text: str) -> tuple[str, str]:
    """A 3-character stop sequence of plain characters from the middle of `text`, and the text before its first
    occurrence (non-empty and shorter than `text`)."""
    for start in range(len(text) // 3, len(text) - 3):
        stop = text[start:start + 3]
        if all(c.isalnum() or c == " " for c in stop) and text.find(stop) > 0:
            return stop, text[:text.find(stop)]
    raise AssertionError(f"no plain 3-character stop sequence in {text!r}")


def test_sdk_models_chat_and_stop(make) -> None:
    m = make()
    library = m.chat(QUESTION, max_new_tokens=40).text
    stop, before = pick_stop(library)
    messages = [{"role": "user", "content": QUESTION}]
    with start_server(m, ServeSettings(port=0, model_name=NAME)) as url:
        sdk = client(url)
        assert [model.id for model in sdk.models.list().data] == [NAME]
        retrieved = sdk.models.retrieve(NAME)
        assert (retrieved.id, retrieved.object, retrieved.owned_by) == (NAME, "model", "janus-rt")
        with pytest.raises(openai.NotFoundError) as missing:
            sdk.models.retrieve("gpt-4o")
        assert missing.value.status_code == 404 and missing.value.body["code"] == "model_not_found"

        plain = sdk.chat.completions.create(model=NAME, messages=messages, max_tokens=40)
        assert plain.choices[0].message.content == library
        streamed = [chunk for chunk in sdk.chat.completions.create(model=NAME, messages=messages, max_tokens=40,
                                                                    stream=True)]
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == library

        stopped = sdk.chat.completions.create(model=NAME, messages=messages, max_tokens=40, stop=[stop, "\x00never"])
        assert stopped.choices[0].message.content == before
        assert stopped.choices[0].finish_reason == "stop"
        assert stopped.usage.completion_tokens < plain.usage.completion_tokens
        pieces, finish = [], []
        for chunk in sdk.chat.completions.create(model=NAME, messages=messages, max_tokens=40, stop=stop, stream=True):
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish.append(chunk.choices[0].finish_reason)
                assert stop not in "".join(pieces)  # never past the match, at any point of the stream
        assert "".join(pieces) == before and [f for f in finish if f] == ["stop"]


def test_sdk_images_carry_usage(make) -> None:
    m = make()
    prompt = "a red fox"
    prepared = prepare_images(prompt, 1, check_generation_args(1), m.request_context)
    grid = m.config.vq.image_token_grid
    with start_server(m, ServeSettings(port=0)) as url:
        result = client(url).images.generate(model="janus", prompt=prompt, n=2, response_format="b64_json")
    assert len(result.data) == 2
    side = m.config.vq.image_size
    for image in result.data:
        assert np.asarray(Image.open(io.BytesIO(base64.b64decode(image.b64_json)))).shape == (side, side, 3)
    usage = result.usage
    assert usage.input_tokens == len(prepared.prompt_ids[0]) and usage.output_tokens == 2 * grid * grid
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.text_tokens == usage.input_tokens


def test_developer_role_is_a_system_message(make) -> None:
    m = make()
    ask = {"max_tokens": 12}
    with start_server(m, ServeSettings(port=0)) as url:
        answers = {role: httpx.post(url + CHAT, timeout=60, json={**ask, "messages": [
            {"role": role, "content": "Answer in French."}, {"role": "user", "content": QUESTION}]})
            for role in ("system", "developer")}
        late = httpx.post(url + CHAT, timeout=60, json={**ask, "messages": [
            {"role": "user", "content": QUESTION}, {"role": "developer", "content": "x"}]})
    assert answers["developer"].status_code == 200, answers["developer"].text
    assert answers["developer"].json()["choices"] == answers["system"].json()["choices"]
    assert late.status_code == 400 and late.json()["error"]["param"] == "messages.1.role"


@pytest.mark.parametrize("stop", ["", ["a", "b", "c", "d", "e"], [""], [1], {"s": 1}])
def test_bad_stop_values_are_400s_naming_stop(make, stop) -> None:
    with start_server(make(), ServeSettings(port=0)) as url:
        r = httpx.post(url + CHAT, timeout=60, json={"messages": [{"role": "user", "content": "hi"}], "stop": stop})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stop", r.text


def test_405_answers_carry_allow(make) -> None:
    with start_server(make(), ServeSettings(port=0)) as url:
        wrong = {"GET": httpx.get(url + CHAT, timeout=30), "POST": httpx.post(url + "/v1/models", timeout=30),
                 "DELETE": httpx.delete(url + "/v1/models/janus", timeout=30)}
    for method, r in wrong.items():
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed", (method, r.text)
    assert wrong["GET"].headers["allow"] == "POST" and "it takes: POST" in wrong["GET"].json()["error"]["message"]
    assert "GET" in wrong["POST"].headers["allow"].split(", ")
    assert "GET" in wrong["DELETE"].headers["allow"].split(", ")
