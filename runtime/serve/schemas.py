"""Request bodies of each route as pydantic models: what a client may send, type-checked strictly.

Strict mode: a number is not accepted as a string nor a string as a number, `true` is not an integer;
unknown fields are refused (a misspelt `temprature` is an error, not a silent default). Range checks that the
library already makes (`SamplingParams`) stay there, so the server and the library refuse the same values
with the same words. Chat message contents are checked in messages.py (their parts name their own paths).
These models are also the request bodies of the server's OpenAPI document (openapi.py): `documented` adds the
ranges to a field's JSON schema without validating them here (the library's checks keep their own words).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from janus_rt.engine.params import (CHAT_DEFAULTS, IMAGE_DEFAULTS, MAX_CFG_WEIGHT, MAX_NEW_TOKENS, MAX_SEED,
                                    MAX_TEMPERATURE, MAX_TOP_K)
from janus_rt.serve.errors import APIError, invalid
from janus_rt.serve.image_formats import DEFAULT_COMPRESSION, OUTPUT_FORMATS

Model = TypeVar("Model", bound=BaseModel)


def documented(default: Any, **schema: Any) -> Any:
    """A field's default, with `schema` (JSON Schema keywords: ranges, shapes) shown in the OpenAPI document only."""
    return Field(default, json_schema_extra=schema)


TEMPERATURE = {"minimum": 0, "maximum": MAX_TEMPERATURE}  # 0 (greedy) or in [1e-4, 1e4]
TOP_K = {"minimum": 1, "maximum": MAX_TOP_K}
TOP_P = {"exclusiveMinimum": 0, "maximum": 1}
SEED = {"minimum": 0, "maximum": MAX_SEED}
TOKENS = {"minimum": 1, "maximum": MAX_NEW_TOKENS}
TEXT_PART = {"type": "object", "required": ["type", "text"], "additionalProperties": False,
             "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
IMAGE_PART = {"type": "object", "required": ["type", "image_url"], "additionalProperties": False,
              "properties": {"type": {"const": "image_url"}, "image_url": {
                  "type": "object", "required": ["url"], "additionalProperties": False,
                  "properties": {"url": {"type": "string", "description": "data:image/...;base64,..."},
                                 "detail": {"type": "string"}}}}}
CONTENT = {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"anyOf": [TEXT_PART, IMAGE_PART]}}]}
MAX_PARTIAL_IMAGES = 3  # OpenAI's bound of `partial_images` (a model may give fewer: see PARTIAL_IMAGES)
NEGATIVE_PROMPT = ("janus-rt: what the image should not show; it replaces the empty text of classifier-free "
                   "guidance's unconditional rows (null or \"\": no negative prompt)")
STREAM = ("answer with server-sent events (text/event-stream): image_generation.partial_image as previews are "
          "ready, one image_generation.completed per image, error on a failure")
PARTIAL_IMAGES = ("previews to stream per image, 0 to 3 (needs stream); fewer may come: a preview is skipped rather "
                  "than hold the engine, and the model's token rows bound it")
OUTPUT_FORMAT = "the image file format: png (lossless, default), jpeg or webp"
OUTPUT_COMPRESSION = "quality of a jpeg or webp file, 0 to 100 (default 100: the most detail); not for png"
PROGRESS_EVENTS = ("janus-rt: with stream, also send janus_rt.progress events (each image's drawn token rows, and "
                   "whether the request is queued)")
STOP = {"anyOf": [{"type": "string", "minLength": 1},
                  {"type": "array", "maxItems": 4, "items": {"type": "string", "minLength": 1}}, {"type": "null"}]}


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ImageGenerationRequest(StrictBody):
    """POST /v1/images/generations (OpenAI's fields, plus janus-rt's sampling fields). OpenAI's optional fields
    also take null (its SDK's `None`): the default. Combinations (partial_images needs stream, output_compression a
    lossy output_format, no transparent background) are checked by the route, which names the field."""

    prompt: str = Field(json_schema_extra={"minLength": 1})
    model: str | None = None
    n: int = documented(1, minimum=1)  # at most the server's --max-images-per-request
    size: str | None = None  # only the model's own "SxS"
    response_format: str = documented("b64_json", enum=["b64_json"])  # files inline: the server stores no images
    user: str | None = None  # accepted for OpenAI clients, unused
    cfg_weight: float = documented(IMAGE_DEFAULTS.cfg_weight, minimum=0, maximum=MAX_CFG_WEIGHT)
    temperature: float = documented(IMAGE_DEFAULTS.temperature, **TEMPERATURE)
    top_k: int | None = documented(IMAGE_DEFAULTS.top_k, **TOP_K)
    top_p: float | None = documented(IMAGE_DEFAULTS.top_p, **TOP_P)
    seed: int | None = documented(None, **SEED)
    negative_prompt: str | None = documented(None, description=NEGATIVE_PROMPT)  # janus-rt field
    stream: bool = documented(False, description=STREAM)
    partial_images: int | None = documented(0, minimum=0, maximum=MAX_PARTIAL_IMAGES, description=PARTIAL_IMAGES)
    output_format: str | None = documented("png", enum=list(OUTPUT_FORMATS), description=OUTPUT_FORMAT)
    output_compression: int | None = documented(DEFAULT_COMPRESSION, minimum=0, maximum=100,
                                                description=OUTPUT_COMPRESSION)
    quality: Literal["low", "medium", "high", "xhigh", "max", "auto", "standard", "hd"] | None = documented(
        "auto", description="accepted for OpenAI clients (its values); Janus has one quality")
    background: Literal["transparent", "opaque", "auto"] | None = documented(
        "auto", description="opaque or auto: Janus images have no alpha channel (transparent is refused)")
    moderation: Literal["low", "auto"] | None = documented(None, description="accepted for OpenAI clients, unused")
    progress_events: bool = documented(False, description=PROGRESS_EVENTS)  # janus-rt field


class ChatMessage(StrictBody):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"required": ["role", "content"]})

    role: Literal["system", "developer", "user", "assistant"]  # "developer": OpenAI's newer name for "system"
    content: Any = documented(None, **CONTENT)  # a string or a list of text / image_url parts (messages.py)
    name: str | None = None  # accepted for OpenAI clients, unused


class StreamOptions(StrictBody):
    include_usage: bool = False


class ChatCompletionRequest(StrictBody):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = documented(None, **TOKENS)
    max_completion_tokens: int | None = documented(None, **TOKENS)
    temperature: float = documented(CHAT_DEFAULTS.temperature, **TEMPERATURE)  # the library's chat defaults (greedy)
    top_p: float | None = documented(CHAT_DEFAULTS.top_p, **TOP_P)
    top_k: int | None = documented(CHAT_DEFAULTS.top_k, **TOP_K)  # janus-rt field
    seed: int | None = documented(None, **SEED)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = documented(1, enum=[1])  # only 1
    stop: Any = documented(None, **STOP)  # a string or up to 4 (checked by `check_stop`): the answer ends before one
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
