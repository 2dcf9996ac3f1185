"""OpenAI response bodies: images, chat completions, stream chunks and server-sent-event framing.

The bodies are built as plain dicts (cheap, in the order clients print them); the pydantic models below describe
the same shapes for the server's OpenAPI document (openapi.py), and the schema tests check every answer against
them. The events of a streamed image request are built in image_stream.py; their shapes are described here.
"""

from __future__ import annotations

import json
import time
import uuid

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from janus_rt.jobs import ChatResult
from janus_rt.serve.image_formats import image_b64


def images_usage(prompt_tokens: int, image_tokens: int) -> dict:
    """Usage as OpenAI's images API counts it: input = the prompt's tokens, output = the image tokens sampled (the
    model's grid x grid per image)."""
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
            "output_tokens": image_tokens, "output_tokens_details": {"text_tokens": 0, "image_tokens": image_tokens},
            "total_tokens": prompt_tokens + image_tokens}


def images_body(images: np.ndarray, prompt_tokens: int, image_tokens: int, output_format: str = "png",
                compression: int | None = None) -> dict:
    """The images as files in `output_format` (image_formats.py; PNG by default), and their usage."""
    return {"created": int(time.time()),
            "data": [{"b64_json": image_b64(image, output_format, compression)} for image in images],
            "usage": images_usage(prompt_tokens, image_tokens)}


def model_object(name: str, created: int) -> dict:
    """The served model as `/v1/models` lists it and `/v1/models/{id}` returns it."""
    return {"id": name, "object": "model", "created": created, "owned_by": "janus-rt"}


def finish_reason(result: ChatResult) -> str:
    """"stop" when the model ended its answer (EOS or a stop sequence), "length" when the token limit did."""
    return "stop" if result.finished else "length"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class ChatIds:
    """The id, creation time and model name every body of one chat completion repeats."""

    def __init__(self, model: str):
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def completion(self, result: ChatResult, prompt_tokens: int) -> dict:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.text},
                             "finish_reason": finish_reason(result)}],
                "usage": usage(prompt_tokens, len(result.token_ids))}

    def chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def sse(payload: dict | str) -> bytes:
    """One server-sent event: `data: <json>` (or `data: [DONE]`) and a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode("utf-8")


def sse_event(payload: dict) -> bytes:
    """One named server-sent event, as OpenAI's images API sends them: `event: <type>`, `data: <json>`, a blank
    line (the JSON carries the same `type`)."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode("utf-8")


# ----------------------------------------------------------------------------- shapes, for the OpenAPI document
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(BaseModel):
    """Every refusal and failure (errors.py)."""

    error: ErrorDetail


class ImageData(BaseModel):
    b64_json: str  # an image file in the request's output_format (PNG by default)


class TokenKinds(BaseModel):
    text_tokens: int
    image_tokens: int


class ImagesUsage(BaseModel):
    input_tokens: int
    input_tokens_details: TokenKinds
    output_tokens: int
    output_tokens_details: TokenKinds
    total_tokens: int


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    usage: ImagesUsage


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """The answer of a chat request without `stream` (with it: server-sent `chat.completion.chunk` events)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


class Load(BaseModel):
    queued_requests: int  # requests waiting for KV rows
    active_rows: int  # KV rows in the running batch
    max_rows: int  # KV rows in the engine's pool


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model: str
    backend: str
    engine: dict[str, Any]
    load: Load


class PartialImageEvent(BaseModel):
    """`event: image_generation.partial_image`: an image while it is drawn (rows not drawn yet are flat gray)."""

    type: Literal["image_generation.partial_image"]
    b64_json: str  # the preview, in the request's output_format
    partial_image_index: int  # 0.. for that image (some may be skipped: the engine never waits for a slow reader)
    size: str
    output_format: Literal["png", "jpeg", "webp"]
    created_at: int
    background: Literal["opaque"]
    quality: Literal["auto"]
    image_index: int | None = None  # which image of the request; only sent when n > 1
    rows_done: int  # janus-rt: token rows drawn when the preview was taken


class ProgressEvent(BaseModel):
    """`event: janus_rt.progress` (only with `progress_events`): an image's drawn token rows, or that it is queued."""

    type: Literal["janus_rt.progress"]
    image_index: int
    rows_done: int
    rows: int  # the image's token rows in all
    queued: bool  # the request waits for KV rows (nothing drawn yet)


class CompletedImageEvent(BaseModel):
    """`event: image_generation.completed`: one per image once the request is done (the non-streamed image)."""

    type: Literal["image_generation.completed"]
    b64_json: str
    size: str
    output_format: Literal["png", "jpeg", "webp"]
    created_at: int
    background: Literal["opaque"]
    quality: Literal["auto"]
    usage: ImagesUsage  # the whole request's (the same in each completed event)
    image_index: int | None = None  # only sent when n > 1


class ErrorEvent(BaseModel):
    """`event: error`: the request failed mid-stream (timeout, engine failure, shutdown); the stream ends."""

    type: Literal["error"]
    error: ErrorDetail


IMAGE_STREAM_EVENTS = {"image_generation.partial_image": PartialImageEvent, "janus_rt.progress": ProgressEvent,
                       "image_generation.completed": CompletedImageEvent, "error": ErrorEvent}  # event name -> shape
