"""Prompt formats of the reference (`janus/utils/conversation.py`, DeepSeek separator style).

Two chat formats differ only in the role strings: Janus-Pro uses `<|User|>` / `<|Assistant|>` (ASCII pipes)
and Janus-1.3B uses `User` / `Assistant`. Understanding prompts start with the processor's system prompt;
generation prompts use none and end with `<begin_of_image>`.

A conversation (`conversation_prompt`, what the server's chat route builds) alternates user and assistant
turns: `[system + sep]` then each turn `role: content` followed by `sep` after a user turn and by the EOS
string after an assistant turn (the reference's `sep2`), then the empty assistant turn `role:` that the
model completes. A single user turn gives exactly `understanding_prompt`'s string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from janus_rt.errors import InputError
from janus_rt.checkpoint.tokenizer import BEGIN_OF_IMAGE, EOS, IMAGE_PLACEHOLDER, PRO_ASSISTANT, PRO_USER

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
TurnRole = Literal["user", "assistant"]


def format_turns(turns: Sequence[tuple[str, str]], system_prompt: str) -> str:
    """The reference's DeepSeek separator style over (role string, content) pairs, user first.

    Turn i ends with `sep` when i is even (user) and with the EOS string when odd (assistant); an empty content
    gives `role:` with nothing after it (the turn the model completes). Contents and the result are stripped.
    """
    text = system_prompt + SEPARATOR if system_prompt else ""
    for i, (role, content) in enumerate(turns):
        if content:
            text += f"{role}: {content.strip()}" + (SEPARATOR if i % 2 == 0 else EOS)
        else:
            text += f"{role}:"
    return text.strip()


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


def conversation_prompt(turns: Sequence[tuple[TurnRole, str]], fmt: ChatFormat, system_prompt: str | None = None) -> str:
    """Multi-turn chat prompt: `turns` alternate ("user", text) and ("assistant", text), first and last "user".

    User texts carry their own `<image_placeholder>` tags (one per image, in image order); `system_prompt` None
    means the reference's understanding system prompt, "" none. One user turn equals `understanding_prompt`.
    """
    if not turns:
        raise InputError("a conversation needs at least one user message", param="messages")
    for i, (role, content) in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise InputError(f"turn {i} (user and assistant messages counted from 0) has role {role!r} where "
                             f"{expected!r} was expected: after an optional system message, messages alternate "
                             "user and assistant, starting with user", param="messages")
        if not isinstance(content, str) or not content.strip():
            raise InputError(f"turn {i} ({role}, user and assistant messages counted from 0) has no text; every "
                             "message needs non-empty content", param="messages")
    if turns[-1][0] != "user":
        raise InputError("the last message must be a user message (the model answers it)", param="messages")
    roles = ROLES[fmt]
    named = [(roles.user if role == "user" else roles.assistant, content) for role, content in turns]
    system = UNDERSTANDING_SYSTEM_PROMPT if system_prompt is None else system_prompt
    return format_turns([*named, (roles.assistant, "")], system)
