"""Preparing a text-to-image request: the one path the library, the CLI and the server take.

`prepare_images` checks the cheap things first (the prompt's type, the image count, the previews), then formats each
prompt (and the negative prompt, when one is given) in the model's chat format, tokenizes it and checks that the
image fits after it (the engine's one capacity check); it returns exactly what the engine's `submit_images` takes.
A negative prompt replaces the unconditional CFG rows' pad-filled copy of the prompt; None or "" keeps the
reference's behaviour exactly. Sampling fields arrive already checked as a
`SamplingParams` (built once, in the words of the caller's user).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from janus_rt.engine.params import IMAGE_DEFAULTS, SamplingParams
from janus_rt.errors import InputError
from janus_rt.requests.context import RequestContext
from janus_rt.requests.prompts import generation_prompt
from janus_rt.requests.text import check_size_before_tokenizing, check_text
from janus_rt.checkpoint.tokenizer import BEGIN_OF_IMAGE
from janus_rt.previews import preview_steps
from janus_rt.spelling import API, Spelling

MAX_IMAGES_PER_CALL = 256  # images one call may ask for: tokens and pixels are held until it returns


@dataclass(frozen=True)
class PreparedImages:
    """One image request ready for the engine: a prompt (or several) and its `num_images` samples each."""

    texts: list[str]  # formatted prompts, in the caller's order
    prompt_ids: list[list[int]]  # their token ids (each ends with <begin_of_image>)
    num_images: int  # samples per prompt
    params: SamplingParams
    single: bool  # the caller passed one prompt (not a list): results are not wrapped in a list
    negative_ids: list[int] | None = None  # the negative prompt's ids (each prompt's unconditional rows), or None
    preview_steps: tuple[int, ...] = ()  # tokens per image after which a preview is taken (`partial_images`)


def check_image_count(num_images: object, num_prompts: int = 1, spelling: Spelling = API) -> int:
    """`num_images` as a checked int: >= 1, and at most MAX_IMAGES_PER_CALL over all prompts."""
    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 1:
        raise InputError(f"{spelling.name('num_images')} must be an integer >= 1, got {num_images!r}",
                         param="num_images")
    if num_images * num_prompts > MAX_IMAGES_PER_CALL:
        asked = f"{num_prompts} prompts x {num_images} images" if num_prompts > 1 else f"{num_images} images"
        raise InputError(f"{spelling.name('num_images')}: {asked} is more than one call may ask for "
                         f"({MAX_IMAGES_PER_CALL}: every image is held in memory until the call returns); "
                         "split the work into several calls", param="num_images")
    return num_images


def check_generation_args(num_images: int, cfg_weight: float = IMAGE_DEFAULTS.cfg_weight,
                          temperature: float = IMAGE_DEFAULTS.temperature, top_k: int | None = IMAGE_DEFAULTS.top_k,
                          top_p: float | None = IMAGE_DEFAULTS.top_p, seed: int | None = None, num_prompts: int = 1,
                          spelling: Spelling = API) -> SamplingParams:
    """The cheap checks of an image request that need no model (a CLI makes them before loading one): the image
    count, then the sampling fields, built once into the `SamplingParams` the request carries."""
    check_image_count(num_images, num_prompts, spelling)
    return SamplingParams.checked(spelling, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                  cfg_weight=cfg_weight)


def image_prompt_text(prompt: object, context: RequestContext, raw: bool = False) -> str:
    """The prompt in the model's generation format (`raw=True`: as given, `<begin_of_image>` appended if missing)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt must be a non-empty string", param="prompt")
    check_size_before_tokenizing(check_text(prompt, "prompt"), context.tokenizer, context.capacity.slots, "prompt")
    if raw:
        return prompt if prompt.endswith(BEGIN_OF_IMAGE) else prompt + BEGIN_OF_IMAGE
    return generation_prompt(prompt, context.chat_format)


def negative_prompt_ids(negative_prompt: object, context: RequestContext, raw: bool = False,
                        spelling: Spelling = API) -> list[int] | None:
    """The negative prompt's ids in the model's generation format (checked as the prompt is), or None when absent
    or empty (then the unconditional rows are the reference's pad-filled prompt)."""
    if negative_prompt is None or negative_prompt == "":
        return None
    name = spelling.name("negative_prompt")
    if not isinstance(negative_prompt, str):
        raise InputError(f"{name} must be a string, got {type(negative_prompt).__name__}", param="negative_prompt")
    check_size_before_tokenizing(check_text(negative_prompt, name), context.tokenizer, context.capacity.slots, name)
    if raw:
        text = negative_prompt if negative_prompt.endswith(BEGIN_OF_IMAGE) else negative_prompt + BEGIN_OF_IMAGE
    else:
        text = generation_prompt(negative_prompt, context.chat_format)
    ids = context.tokenizer.encode(text)
    context.capacity.check_image(len(ids), context.image_tokens, spelling, field="negative_prompt")
    return ids


def prepare_images(prompt: str | Sequence[str], num_images: int, params: SamplingParams, context: RequestContext,
                   raw: bool = False, spelling: Spelling = API, negative_prompt: str | None = None,
                   partial_images: int = 0) -> PreparedImages:
    """Validate, format, tokenize and check capacity once; see the module docstring. `negative_prompt` applies to
    every prompt; `partial_images` previews per image (`janus_rt.previews`)."""
    single = isinstance(prompt, str)
    if not single and (not isinstance(prompt, (list, tuple)) or not prompt):
        raise InputError(f"prompt must be a non-empty string or a non-empty list of them, got {prompt!r}",
                         param="prompt")
    prompts = [prompt] if single else list(prompt)  # type: ignore[list-item]
    check_image_count(num_images, len(prompts), spelling)
    steps = preview_steps(partial_images, context.image_grid, spelling.name("partial_images"))
    texts = [image_prompt_text(p, context, raw) for p in prompts]  # every prompt checked before any is tokenized
    encoded = [context.tokenizer.encode(t) for t in texts]
    for ids in encoded:
        context.capacity.check_image(len(ids), context.image_tokens, spelling)
    negative = negative_prompt_ids(negative_prompt, context, raw, spelling)
    return PreparedImages(texts, encoded, num_images, params, single, negative, steps)
