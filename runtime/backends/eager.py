"""The torch backend: the faithful reference, as step primitives for the engine.

Each group runs exactly the reference's arithmetic: its own doubled CFG batch (or its one text row)
through the eager modules, attention over its own cache length with no mask, and its own
`torch.multinomial` stream (`manual_seed(seed)`, as the reference). So a request's tokens are bit-identical
to the official code's, alone or beside others. Groups of one step run one after the other: a GEMM's
rounding depends on how many rows it multiplies (CPU and GPU BLAS pick kernels by shape), so merging
groups into one GEMM would change their bits; the triton backend is the one whose kernels are built to
share one pass per step (see README, "Batch invariance").
"""

from __future__ import annotations

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.engine.primitives import seeded_generator
from janus_rt.engine.request import Group
from janus_rt.backends.prefill_inputs import in_row_order, prefill_hidden
from janus_rt.model.cfg_rows import pair_rows
from janus_rt.backends.kv_rows import KVRows
from janus_rt.model.janus import JanusModel
from janus_rt.kernels.reference_sampling import sample_head_logits


class TorchBackend:
    """`StepBackend` of backend "torch" over a loaded JanusModel."""

    name = "torch"
    sync_every = 1  # tokens are read each step (the sampler already synced)

    def __init__(self, model: JanusModel):
        self.model = model
        self.cfg: JanusConfig = model.cfg
        self.device = model.gen_embed.weight.device
        self.dtype = model.gen_embed.weight.dtype
        self.kv: KVRows | None = None

    def describe_mode(self) -> str:
        return f"torch eager on {self.device} ({str(self.dtype).removeprefix('torch.')})"

    def allocate(self, rows: int, max_seq_len: int) -> None:
        self.kv = KVRows(self.cfg.llm, rows, max_seq_len, self.device, self.dtype)

    def prefill(self, group: Group) -> None:
        model = self.model
        group.state = seeded_generator(group.request.seed, group.index, self.device)
        self._sample(group, prefill_hidden(model, group, self.kv, self.device), 0)  # hidden [R, D]

    def decode(self, groups: list[Group]) -> None:
        for group in groups:
            self._decode_one(group)

    def _decode_one(self, group: Group) -> None:
        model, step = self.model, group.steps_done
        last = self.kv.out_tokens(group)[:, step - 1]  # [P] the tokens sampled last step
        if group.kind == "image":
            embeds = model.gen_token_embeddings(pair_rows(last))[:, None]  # [2P, 1, D]
        else:
            embeds = model.llm.embed_tokens(last[:, None])  # [1, 1, D]
        sets = group.row_sets()  # one set, or a negative prompt's conditional and unconditional rows
        outs = []
        for rows, length in sets:
            slot = length + step - 1  # this set's cache slot and RoPE position of the input token
            pos = torch.full((embeds[rows].shape[0], 1), slot, device=self.device)  # [r, 1]
            outs.append(model.llm(embeds[rows], pos, self.kv.group_cache(group, rows), slot)[:, -1])  # [r, D]
        self._sample(group, in_row_order(group, sets, outs), step)

    def _sample(self, group: Group, hidden: torch.Tensor, step: int) -> None:
        """Head, (CFG mix), draw; the tokens go to column `step` of the group's records."""
        image = group.kind == "image"
        logits = self.model.gen_head(hidden) if image else self.model.lm_head(hidden)  # [R, V]
        self.kv.out_tokens(group)[:, step] = sample_head_logits(logits, image, group.params, group.state)  # [P]

    def read_tokens(self, group: Group, start: int, stop: int) -> torch.Tensor:
        return self.kv.read(group, start, stop)

    def snapshot_tokens(self, group: Group, stop: int) -> torch.Tensor:
        return self.kv.out_tokens(group)[:, :stop].clone()  # enqueued on the device: no sync

    def release(self, group: Group) -> None:
        group.state = None

    def decode_pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # the caller chunks (`Janus._decode`): VQ activations grow per image
            return self.model.vq(tokens)
