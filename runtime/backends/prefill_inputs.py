"""A group's prefill for the torch-module backends (eager and triton): one builder of its inputs, one prefill.

Image group: the CFG rows' prompt ids (`janus_rt.model.cfg_rows`) through the token embedding; with a negative
prompt, the conditional and unconditional rows have their own lengths and run as two row sets. Text group: its
one row's embeddings with each image's SigLIP features spliced over its placeholders (`janus_rt.model.prefill`).
Every row starts at cache slot 0 (positions 0..L-1 of its own prompt). The exported-graph backends build the same
ids and run their own embedding graphs (`janus_rt.export`).
"""

from __future__ import annotations

import torch

from janus_rt.backends.kv_rows import KVRows
from janus_rt.engine.request import Group
from janus_rt.model.cfg_rows import cfg_prompt_tokens, negative_prompt_tokens
from janus_rt.model.janus import JanusModel
from janus_rt.model.prefill import text_embeddings


def prefill_embeddings(model: JanusModel, group: Group, device: torch.device) -> list[torch.Tensor]:
    """Input embeddings of each row set of `group.row_sets()`, `[r, L, D]` each (one set: all R rows)."""
    request = group.request
    if group.kind == "text":
        return [text_embeddings(model, request.prompt_ids, request.pixel_values, request.placeholder_id)]  # [1, L, D]
    if request.negative_ids is None:
        ids = cfg_prompt_tokens(request.prompt_ids, request.pad_id, group.images, device)  # [2P, L]
        return [model.llm.embed_tokens(ids)]  # [2P, L, D]
    cond, uncond = negative_prompt_tokens(request.prompt_ids, request.negative_ids, group.images, device)
    return [model.llm.embed_tokens(cond), model.llm.embed_tokens(uncond)]  # [P, Lc, D], [P, Lu, D]


def prefill_hidden(model: JanusModel, group: Group, kv: KVRows, device: torch.device) -> torch.Tensor:
    """Run the group's prompts into its KV rows; the last position's hidden state of each row `[R, D]`."""
    sets = group.row_sets()
    outs = []
    for (rows, length), embeds in zip(sets, prefill_embeddings(model, group, device)):
        positions = torch.arange(length, device=device).expand(embeds.shape[0], length)  # [r, L]
        outs.append(model.llm(embeds, positions, kv.group_cache(group, rows), 0)[:, -1])  # [r, D]
    return in_row_order(group, sets, outs)


def in_row_order(group: Group, sets: list[tuple[slice, int]], outs: list[torch.Tensor]) -> torch.Tensor:
    """The row sets' outputs `[r, D]` put back in the group's row order `[R, D]` (one set: as it is)."""
    if len(outs) == 1:
        return outs[0]
    hidden = outs[0].new_empty(group.rows, outs[0].shape[-1])  # [R, D]
    for (rows, _), out in zip(sets, outs):
        hidden[rows] = out
    return hidden
