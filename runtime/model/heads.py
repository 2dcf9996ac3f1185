"""Small MLP components: the understanding aligner, the generation aligner and the image-token head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from janus_rt.model.config import GenHeadConfig, MlpConfig


class MlpProjector(nn.Module):
    """`depth` Linear layers with exact GELU between them (official `MlpProjector`, `mlp_gelu`)."""

    def __init__(self, cfg: MlpConfig):
        super().__init__()
        dims = [cfg.input_dim] + [cfg.output_dim] * cfg.depth
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(cfg.depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[0](x)
        for layer in self.layers[1:]:
            x = layer(F.gelu(x))
        return x


class GenHead(nn.Module):
    """Official `vision_head`: Linear -> GELU -> Linear to image-token logits."""

    def __init__(self, cfg: GenHeadConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.input_dim, cfg.hidden_dim)
        self.out = nn.Linear(cfg.hidden_dim, cfg.vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(F.gelu(self.proj(hidden)))
