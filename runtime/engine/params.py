"""`SamplingParams`: every per-request knob of the decode loop in one validated, frozen dataclass.

The API, the CLI and the server build one of these per request (validated once, in the words of the caller's
user: `Spelling`); the engine and every backend read only this. Validation needs no model, so callers check
their inputs before anything is loaded. `IMAGE_DEFAULTS` / `CHAT_DEFAULTS` are the one set of defaults per
kind: the library's signatures, the CLI's flags and the server's request models read them.
"Off" is `None` for top_k, top_p and seed everywhere above the kernels; `kernel_row` turns it into the fused
sampler's encoding (top_k 0, top_p 1.0) in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping

from janus_rt.errors import InputError
from janus_rt.spelling import API, Spelling, build_in_words

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
        check_sampling_fields(vars(self), API)

    @classmethod
    def checked(cls, spelling: Spelling = API, **fields: object) -> "SamplingParams":
        """Build one (validated once); a bad field is reported in `spelling` (the CLI's flags, the API's keywords)."""
        return build_in_words(cls, fields, spelling, check_sampling_fields)

    def with_seed(self, seed: int) -> "SamplingParams":
        return replace(self, seed=seed)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def kernel_row(self) -> tuple[float, int, float, float]:
        """(temperature, top_k, top_p, cfg_weight) of one row of the fused sampler, "off" as it spells it:
        top_k 0, top_p 1.0 (`janus_rt.kernels.cfg_sample`)."""
        return (float(self.temperature), 0 if self.top_k is None else int(self.top_k),
                1.0 if self.top_p is None else float(self.top_p), float(self.cfg_weight))



def check_sampling_fields(values: Mapping[str, object], spelling: Spelling) -> None:
    """Raise InputError naming the first bad field of a `SamplingParams` (as `spelling` writes it) and its range."""
    name, off = spelling.name, spelling.off
    t, top_k, top_p, seed = values["temperature"], values["top_k"], values["top_p"], values["seed"]
    cfg_weight, max_new_tokens = values["cfg_weight"], values["max_new_tokens"]
    if not _is_number(t) or t < 0:  # type: ignore[operator]
        raise InputError(f"{name('temperature')} must be a finite number >= 0 (0 means greedy), got {t!r}",
                         param="temperature")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):  # type: ignore[operator]
        raise InputError(f"{name('top_k')} must be a positive integer or {off('top_k')}, got {top_k!r}", param="top_k")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):  # type: ignore[operator]
        raise InputError(f"{name('top_p')} must be in (0, 1] or {off('top_p')}, got {top_p!r}",
                         param="top_p")
    if seed is not None and not _is_int(seed):
        raise InputError(f"{name('seed')} must be an integer or {off('seed')}, got {seed!r}", param="seed")
    if not _is_number(cfg_weight) or cfg_weight < 0:  # type: ignore[operator]
        raise InputError(f"{name('cfg_weight')} must be a finite number >= 0, got {cfg_weight!r}", param="cfg_weight")
    if not _is_int(max_new_tokens) or max_new_tokens < 1:  # type: ignore[operator]
        raise InputError(f"{name('max_new_tokens')} must be an integer >= 1, got {max_new_tokens!r}",
                         param="max_new_tokens")


IMAGE_DEFAULTS = SamplingParams(temperature=1.0, top_k=None, top_p=None, cfg_weight=5.0)  # the reference's generation
CHAT_DEFAULTS = SamplingParams(temperature=0.0, top_k=50, top_p=None, max_new_tokens=512)  # transformers' generate
