"""OpenAI response bodies: images, chat completions, stream chunks and server-sent-event framing.

The bodies are built as plain dicts (cheap, in the order clients print them); the pydantic models below describe
the same shapes for the server's OpenAPI document (openapi.py), and the schema tests check every answer against
them.
"""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel

from janus_rt.jobs import ChatResult


def png_b64(image: np.ndarray) -> str:
    """uint8 HWC pixels -> base64 of a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def images_body(images: np.ndarray, prompt_tokens: int, image_tokens: int) -> dict:
    """The images as PNGs, and their usage as OpenAI's images API counts it: input = the prompt's tokens,
    output = the image tokens sampled (the model's grid x grid per image)."""
    return {"created": int(time.time()), "data": [{"b64_json": png_b64(image)} for image in images],
            "usage": {"input_tokens": prompt_tokens, "input_tokens_details": {"text_tokens": prompt_tokens,
                                                                             "image_tokens": 0},
                      "output_tokens": image_tokens, "output_tokens_details": {"text_tokens": 0,
                                                                               "image_tokens": image_tokens},
                      "total_tokens": prompt_tokens + image_tokens}}


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
    b64_json: str  # a PNG file


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


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    model: str
    backend: str
    engine: dict[str, Any]
