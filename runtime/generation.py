"""Text-to-image loop of the torch backend: the reference's doubled CFG batch, one prefill + N-1 decode steps.

Rows are interleaved (conditional, unconditional) per image; unconditional rows keep BOS and the final
`<begin_of_image>` and replace every token between with the pad id. No attention mask: the unconditional
rows attend to their pad embeddings, exactly as the reference.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .llm import KVCache
from .model import JanusModel
from .sampling import cfg_mix, sample
from .timing import PhaseTimer


def cfg_prompt_tokens(prompt_ids: list[int], pad_id: int, num_images: int, device: torch.device) -> torch.Tensor:
    """`[2P, L]` token ids: even rows the prompt, odd rows the prompt with positions 1..L-2 set to pad."""
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device)
    tokens = ids.repeat(2 * num_images, 1)  # [2P, L]
    tokens[1::2, 1:-1] = pad_id
    return tokens


@torch.inference_mode()
def generate_image_tokens(
    model: JanusModel,
    prompt_ids: list[int],
    pad_id: int,
    num_images: int,
    cfg_weight: float,
    temperature: float,
    generator: torch.Generator | None,
    top_k: int | None = None,
    top_p: float | None = None,
    progress: bool = False,
    timer: PhaseTimer | None = None,
) -> torch.Tensor:
    """Sample `[P, grid*grid]` image-token ids for one prompt (ids already include BOS ... <begin_of_image>).

    A `timer` gets phases "prefill" and "decode" (steps - 1 steps; the last step's sampling counts there too).
    """
    device = model.gen_embed.weight.device
    dtype = model.gen_embed.weight.dtype
    steps = model.cfg.image_tokens_per_image
    rows, prompt_len = 2 * num_images, len(prompt_ids)
    tokens = cfg_prompt_tokens(prompt_ids, pad_id, num_images, device)
    cache = KVCache.allocate(model.cfg.llm, rows, prompt_len + steps - 1, device, dtype)
    positions = torch.arange(prompt_len, device=device).expand(rows, prompt_len)  # [2P, L]
    hidden = model.llm(model.llm.embed_tokens(tokens), positions, cache, 0)[:, -1]  # [2P, D]
    if timer is not None:
        timer.mark("prefill")
    out = torch.empty(num_images, steps, dtype=torch.long, device=device)
    for step in tqdm(range(steps), desc="image tokens", unit="tok", disable=not progress, leave=False):
        guided = cfg_mix(model.gen_head(hidden), cfg_weight)  # [P, V]
        next_tokens = sample(guided, temperature, generator, top_k, top_p)  # [P]
        out[:, step] = next_tokens
        if step == steps - 1:
            break
        embeds = model.gen_token_embeddings(next_tokens.repeat_interleave(2))[:, None]  # [2P, 1, D]
        pos = torch.full((rows, 1), prompt_len + step, device=device)
        hidden = model.llm(embeds, pos, cache, prompt_len + step)[:, -1]
    if timer is not None:
        timer.mark("decode", steps - 1)
    return out


@torch.inference_mode()
def decode_tokens(model: JanusModel, tokens: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """Image-token ids `[N, grid*grid]` -> decoded RGB `[N, 3, S, S]` in [-1, 1], `chunk` images at a time."""
    parts = [model.vq(tokens[i:i + chunk]) for i in range(0, tokens.shape[0], chunk)]
    return torch.cat(parts)
