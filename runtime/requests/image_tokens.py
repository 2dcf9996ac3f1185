"""Checking image-token ids a caller hands in to be decoded into pixels (`Janus.decode_image_tokens`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from janus_rt.errors import InputError


def checked_image_tokens(tokens: torch.Tensor | np.ndarray | Sequence[Sequence[int]], tokens_per_image: int,
                         codebook_size: int) -> torch.Tensor:
    """`[N, tokens_per_image]` int64 ids (one row `[tokens_per_image]` is taken as N = 1), each in the codebook."""
    try:
        t = tokens if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens))
    except (TypeError, ValueError) as e:
        raise InputError(f"image tokens must be an integer tensor / array of shape [N, {tokens_per_image}], got "
                         f"{type(tokens).__name__} ({e})") from None
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2 or t.shape[1] != tokens_per_image or t.shape[0] < 1:
        raise InputError(f"image tokens must have shape [N, {tokens_per_image}], got {list(t.shape)}")
    if t.is_floating_point() or t.dtype == torch.bool:
        raise InputError(f"image tokens must be integers, got dtype {t.dtype}")
    if int(t.min()) < 0 or int(t.max()) >= codebook_size:
        raise InputError(f"image tokens must lie in [0, {codebook_size}), got values in [{int(t.min())}, "
                         f"{int(t.max())}]")
    return t.to(dtype=torch.long)
