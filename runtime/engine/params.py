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

# The valid ranges, one place. Inside them the arithmetic stays finite in fp32: logits / temperature and
# uncond + w * (cond - uncond) stay far below fp32's 3.4e38 for any logits a model produces (|logit| < 1e4).
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-4, 1e4  # 0 is greedy; below 1e-4 a draw is the argmax anyway
MAX_CFG_WEIGHT = 1e4
MAX_TOP_K = (1 << 31) - 1  # an int32 in the fused sampler
MAX_SEED = (1 << 64) - 1  # a seed is 64 bits: torch.manual_seed's range, Philox's key
MAX_NEW_TOKENS = 1 << 20  # past any context; the capacity check then says what fits


def seed_bits(seed: int) -> int:
    """A seed (or seed + offset) as the signed int64 with the same 64 bits (what an int64 tensor can hold)."""
    seed &= MAX_SEED
    return seed - (1 << 64) if seed >= 1 << 63 else seed


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
    if not _is_number(t) or not (t == 0 or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):  # type: ignore[operator]
        raise InputError(f"{name('temperature')} must be 0 (greedy) or a number in [{MIN_TEMPERATURE:g}, "
                         f"{MAX_TEMPERATURE:g}], got {t!r}", param="temperature")
    if top_k is not None and (not _is_int(top_k) or not 1 <= top_k <= MAX_TOP_K):  # type: ignore[operator]
        raise InputError(f"{name('top_k')} must be an integer in [1, {MAX_TOP_K}] or {off('top_k')}, got {top_k!r}", param="top_k")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):  # type: ignore[operator]
        raise InputError(f"{name('top_p')} must be in (0, 1] or {off('top_p')}, got {top_p!r}",
                         param="top_p")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):  # type: ignore[operator]
        raise InputError(f"{name('seed')} must be an integer in [0, 2**64 - 1] or {off('seed')}, got {seed!r}",
                         param="seed")
    if not _is_number(cfg_weight) or not 0 <= cfg_weight <= MAX_CFG_WEIGHT:  # type: ignore[operator]
        raise InputError(f"{name('cfg_weight')} must be a number in [0, {MAX_CFG_WEIGHT:g}], got {cfg_weight!r}",
                         param="cfg_weight")
    if not _is_int(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:  # type: ignore[operator]
        raise InputError(f"{name('max_new_tokens')} must be an integer in [1, {MAX_NEW_TOKENS}], got {max_new_tokens!r}",
                         param="max_new_tokens")


IMAGE_DEFAULTS = SamplingParams(temperature=1.0, top_k=None, top_p=None, cfg_weight=5.0)  # the reference's generation
CHAT_DEFAULTS = SamplingParams(temperature=0.0, top_k=50, top_p=None, max_new_tokens=512)  # transformers' generate
