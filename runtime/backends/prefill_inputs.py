"""A group's prefill inputs for the torch-module backends (eager and triton): one builder for both.

Image group: the CFG rows' prompt ids (`janus_rt.model.cfg_rows`) through the token embedding. Text group: its
one row's embeddings with each image's SigLIP features spliced over its placeholders (`janus_rt.model.prefill`).
The exported-graph backends build the same ids and run their own embedding graphs (`janus_rt.export`).
"""

from __future__ import annotations

import torch

from janus_rt.engine.request import Group
from janus_rt.model.cfg_rows import cfg_prompt_tokens
from janus_rt.model.janus import JanusModel
from janus_rt.model.prefill import text_embeddings


def prefill_embeddings(model: JanusModel, group: Group, device: torch.device) -> torch.Tensor:
    """`[R, L, D]` input embeddings of the group's rows (R = 2 per image, or 1 text row)."""
    request = group.request
    if group.kind == "image":
        ids = cfg_prompt_tokens(request.prompt_ids, request.pad_id, group.images, device)  # [2P, L]
        return model.llm.embed_tokens(ids)  # [2P, L, D]
    return text_embeddings(model, request.prompt_ids, request.pixel_values, request.placeholder_id)  # [1, L, D]


def prefill_positions(group: Group, device: torch.device) -> torch.Tensor:
    """`[R, L]` RoPE positions of the prompt: 0..L-1 on every row (no padding: each group starts at slot 0)."""
    return torch.arange(group.prompt_len, device=device).expand(group.rows, group.prompt_len)  # [R, L]
