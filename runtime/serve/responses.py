"""OpenAI response bodies: images, chat completions, stream chunks and server-sent-event framing."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid

import numpy as np
from PIL import Image

from janus_rt.jobs import ChatResult


def png_b64(image: np.ndarray) -> str:
    """uint8 HWC pixels -> base64 of a PNG file."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def images_body(images: np.ndarray) -> dict:
    return {"created": int(time.time()), "data": [{"b64_json": png_b64(image)} for image in images]}


def finish_reason(result: ChatResult) -> str:
    """"stop" when the model ended its answer (EOS), "length" when the token limit did."""
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
