"""The Janus module tree: every component janus-rt runs, built from a `JanusConfig`.

Parameter names here are janus-rt's own; `weights.py` maps both checkpoint layouts onto them.
"""

from __future__ import annotations

import torch
from torch import nn

from janus_rt.model.config import JanusConfig
from janus_rt.model.heads import GenHead, MlpProjector
from janus_rt.model.llm import LanguageModel, empty_embedding
from janus_rt.model.siglip import SigLIPTower
from janus_rt.model.vq import VQDecoder


class JanusModel(nn.Module):
    def __init__(self, cfg: JanusConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = SigLIPTower(cfg.vision)
        self.aligner = MlpProjector(cfg.aligner)
        self.llm = LanguageModel(cfg.llm)
        self.lm_head = nn.Linear(cfg.llm.hidden_size, cfg.llm.vocab_size, bias=False)
        self.gen_embed = empty_embedding(cfg.gen_embed_rows, cfg.gen_embed_dim)
        self.gen_aligner = MlpProjector(cfg.gen_aligner)
        self.gen_head = GenHead(cfg.gen_head)
        self.vq = VQDecoder(cfg.vq)

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values `[N, 3, S, S]` -> LLM-space image embeddings `[N, num_patches, D]`."""
        return self.aligner(self.vision(pixel_values))

    def gen_token_embeddings(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """image-token ids `[...]` -> LLM-space input embeddings `[..., D]`."""
        return self.gen_aligner(self.gen_embed(image_tokens))


def empty_parameter(shape: torch.Size | tuple[int, ...], device: torch.device, dtype: torch.dtype) -> nn.Parameter:
    """Uninitialised storage for a weight the checkpoint fills (no grad: janus-rt only runs inference)."""
    return nn.Parameter(torch.empty(shape, device=device, dtype=dtype), requires_grad=False)


def materialize(model: nn.Module, device: torch.device, dtype: torch.dtype, skip: frozenset[str] = frozenset()) -> None:
    """Replace every (meta) parameter with uninitialised storage of `dtype` on `device`, one at a time.

    Building on the meta device and materialising parameter by parameter keeps peak memory at one copy of
    the weights in the target dtype (no fp32 staging copy).
    `skip` names parameters (as in `named_parameters`) left on the meta device, given storage later.
    """
    for prefix, module in model.named_modules():
        for name, param in list(module._parameters.items()):
            if param is not None and (f"{prefix}.{name}" if prefix else name) not in skip:
                module._parameters[name] = empty_parameter(param.shape, device, dtype)


def build_empty_model(cfg: JanusConfig, device: torch.device, dtype: torch.dtype,
                      skip: frozenset[str] = frozenset()) -> JanusModel:
    with torch.device("meta"):
        model = JanusModel(cfg)
    materialize(model, device, dtype, skip)
    return model.eval()
