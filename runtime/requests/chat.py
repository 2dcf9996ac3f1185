"""Preparing a chat request (text and images -> an answer): the one path the library, the CLI and the server take.

A `Conversation` is what the user asked: alternating user / assistant turns whose user texts carry one
`<image_placeholder>` per image (in image order), an optional system prompt and the images; or one
preformatted prompt (`raw=True`). `prepare_chat` checks the cheap things first (the image count against the
row's capacity), formats the prompt in the model's chat format, tokenizes it, checks that the placeholders
match the images, expands each into the image's positions, checks capacity once (the engine's check), and
only then turns the images into pixels; it returns exactly what the engine's `submit_text` takes, plus the
answer's stop sequences (`check_stop`; the chat job applies them, `janus_rt.jobs`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from janus_rt.checkpoint.tokenizer import IMAGE_PLACEHOLDER
from janus_rt.engine.params import CHAT_DEFAULTS, SamplingParams
from janus_rt.errors import InputError
from janus_rt.model.prefill import TextRequest, expand_placeholders
from janus_rt.requests.context import RequestContext
from janus_rt.requests.pixels import ImageLike, preprocess
from janus_rt.requests.prompts import TurnRole, conversation_prompt
from janus_rt.requests.text import check_size_before_tokenizing, check_text
from janus_rt.spelling import API, Spelling


def check_chat_args(max_new_tokens: int = CHAT_DEFAULTS.max_new_tokens, temperature: float = CHAT_DEFAULTS.temperature,
                    top_k: int | None = CHAT_DEFAULTS.top_k, top_p: float | None = CHAT_DEFAULTS.top_p,
                    seed: int | None = None, spelling: Spelling = API) -> SamplingParams:
    """The sampling fields of a chat request, checked and built once (needs no model)."""
    return SamplingParams.checked(spelling, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                  max_new_tokens=max_new_tokens)


MAX_STOP_SEQUENCES = 4  # as OpenAI's chat completions


def check_stop(stop: object, spelling: Spelling = API) -> tuple[str, ...]:
    """Stop sequences: None, a non-empty string, or a list of up to 4 non-empty strings -> a tuple of them."""
    name = spelling.name("stop")
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) and s for s in items):
        raise InputError(f"{name} must be a non-empty string or a list of up to {MAX_STOP_SEQUENCES} non-empty strings, "
                         f"got {stop!r:.80}", param="stop")
    if len(items) > MAX_STOP_SEQUENCES:
        raise InputError(f"{name} takes at most {MAX_STOP_SEQUENCES} sequences, got {len(items)}", param="stop")
    return tuple(items)


@dataclass(frozen=True)
class Conversation:
    """What the user asked (see the module docstring); build it with `question`, `preformatted` or directly."""

    turns: tuple[tuple[TurnRole, str], ...]  # ("user", text), ("assistant", text), ..., ("user", text)
    images: tuple[ImageLike, ...] = ()  # in placeholder order
    system_prompt: str | None = None  # None: the reference's understanding system prompt; "": none
    raw_prompt: str | None = None  # a preformatted prompt: used as it is, `turns` empty

    @classmethod
    def question(cls, question: object, images: Sequence[ImageLike] = (),
                 system_prompt: str | None = None) -> "Conversation":
        """One user question; without an explicit placeholder, one per image is put before it."""
        if not isinstance(question, str) or not question.strip():
            raise InputError("question must be a non-empty string", param="question")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InputError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}",
                             param="system_prompt")
        if IMAGE_PLACEHOLDER not in question and images:
            question = f"{IMAGE_PLACEHOLDER}\n" * len(images) + question
        return cls(turns=(("user", question),), images=tuple(images), system_prompt=system_prompt)

    @classmethod
    def preformatted(cls, prompt: object, images: Sequence[ImageLike] = ()) -> "Conversation":
        """A prompt already in the model's format (its placeholders are the images')."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("question must be a non-empty string", param="question")
        return cls(turns=(), images=tuple(images), raw_prompt=prompt)

    def prompt(self, context: RequestContext) -> str:
        """The full prompt text in the model's chat format."""
        if self.raw_prompt is not None:
            return self.raw_prompt
        return conversation_prompt(self.turns, context.chat_format, self.system_prompt)


@dataclass(frozen=True)
class PreparedChat:
    """One chat request ready for the engine."""

    prompt: str  # the prompt text it came from
    ids: list[int]  # token ids, each placeholder expanded to its image's positions
    pixel_values: torch.Tensor | None  # [n_images, 3, S, S], or None without images
    params: SamplingParams
    stop: tuple[str, ...] = ()  # the answer ends right before the first of these (`check_stop`)

    @property
    def inputs(self) -> TextRequest:
        return TextRequest(ids=self.ids, pixel_values=self.pixel_values)


def prepare_chat(conversation: Conversation, params: SamplingParams, context: RequestContext,
                 shrink_to_fit: bool = False, spelling: Spelling = API, stop: object = None) -> PreparedChat:
    """Validate, format, tokenize, check capacity once, then prepare pixels (see the module docstring).

    `shrink_to_fit`: `params.max_new_tokens` is a cap, lowered to what the row holds after the prompt (a server's
    default answer length); otherwise asking for more than fits is refused. `stop`: as `check_stop` takes it.
    """
    stops = check_stop(stop, spelling)
    images = conversation.images
    per_image = context.tokens_per_input_image + 2  # <begin_of_image> + patches + <end_of_image>
    if len(images) * per_image >= context.capacity.slots:
        raise InputError(f"{len(images)} images take {len(images) * per_image} positions ({per_image} each), "
                         f"more than the {context.capacity.slots} a request may use: send fewer images",
                         param="image", code="context_length_exceeded")
    texts = [content for _, content in conversation.turns] + [conversation.system_prompt or "",
                                                              conversation.raw_prompt or ""]
    size = sum(check_text(t, "question") for t in texts)  # every text the prompt is made of, before formatting
    check_size_before_tokenizing(size, context.tokenizer, context.capacity.slots, "question")
    text = conversation.prompt(context)
    sp = context.tokenizer.special
    ids = context.tokenizer.encode(text)
    placeholders = ids.count(sp.image_placeholder)
    if placeholders != len(images):
        raise InputError(f"the prompt has {placeholders} {IMAGE_PLACEHOLDER} tag(s) but {len(images)} image(s) were "
                         "given; pass one image per tag", param="image")
    ids = expand_placeholders(ids, sp.image_placeholder, sp.begin_of_image, sp.end_of_image,
                              context.tokens_per_input_image)
    if shrink_to_fit:
        params = replace(params, max_new_tokens=max(1, min(params.max_new_tokens, context.capacity.room(len(ids)))))
    context.capacity.check_text(len(ids), params.max_new_tokens, spelling)
    pixels = torch.stack([preprocess(image, context.image_processor) for image in images]) if images else None
    return PreparedChat(text, ids, pixels, params, stops)
