"""What `janus-rt eval-quant` measures on: the prompt set and the settings, checked on creation.

`PromptSet`: text-to-image prompts and text-only chat questions (the defaults below, or `--prompts FILE`, one
a line). `EvalSettings`: how many teacher-forced image positions, how long an answer, the seed of the sampled
images, the CFG weight (the library's default). `eval_measure.py` measures with them; `evaluate.py` runs it all.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

from janus_rt.api import Janus
from janus_rt.errors import InputError

DEFAULT_IMAGE_PROMPTS: tuple[str, ...] = (
    "a red fox sitting in the snow, golden hour",
    "a bowl of fresh fruit on a wooden kitchen table, studio lighting",
    "a city street at night in the rain with neon signs reflecting on the wet road",
    "an oil painting of an old fisherman with a white beard",
)
DEFAULT_CHAT_QUESTIONS: tuple[str, ...] = (
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a Python function that returns the square of a number.",
    "List three uses of a paperclip.",
)
DEFAULT_IMAGE_TOKENS = 64  # teacher-forced image positions measured per prompt (the first ones)
DEFAULT_MAX_NEW_TOKENS = 32  # longest greedy answer per question
DEFAULT_SEED = 0
DEFAULT_CFG_WEIGHT: float = inspect.signature(Janus.generate_images).parameters["cfg_weight"].default


@dataclass(frozen=True)
class PromptSet:
    """Text-to-image prompts and text-only chat questions (no image files needed)."""

    image_prompts: tuple[str, ...] = DEFAULT_IMAGE_PROMPTS
    chat_questions: tuple[str, ...] = DEFAULT_CHAT_QUESTIONS

    def __post_init__(self) -> None:
        if not self.image_prompts and not self.chat_questions:
            raise InputError("the prompt set is empty: give at least one image prompt or one chat question",
                             param="prompts")
        for text in (*self.image_prompts, *self.chat_questions):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"every prompt must be a non-empty string, got {text!r}", param="prompts")

    @classmethod
    def from_file(cls, path: str | Path) -> "PromptSet":
        """One prompt a line: `chat: QUESTION` is a chat question, `image: PROMPT` (or a line without a prefix)
        an image prompt; empty lines and lines starting with `#` are skipped."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--prompts {path}: cannot read it ({e})", param="prompts") from None
        images: list[str] = []
        chats: list[str] = []
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            head, sep, rest = line.partition(":")
            kind = head.strip().lower() if sep else ""
            if kind in ("chat", "image"):
                text = rest.strip()
                if not text:
                    raise InputError(f"--prompts {path}, line {number}: '{kind}:' is followed by no text",
                                     param="prompts")
                (chats if kind == "chat" else images).append(text)
            else:
                images.append(line)
        if not images and not chats:
            raise InputError(f"--prompts {path}: no prompts found (one a line: 'image: PROMPT' or 'chat: QUESTION')",
                             param="prompts")
        return cls(tuple(images), tuple(chats))


@dataclass(frozen=True)
class EvalSettings:
    """How much is measured: teacher-forced image positions, answer length, the seed of the sampled images."""

    image_tokens: int | None = DEFAULT_IMAGE_TOKENS  # None: every image token of a prompt
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    seed: int = DEFAULT_SEED
    cfg_weight: float = DEFAULT_CFG_WEIGHT

    def __post_init__(self) -> None:
        it = self.image_tokens
        if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 1):
            raise InputError(f"--image-tokens must be an integer >= 1, got {it!r}", param="image_tokens")
        mnt = self.max_new_tokens
        if not isinstance(mnt, int) or isinstance(mnt, bool) or mnt < 1:
            raise InputError(f"--max-new-tokens must be an integer >= 1, got {mnt!r}", param="max_new_tokens")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"--seed must be an integer >= 0, got {self.seed!r}", param="seed")
        if not isinstance(self.cfg_weight, (int, float)) or not math.isfinite(self.cfg_weight) or self.cfg_weight < 0:
            raise InputError(f"cfg_weight must be a finite number >= 0, got {self.cfg_weight!r}", param="cfg_weight")

    def image_positions(self, tokens_per_image: int) -> int:
        """Teacher-forced positions measured per image prompt for a model with `tokens_per_image` tokens."""
        if self.image_tokens is None:
            return tokens_per_image
        if self.image_tokens > tokens_per_image:
            raise InputError(f"--image-tokens {self.image_tokens} is more than the {tokens_per_image} tokens of one "
                             "image; use at most that, or --all-image-tokens", param="image_tokens")
        return self.image_tokens
