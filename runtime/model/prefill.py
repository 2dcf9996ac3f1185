"""Inputs of the understanding path: image placeholders expanded, SigLIP features spliced into the prompt.

A text row is prefilled alone at slots 0..L-1 (the engine gives every row its own KV row, so no batch
is ever padded); the decode loop itself is the engine's (engine/core.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from janus_rt.model.janus import JanusModel


@dataclass(frozen=True)
class TextRequest:
    """One row: prompt ids with each image placeholder already expanded, and that row's image pixels."""

    ids: list[int]  # BOS ... (<begin_of_image> <image_placeholder>*576 <end_of_image>)* ...
    pixel_values: torch.Tensor | None  # [n_images, 3, S, S] or None


def expand_placeholders(ids: list[int], placeholder: int, begin: int, end: int, tokens_per_image: int) -> list[int]:
    """Replace each single placeholder id by `[begin] + [placeholder] * tokens_per_image + [end]`."""
    out: list[int] = []
    for tid in ids:
        out.extend([begin] + [placeholder] * tokens_per_image + [end] if tid == placeholder else [tid])
    return out


@torch.inference_mode()
def text_embeddings(model: JanusModel, ids: list[int], pixel_values: torch.Tensor | None, placeholder: int) -> torch.Tensor:
    """Input embeddings `[1, L, D]` of one row: token embeddings, each placeholder run replaced by its image's."""
    device, dtype = model.gen_embed.weight.device, model.gen_embed.weight.dtype
    ids_t = torch.tensor([ids], dtype=torch.long, device=device)  # [1, L]
    embeds = model.llm.embed_tokens(ids_t)  # [1, L, D]
    if pixel_values is not None:
        image_embeds = model.image_embeddings(pixel_values.to(device=device, dtype=dtype))  # [n, 576, D]
        embeds[ids_t == placeholder] = image_embeds.reshape(-1, image_embeds.shape[-1])  # [n*576, D] in prompt order
    return embeds
