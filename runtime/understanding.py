"""Image understanding loop of the torch backend: SigLIP features spliced into the prompt, then text decoding.

Batches are left-padded: row b's first real token sits at cache slot `pad[b]`, its RoPE positions start at 0
there, and padding is masked out, so a batch answers exactly as its rows would one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .llm import KVCache
from .model import JanusModel
from .sampling import sample
from .timing import PhaseTimer


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
def prefill_embeddings(model: JanusModel, requests: list[TextRequest], pad_id: int, placeholder: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded `[B, T]` ids -> (inputs_embeds `[B, T, D]`, positions `[B, T]`, key_start `[B]`)."""
    device = model.gen_embed.weight.device
    dtype = model.gen_embed.weight.dtype
    width = max(len(r.ids) for r in requests)
    pads = [width - len(r.ids) for r in requests]
    ids = torch.tensor([[pad_id] * p + r.ids for p, r in zip(pads, requests)], dtype=torch.long, device=device)
    embeds = model.llm.embed_tokens(ids)  # [B, T, D]
    pixels = [r.pixel_values for r in requests if r.pixel_values is not None]
    if pixels:
        image_embeds = model.image_embeddings(torch.cat(pixels).to(device=device, dtype=dtype))  # [n, 576, D]
        image_embeds = image_embeds.reshape(-1, image_embeds.shape[-1])  # [n*576, D], row-major over rows
        mask = ids == placeholder  # [B, T]
        embeds[mask] = image_embeds
    key_start = torch.tensor(pads, device=device)
    positions = (torch.arange(width, device=device)[None, :] - key_start[:, None]).clamp(min=0)  # [B, T]
    return embeds, positions, key_start


def record_tokens(outputs: list[list[int]], finished: list[bool], tokens: list[int], eos_id: int) -> None:
    """Append one new token per row to `outputs`; a row's EOS marks it finished and nothing is added after."""
    for b, tid in enumerate(tokens):
        if not finished[b]:
            if tid == eos_id:
                finished[b] = True
            else:
                outputs[b].append(tid)


@torch.inference_mode()
def generate_text(
    model: JanusModel,
    requests: list[TextRequest],
    pad_id: int,
    placeholder: int,
    eos_id: int,
    max_new_tokens: int,
    temperature: float,
    generator: torch.Generator | None,
    top_k: int | None = None,
    top_p: float | None = None,
    timer: PhaseTimer | None = None,
) -> list[tuple[list[int], bool]]:
    """Per row: (new token ids without EOS, whether EOS ended it).

    A `timer` gets phases "prefill" (up to and including the first token) and "decode" (one mark per token after).
    """
    embeds, positions, key_start = prefill_embeddings(model, requests, pad_id, placeholder)
    batch, width = positions.shape
    device, dtype = embeds.device, embeds.dtype
    cache = KVCache.allocate(model.cfg.llm, batch, width + max_new_tokens, device, dtype)
    hidden = model.llm(embeds, positions, cache, 0, key_start)[:, -1]  # [B, D]
    next_pos = positions[:, -1] + 1  # [B]
    outputs: list[list[int]] = [[] for _ in range(batch)]
    finished = [False] * batch
    for step in range(max_new_tokens):
        # fp32 logits for the draw, as transformers' generate (which the reference calls) does
        tokens = sample(model.lm_head(hidden).float(), temperature, generator, top_k, top_p)  # [B]
        if timer is not None:
            timer.mark("prefill" if step == 0 else "decode")
        record_tokens(outputs, finished, tokens.tolist(), eos_id)
        if all(finished) or step == max_new_tokens - 1:
            break
        pos = (next_pos + step)[:, None]  # [B, 1]
        hidden = model.llm(model.llm.embed_tokens(tokens[:, None]), pos, cache, width + step, key_start)[:, -1]
    return list(zip(outputs, finished))
