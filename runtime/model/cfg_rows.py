"""Inputs and outputs of the generation path: the reference's doubled CFG prompt, and the VQ decode.

Rows are interleaved (conditional, unconditional) per image; unconditional rows keep BOS and the final
`<begin_of_image>` and replace every token between with the pad id. No attention mask: the unconditional
rows attend to their pad embeddings, exactly as the reference. The 576-step loop is the engine's.
"""

from __future__ import annotations

import torch

from janus_rt.model.janus import JanusModel


def cfg_prompt_tokens(prompt_ids: list[int], pad_id: int, num_images: int, device: torch.device) -> torch.Tensor:
    """`[2P, L]` token ids: even rows the prompt, odd rows the prompt with positions 1..L-2 set to pad."""
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    tokens = ids.repeat(2 * num_images, 1)  # [2P, L]
    tokens[1::2, 1:-1] = pad_id
    return tokens


@torch.inference_mode()
def decode_tokens(model: JanusModel, tokens: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """Image-token ids `[N, grid*grid]` -> decoded RGB `[N, 3, S, S]` in [-1, 1], `chunk` images at a time."""
    parts = [model.vq(tokens[i:i + chunk]) for i in range(0, tokens.shape[0], chunk)]
    return torch.cat(parts)
