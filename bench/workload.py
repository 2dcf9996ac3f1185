"""Synthetic inputs of a benchmark: prompt ids and pixels of realistic lengths (there is no tokenizer here).

The special ids sit at the top of the vocabulary so that they never collide with the random text ids; which
ids a prompt holds does not change the work a step does, only its length does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.model.prefill import TextRequest, expand_placeholders

IMAGE_PROMPT_TOKENS = 32  # "<|User|>: {a one-sentence prompt}\n\n<|Assistant|>:<begin_of_image>" is ~20-40 tokens
TEXT_PROMPT_TOKENS = 64  # system prompt + roles + question around the image, without the image's 578 ids


@dataclass(frozen=True)
class SpecialIds:
    """The special token ids the synthetic prompts use."""

    bos: int
    eos: int
    pad: int
    placeholder: int  # <image_placeholder>
    begin_of_image: int
    end_of_image: int

    @classmethod
    def for_vocab(cls, vocab_size: int) -> "SpecialIds":
        top = vocab_size - 1
        return cls(bos=top - 5, eos=top - 4, pad=top - 3, placeholder=top - 2, begin_of_image=top - 1, end_of_image=top)

    @property
    def first_special(self) -> int:
        return self.bos


def _text_ids(count: int, special: SpecialIds, seed: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, special.first_special, (count,), generator=gen).tolist()


def image_prompt_ids(special: SpecialIds, length: int = IMAGE_PROMPT_TOKENS, seed: int = 0) -> list[int]:
    """`length` ids: BOS, random text, `<begin_of_image>` (what `generate_image_tokens` takes)."""
    if length < 2:
        raise ValueError(f"an image prompt needs at least BOS and <begin_of_image>, got length {length}")
    return [special.bos] + _text_ids(length - 2, special, seed) + [special.begin_of_image]


def understanding_request(cfg: JanusConfig, special: SpecialIds, text_tokens: int = TEXT_PROMPT_TOKENS,
                          seed: int = 0) -> TextRequest:
    """One chat row with one image: BOS, text, the expanded image (576 embeddings spliced), more text.

    The pixels are uniform noise in [-1, 1] of the tower's input size (preprocessing is not timed).
    """
    text = _text_ids(max(text_tokens - 1, 2), special, seed)
    half = len(text) // 2
    ids = [special.bos] + text[:half] + [special.placeholder] + text[half:]
    ids = expand_placeholders(ids, special.placeholder, special.begin_of_image, special.end_of_image,
                              cfg.vision.num_patches)
    gen = torch.Generator().manual_seed(seed)
    size = cfg.vision.image_size
    pixels = torch.rand(1, 3, size, size, generator=gen) * 2 - 1
    return TextRequest(ids=ids, pixel_values=pixels)
