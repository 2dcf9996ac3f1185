"""`SamplingParams`: every per-request knob of the decode loop in one validated, frozen dataclass.

The API, the CLI and (later) the server build one of these per request; the engine and every backend read
only this. Validation needs no model, so callers check their inputs before anything is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import InputError

IMAGE_DEFAULTS = {"temperature": 1.0, "top_k": None, "cfg_weight": 5.0}  # the reference's generation defaults
CHAT_DEFAULTS = {"temperature": 0.0, "top_k": 50, "max_new_tokens": 512}  # transformers' generate, as the reference


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    """A finite int or float (bools excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class SamplingParams:
    """How one request samples. Image requests use cfg_weight (not max_new_tokens); text requests the reverse."""

    temperature: float = 1.0  # 0 = argmax (deterministic)
    top_k: int | None = None  # keep the k most likely tokens; None = off
    top_p: float | None = None  # nucleus: keep the smallest set of mass >= top_p; None = off
    seed: int | None = None  # reproduces the request's tokens on the same device; None = a fresh random seed
    cfg_weight: float = 5.0  # classifier-free guidance: uncond + w * (cond - uncond) (images only)
    max_new_tokens: int = 512  # answer length cap, EOS excluded (text only)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InputError naming the bad field and its allowed range."""
        name = lambda f: f  # noqa: E731
        off = "None"
        t = self.temperature
        if not _is_number(t) or t < 0:
            raise InputError(f"{name('temperature')} must be a finite number >= 0 (0 means greedy), got {t!r}")
        if self.top_k is not None and (not _is_int(self.top_k) or self.top_k < 1):
            raise InputError(f"{name('top_k')} must be a positive integer or {off}, got {self.top_k!r}")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 < self.top_p <= 1):
            raise InputError(f"{name('top_p')} must be in (0, 1] or {off}, got {self.top_p!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise InputError(f"{name('seed')} must be an integer or None, got {self.seed!r}")
        if not _is_number(self.cfg_weight) or self.cfg_weight < 0:
            raise InputError(f"{name('cfg_weight')} must be a finite number >= 0, got {self.cfg_weight!r}")
        if not _is_int(self.max_new_tokens) or self.max_new_tokens < 1:
            raise InputError(f"{name('max_new_tokens')} must be an integer >= 1, got {self.max_new_tokens!r}")

    def with_seed(self, seed: int) -> "SamplingParams":
        return replace(self, seed=seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
