"""Prompt formats of the reference (`janus/utils/conversation.py`, DeepSeek separator style).

Two chat formats differ only in the role strings: Janus-Pro uses `<|User|>` / `<|Assistant|>` (ASCII pipes)
and Janus-1.3B uses `User` / `Assistant`. Understanding prompts start with the processor's system prompt;
generation prompts use none and end with `<begin_of_image>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .tokenizer import BEGIN_OF_IMAGE, IMAGE_PLACEHOLDER, PRO_ASSISTANT, PRO_USER

ChatFormat = Literal["pro", "legacy"]

UNDERSTANDING_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual content that the "
    "user provides, and assist the user with a variety of tasks using natural language."
)
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Roles:
    user: str
    assistant: str


ROLES: dict[str, Roles] = {"pro": Roles(PRO_USER, PRO_ASSISTANT), "legacy": Roles("User", "Assistant")}


def single_turn(content: str, fmt: ChatFormat, system_prompt: str) -> str:
    """`[system + sep] + user: content + sep + assistant:` with the reference's stripping."""
    roles = ROLES[fmt]
    text = system_prompt + SEPARATOR if system_prompt else ""
    text += f"{roles.user}: {content.strip()}{SEPARATOR}{roles.assistant}:"
    return text.strip()


def understanding_prompt(question: str, num_images: int, fmt: ChatFormat, system_prompt: str | None = None) -> str:
    """Chat prompt for a question; `num_images` placeholders are put first when the question has none."""
    if IMAGE_PLACEHOLDER not in question and num_images:
        question = f"{IMAGE_PLACEHOLDER}\n" * num_images + question
    return single_turn(question, fmt, UNDERSTANDING_SYSTEM_PROMPT if system_prompt is None else system_prompt)


def generation_prompt(prompt: str, fmt: ChatFormat) -> str:
    """Text-to-image prompt: no system prompt, then the image start tag."""
    return single_turn(prompt, fmt, "") + BEGIN_OF_IMAGE
