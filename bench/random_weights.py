"""Random weights for benchmarks: build the real module tree on the device and fill it in place (no download).

Every parameter is written once, on its own device, by a seeded device generator: no CPU copy of the model
is ever made (Janus-Pro-7B is 14.8 GB in bf16). The values only need to be *sensible* (finite activations,
a non-degenerate VQ codebook): a decode step does the same work whatever the weights are.
"""

from __future__ import annotations

import torch
from torch import nn

from janus_rt.model.config import JanusConfig
from janus_rt.model.janus import JanusModel, build_empty_model

WEIGHT_STD = 0.02  # matrices, convolutions, embeddings (the usual transformer init)
NORM_NOISE = 0.02  # norm weights ~ 1 + N(0, NORM_NOISE)
CODEBOOK_STD = 1.0  # VQ codebook rows are L2-normalised at lookup; unit-variance rows keep them all distinct


@torch.no_grad()
def fill_random_(model: nn.Module, seed: int = 0) -> None:
    """Overwrite every parameter of `model` in place with random values drawn on its device.

    Norm weights (RMSNorm, LayerNorm, GroupNorm) ~ 1 + N(0, 0.02); biases ~ N(0, 0.02); the VQ codebook
    ~ N(0, 1); everything else (linear / conv weights, embeddings, SigLIP positions) ~ N(0, 0.02).
    """
    generators: dict[torch.device, torch.Generator] = {}
    for name, param in model.named_parameters():
        gen = generators.get(param.device)
        if gen is None:
            gen = generators[param.device] = torch.Generator(device=param.device).manual_seed(seed)
        leaf = name.rsplit(".", 1)[-1]
        owner = name.rsplit(".", 2)[-2] if name.count(".") >= 1 else ""
        if name.endswith("codebook"):
            param.normal_(0.0, CODEBOOK_STD, generator=gen)
        elif leaf == "weight" and param.dim() == 1 and "norm" in owner:
            param.normal_(1.0, NORM_NOISE, generator=gen)
        else:
            param.normal_(0.0, WEIGHT_STD, generator=gen)


def build_random_model(cfg: JanusConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> JanusModel:
    """The full Janus module tree for `cfg` on `device` in `dtype`, every parameter random (see `fill_random_`)."""
    model = build_empty_model(cfg, device, dtype)
    fill_random_(model, seed)
    return model
