"""Chat messages (OpenAI shape) -> the reference's conversation prompt and the images it refers to.

A message's content is a string or a list of parts, `{"type": "text", "text": ...}` and
`{"type": "image_url", "image_url": {"url": "data:..."}}`. The parts of one message are joined with "\\n", an
image part standing as one `<image_placeholder>`, so a user message `[image, text]` is
`"<image_placeholder>\\n" + text`: exactly what `m.chat(text, image=...)` builds. Images are numbered in
message order. A leading system (or developer: OpenAI's newer name for it) message replaces the reference's understanding system prompt (an empty
one means none); then user and assistant messages alternate, starting and ending with user (checked where the
prompt is built: `janus_rt.requests.chat.prepare_chat`).
"""

from __future__ import annotations

from typing import Any

from janus_rt.requests.chat import Conversation
from janus_rt.requests.prompts import TurnRole
from janus_rt.checkpoint.tokenizer import IMAGE_PLACEHOLDER
from janus_rt.requests.pixels import HeaderOnlyImage
from janus_rt.serve.data_uri import decode_data_uri_image
from janus_rt.serve.errors import invalid
from janus_rt.serve.schemas import ChatMessage

SYSTEM_ROLES = ("system", "developer")  # OpenAI's "developer" messages are system messages


def build_conversation(messages: list[ChatMessage], max_image_pixels: int) -> Conversation:
    """Check the messages' shapes and decode their images; a 400 naming the field otherwise."""
    system: str | None = None
    turns: list[tuple[TurnRole, str]] = []
    images: list[HeaderOnlyImage] = []
    for i, message in enumerate(messages):
        param = f"messages.{i}.content"
        if message.role in SYSTEM_ROLES:
            if i != 0:
                raise invalid(f"a {message.role} message may only come first", f"messages.{i}.role",
                              code="invalid_messages")
            system = _text_only(message.content, param, message.role)
            continue
        if message.role == "assistant":
            turns.append(("assistant", _text_only(message.content, param, "assistant")))
            continue
        text, found = _user_content(message.content, param, max_image_pixels)
        turns.append(("user", text))
        images.extend(found)
    return Conversation(turns=tuple(turns), images=tuple(images), system_prompt=system)


def _parts(content: Any, param: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise invalid(f"{param} must be a string or a non-empty list of parts ({{\"type\": \"text\", \"text\": ...}} or "
                      f"{{\"type\": \"image_url\", \"image_url\": {{\"url\": \"data:...\"}}}})", param, code="invalid_type")
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
            raise invalid(f"{param}.{j} must be an object with \"type\" \"text\" or \"image_url\"", f"{param}.{j}",
                          code="invalid_type")
    return content


def _text_only(content: Any, param: str, role: str) -> str:
    texts = []
    for j, part in enumerate(_parts(content, param)):
        if part["type"] != "text":
            raise invalid(f"a {role} message holds text only; images go in user messages", f"{param}.{j}",
                          code="invalid_messages")
        texts.append(_part_text(part, f"{param}.{j}"))
    return "\n".join(texts)


def _user_content(content: Any, param: str, max_image_pixels: int) -> tuple[str, list[HeaderOnlyImage]]:
    pieces, images = [], []
    for j, part in enumerate(_parts(content, param)):
        where = f"{param}.{j}"
        if part["type"] == "text":
            text = _part_text(part, where)
            if IMAGE_PLACEHOLDER in text:
                raise invalid(f"text may not contain {IMAGE_PLACEHOLDER}; send each image as an image_url part",
                              f"{where}.text", code="invalid_messages")
            pieces.append(text)
            continue
        extra = set(part) - {"type", "image_url"}
        image_url = part.get("image_url")
        if extra or not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str) \
                or set(image_url) - {"url", "detail"}:
            raise invalid(f"{where} must be {{\"type\": \"image_url\", \"image_url\": {{\"url\": \"data:image/png;base64,...\"}}}}",
                          where, code="invalid_type")
        images.append(decode_data_uri_image(image_url["url"], max_image_pixels, f"{where}.image_url.url"))
        pieces.append(IMAGE_PLACEHOLDER)
    return "\n".join(pieces), images


def _part_text(part: dict, where: str) -> str:
    if set(part) - {"type", "text"} or not isinstance(part.get("text"), str):
        raise invalid(f"{where} must be {{\"type\": \"text\", \"text\": \"...\"}}", where, code="invalid_type")
    return part["text"]
