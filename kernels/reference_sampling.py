"""Sampling as pure functions: CFG mixing, temperature, top-k / top-p filtering and the draw.

CFG row layout (the reference's): the doubled batch is interleaved, rows `2i` conditional and `2i+1`
unconditional for image i. Temperature 0 means argmax. With top-k/top-p off, a draw is exactly the
reference's `torch.multinomial(softmax(logits / temperature), 1)`, so a seeded generator reproduces the
reference's tokens for the same seed on the same device.
"""

from __future__ import annotations

from typing import Protocol

import torch


class SamplingRule(Protocol):
    """The sampling fields a draw reads (`janus_rt.engine.params.SamplingParams` is one; the kernels import nothing
    of janus_rt outside janus_rt.kernels, hence this protocol)."""

    @property
    def cfg_weight(self) -> float: ...  # images only: uncond + w * (cond - uncond)

    @property
    def temperature(self) -> float: ...  # 0 = argmax

    @property
    def top_k(self) -> int | None: ...  # None = off

    @property
    def top_p(self) -> float | None: ...  # None = off


def cfg_mix(logits: torch.Tensor, cfg_weight: float) -> torch.Tensor:
    """Interleaved `[2P, V]` logits -> guided `[P, V]` = uncond + w * (cond - uncond)."""
    cond, uncond = logits[0::2], logits[1::2]
    return uncond + cfg_weight * (cond - uncond)


def filter_top_k(logits: torch.Tensor, top_k: int | None) -> torch.Tensor:
    if not top_k or top_k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, top_p: float | None) -> torch.Tensor:
    """Nucleus filtering as transformers' TopPLogitsWarper: drop the low tail whose mass is <= 1 - top_p."""
    if top_p is None or top_p >= 1.0:
        return logits
    sorted_logits, sorted_idx = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - top_p)
    remove_sorted[..., -1:] = False  # always keep the most likely token
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def sample(
    logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator | None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """`[B, V]` logits -> `[B]` token ids."""
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    scaled = logits / temperature
    scaled = filter_top_p(filter_top_k(scaled, top_k), top_p)
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def sample_head_logits(logits: torch.Tensor, image: bool, params: SamplingRule,
                       generator: torch.Generator | None) -> torch.Tensor:
    """One group's draw from its head's logits, as the reference: images mix CFG in the logits' dtype
    (interleaved `[2P, V]` -> `[P]`), text samples fp32 logits `[B, V]` -> `[B]` (as transformers' generate)."""
    mixed = cfg_mix(logits, params.cfg_weight) if image else logits.float()
    return sample(mixed, params.temperature, generator, params.top_k, params.top_p)
