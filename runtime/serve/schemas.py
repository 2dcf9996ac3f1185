"""Request bodies of each route as pydantic models: what a client may send, type-checked strictly.

Strict mode: a number is not accepted as a string nor a string as a number, `true` is not an integer;
unknown fields are refused (a misspelt `temprature` is an error, not a silent default). Range checks that the
library already makes (`SamplingParams`) stay there, so the server and the library refuse the same values
with the same words. Chat message contents are checked in messages.py (their parts name their own paths).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from janus_rt.engine.params import CHAT_DEFAULTS, IMAGE_DEFAULTS
from janus_rt.serve.errors import APIError, invalid

Model = TypeVar("Model", bound=BaseModel)


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ImageGenerationRequest(StrictBody):
    """POST /v1/images/generations (OpenAI's fields, plus janus-rt's sampling fields)."""

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None  # only the model's own "SxS"
    response_format: str = "b64_json"  # only b64_json (PNG): the server stores no images to link to
    user: str | None = None  # accepted for OpenAI clients, unused
    cfg_weight: float = IMAGE_DEFAULTS.cfg_weight
    temperature: float = IMAGE_DEFAULTS.temperature
    top_k: int | None = IMAGE_DEFAULTS.top_k
    top_p: float | None = IMAGE_DEFAULTS.top_p
    seed: int | None = None


class ChatMessage(StrictBody):
    role: Literal["system", "user", "assistant"]
    content: Any = None  # a string or a list of {"type": "text" | "image_url", ...} parts (messages.py)
    name: str | None = None  # accepted for OpenAI clients, unused


class StreamOptions(StrictBody):
    include_usage: bool = False


class ChatCompletionRequest(StrictBody):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = CHAT_DEFAULTS.temperature  # the library's chat defaults (greedy, as the reference)
    top_p: float | None = CHAT_DEFAULTS.top_p
    top_k: int | None = CHAT_DEFAULTS.top_k  # janus-rt field
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1  # only 1
    user: str | None = None  # accepted for OpenAI clients, unused


def parse_body(model: type[Model], body: Any) -> Model:
    """Validate a decoded JSON body; the first problem becomes a 400 naming the field."""
    if not isinstance(body, dict):
        raise invalid(f"the request body must be a JSON object, got a JSON {type(body).__name__}", code="invalid_body")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise validation_error(e, model) from None


def validation_error(e: ValidationError, model: type[BaseModel]) -> APIError:
    error = e.errors()[0]
    param = ".".join(str(part) for part in error["loc"]) or None
    kind = error["type"]
    if kind == "missing":
        return invalid(f"{param} is required", param, code="missing_field")
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields) if len(error["loc"]) == 1 else None
        return invalid(f"{param} is not a field of this request" + (f"; it takes: {allowed}" if allowed else ""),
                       param, code="unknown_field")
    got = error.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else f"a JSON {'object' if isinstance(got, dict) else 'array'}"
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return invalid(f"{param}: {error['msg'].lower() if error['msg'][:5] == 'Input' else error['msg']}, got {shown}",
                   param, code="invalid_type" if kind.endswith("_type") else "invalid_value")
