"""What a backend provides: the three loops behind the API (image tokens, text answers, VQ decode).

`Janus` (api.py) validates arguments, builds prompts and pixels, then calls its runner. A runner owns the
compute: the torch backend's runner calls the eager loops of `generation.py` / `understanding.py`; the
triton backend graph-captures its decode step; export backends run engine sessions. All return the same
things, so every backend is checked against the torch one with the same tests.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .config import JanusConfig
from .generation import decode_tokens, generate_image_tokens
from .model import JanusModel
from .timing import PhaseTimer
from .understanding import TextRequest, generate_text


class Runner(Protocol):
    name: str  # the backend name given to `janus_rt.load`
    cfg: JanusConfig
    device: torch.device
    dtype: torch.dtype
    model: JanusModel | None  # the torch module tree, where the backend has one

    def generate_image_tokens(self, prompt_ids: list[int], pad_id: int, num_images: int, cfg_weight: float,
                              temperature: float, seed: int | None, top_k: int | None, top_p: float | None,
                              progress: bool, timer: PhaseTimer | None = None) -> torch.Tensor:
        """`[P, grid*grid]` image-token ids for one prompt (ids include BOS ... <begin_of_image>).

        A `timer` (benchmarks) gets phases "prefill" and "decode" (marked with the number of decode steps).
        """
        ...

    def generate_text(self, requests: list[TextRequest], pad_id: int, placeholder: int, eos_id: int,
                      max_new_tokens: int, temperature: float, seed: int | None, top_k: int | None,
                      top_p: float | None, timer: PhaseTimer | None = None) -> list[tuple[list[int], bool]]:
        """Per row: (new token ids without EOS, whether EOS ended it).

        A `timer` gets "prefill" (through the first token) and "decode" (marked with the tokens after it).
        """
        ...

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image-token ids `[N, grid*grid]` -> RGB `[N, 3, S, S]` in [-1, 1]."""
        ...

    def describe_mode(self) -> str:
        """One line saying how this backend runs here (shown by the CLI)."""
        ...


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


class TorchRunner:
    """The faithful eager path: the reference's computation, module by module."""

    name = "torch"

    def __init__(self, model: JanusModel):
        self.model = model
        self.cfg = model.cfg
        self.device = model.gen_embed.weight.device
        self.dtype = model.gen_embed.weight.dtype

    def generate_image_tokens(self, prompt_ids, pad_id, num_images, cfg_weight, temperature, seed, top_k, top_p,
                              progress, timer=None):
        return generate_image_tokens(self.model, prompt_ids, pad_id, num_images, cfg_weight, temperature,
                                     seeded_generator(seed, self.device), top_k, top_p, progress, timer)

    def generate_text(self, requests, pad_id, placeholder, eos_id, max_new_tokens, temperature, seed, top_k, top_p,
                      timer=None):
        return generate_text(self.model, requests, pad_id, placeholder, eos_id, max_new_tokens, temperature,
                             seeded_generator(seed, self.device), top_k, top_p, timer)

    def decode_tokens(self, tokens):
        return decode_tokens(self.model, tokens)

    def describe_mode(self) -> str:
        return f"torch eager on {self.device} ({str(self.dtype).removeprefix('torch.')})"
