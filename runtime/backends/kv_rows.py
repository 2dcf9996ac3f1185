"""KV rows of the torch-module backends: the static cache pool and the token record, on the model's device.

    cache.keys / cache.values  [layers, rows + 1, kv_heads, max_seq_len, head_dim]
    tokens                     [rows + 1, max_seq_len] int64: tokens[r, s] = token s sampled for the output
                               row whose conditional (or only) KV row is r
Row `rows` is the scratch row that padding rows of a CUDA-graph bucket write to. A group's rows are
contiguous, so `group_cache` is a view: the model writes the group's keys straight into the pool.
"""

from __future__ import annotations

import torch

from janus_rt.model.config import LLMConfig
from janus_rt.engine.request import Group
from janus_rt.model.cfg_rows import ROWS_PER_IMAGE
from janus_rt.model.llm import KVCache


class KVRows:
    def __init__(self, llm: LLMConfig, rows: int, max_seq_len: int, device: torch.device, dtype: torch.dtype):
        self.rows = rows
        self.max_seq_len = max_seq_len
        self.scratch_row = rows
        self.cache = KVCache.empty(llm, rows + 1, max_seq_len, device, dtype)
        self.tokens = torch.zeros(rows + 1, max_seq_len, dtype=torch.long, device=device)

    def group_cache(self, group: Group, rows: slice = slice(None)) -> KVCache:
        """The group's rows of every layer, `[layers, group.rows, kv_heads, max_seq_len, head_dim]` (a view), or
        those `rows` of them (a row set of `group.row_sets()`, a strided view)."""
        span = slice(group.first_row, group.first_row + group.rows)
        return KVCache(self.cache.keys[:, span][:, rows], self.cache.values[:, span][:, rows])

    def out_tokens(self, group: Group) -> torch.Tensor:
        """The group's token records `[images, max_seq_len]` (a view: each image's conditional row)."""
        step = ROWS_PER_IMAGE if group.kind == "image" else 1
        return self.tokens[group.first_row:group.first_row + group.rows:step]

    def read(self, group: Group, start: int, stop: int) -> torch.Tensor:
        return self.out_tokens(group)[:, start:stop].cpu()
