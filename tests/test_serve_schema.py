"""The server's OpenAPI document (`/openapi.json`, `/docs`) and a bounded schemathesis pass against a real server.

The document is generated from the request models (schemas.py) and the response models (responses.py), though the
routes read their bodies themselves; schemathesis then sends what the document allows (and what it forbids) to a
live server on 127.0.0.1 with a fixed seed, a bounded number of examples per operation and a time limit, and checks
that no answer is a 5xx and every answer matches the document's schema for its status.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from janus_rt.serve.settings import ServeSettings  # noqa: E402
from serve_utils import base, ckpt, make, start_server  # noqa: E402,F401 - fixtures

EXAMPLES_PER_OPERATION = 60  # per generation mode (valid and invalid requests): about 10 s in all here
TIME_LIMIT_S = 30.0  # past it, the remaining examples are generated but not sent


def test_openapi_document_declares_request_and_response_models(make) -> None:
    with start_server(make(), ServeSettings(port=0)) as url:
        doc = httpx.get(f"{url}/openapi.json", timeout=30).json()
        page = httpx.get(f"{url}/docs", timeout=30)
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "/v1/chat/completions" in page.text and "max_tokens" in page.text  # the routes and their fields
    assert "<script" not in page.text and "http" not in page.text.replace("http://", "")  # self-contained: no CDN
    schemas = doc["components"]["schemas"]
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    images = doc["paths"]["/v1/images/generations"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletionRequest")
    assert images["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ImageGenerationRequest")
    assert {"messages", "stop", "stream", "max_tokens"} <= set(schemas["ChatCompletionRequest"]["properties"])
    assert schemas["ChatCompletionRequest"]["additionalProperties"] is False  # unknown fields are refused
    assert "developer" in schemas["ChatMessage"]["properties"]["role"]["enum"]
    assert set(schemas["ImagesResponse"]["properties"]) == {"created", "data", "usage"}
    image_fields = schemas["ImageGenerationRequest"]["properties"]
    assert {"stream", "partial_images", "negative_prompt", "output_format", "output_compression", "background",
            "quality", "moderation", "progress_events"} <= set(image_fields)
    assert (image_fields["partial_images"]["maximum"], image_fields["output_compression"]["maximum"]) == (3, 100)
    assert "text/event-stream" in images["responses"]["200"]["content"]  # the streamed answer
    assert {"PartialImageEvent", "CompletedImageEvent", "ProgressEvent", "ErrorEvent"} <= set(schemas)
    assert "load" in schemas["Health"]["properties"]
    assert chat["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletion")
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert images["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "/v1/models/{model_id}" in doc["paths"]
    assert all("422" not in op["responses"] for path in doc["paths"].values() for op in path.values())


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(make) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    checks = [not_a_server_error, response_schema_conformance]
    with start_server(make(), ServeSettings(port=0, max_images_per_request=2, default_max_tokens=16,
                                            request_timeout_s=30.0)) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        deadline = time.monotonic() + TIME_LIMIT_S
        sent = 0
        for found in schema.get_all_operations():
            operation = found.ok()
            cases = st.one_of(operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
                              operation.as_strategy(schemathesis.GenerationMode.NEGATIVE))

            @seed(20260)
            @settings(max_examples=2 * EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
            @given(case=cases)
            def check(case) -> None:
                nonlocal sent
                if time.monotonic() > deadline:
                    return
                case.call_and_validate(base_url=url, checks=checks, timeout=30)
                sent += 1

            check()
    assert sent >= 6  # every operation was reached at least once
