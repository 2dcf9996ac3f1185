"""The step backend of the exported graphs (ONNX Runtime or TensorRT): janus-rt's engine drives them.

A graph engine only runs graphs (`engine.run(name, {input: tensor}) -> {output: tensor}` on its device); the
CFG batch layout, positions, attention masks and sampling (`janus_rt.kernels.reference_sampling`) stay here, in torch, and
follow the torch backend group for group, so greedy runs give the same tokens. The KV cache travels as the
`past_key_values.{i}.*` inputs / `present.{i}.*` outputs of the transformer graph, so it is per-group state
(`group.state`) rather than a pool; each group of a step runs its own graph calls (ONNX graphs have fixed
arithmetic per shape, and a group keeps the shape it would have alone: batch invariance by construction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.engine.primitives import seeded_generator
from janus_rt.engine.request import Group
from janus_rt.model.cfg_rows import ROWS_PER_IMAGE, cfg_prompt_tokens, negative_prompt_tokens, pair_rows
from janus_rt.kernels.reference_sampling import sample_head_logits
from janus_rt.export.graphs import past_names, present_names


class GraphEngine(Protocol):
    device: torch.device
    dtype: torch.dtype

    def run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def describe(self) -> str: ...


@dataclass
class GroupState:
    generator: torch.Generator  # the group's torch.multinomial stream
    past: list[torch.Tensor]  # per cache input: [rows, kv_heads, length, head_dim]
    left_pad: torch.Tensor | None = None  # [rows] masked slots before each row's prompt (a negative prompt's rows)


class GraphBackend:
    """`StepBackend` over a `GraphEngine`; `model` is None (no torch modules)."""

    model = None
    sync_every = 1  # tokens are on the host after every step

    def __init__(self, name: str, engine: GraphEngine, cfg: JanusConfig):
        self.name = name
        self.engine = engine
        self.cfg = cfg
        self.device = engine.device
        self.dtype = engine.dtype
        self._past, self._present = past_names(cfg.llm.num_layers), present_names(cfg.llm.num_layers)
        self.tokens: torch.Tensor | None = None  # [rows + 1, max_seq_len] int64 token records, on the CPU

    # ------------------------------------------------------------------------------------------ graphs
    def empty_cache(self, rows: int) -> list[torch.Tensor]:
        c = self.cfg.llm
        return [torch.zeros(rows, c.num_kv_heads, 0, c.head_dim, device=self.device, dtype=self.dtype)
                for _ in self._past]

    def transformer(self, embeds: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                    past: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """embeds `[B, T, D]`, positions `[B, T]`, mask `[B, P+T]` -> (last hidden `[B, D]`, present cache)."""
        out = self.engine.run("transformer", {"inputs_embeds": embeds, "positions": positions, "attention_mask": mask,
                                              **dict(zip(self._past, past))})
        return out["hidden_states"][:, -1], [out[n] for n in self._present]

    def _embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.engine.run("text_embed", {"input_ids": ids})["inputs_embeds"]

    # ------------------------------------------------------------------------------------- primitives
    def allocate(self, rows: int, max_seq_len: int) -> None:
        self.tokens = torch.zeros(rows + 1, max_seq_len, dtype=torch.long)

    def _records(self, group: Group) -> torch.Tensor:
        """The group's token records `[images, max_seq_len]` (a view)."""
        step = ROWS_PER_IMAGE if group.kind == "image" else 1
        return self.tokens[group.first_row:group.first_row + group.rows:step]

    @torch.inference_mode()
    def prefill(self, group: Group) -> None:
        request, dev = group.request, self.device
        generator = seeded_generator(request.seed, group.index, dev)
        left_pad = None
        if group.kind == "image" and request.negative_ids is not None:
            ids, left_pad = self._negative_prompt_rows(group)  # [2P, L] left-padded, [2P]
            embeds = self._embed_text(ids)
        elif group.kind == "image":
            ids = cfg_prompt_tokens(request.prompt_ids, request.pad_id, group.images, dev)  # [2P, L] cond / uncond
            embeds = self._embed_text(ids)
        else:
            ids = torch.tensor([request.prompt_ids], dtype=torch.long, device=dev)  # [1, L]
            embeds = self._embed_text(ids).clone()  # [1, L, D]
            if request.pixel_values is not None:
                px = request.pixel_values.to(device=dev, dtype=self.dtype)  # [n, 3, S, S]
                image_embeds = self.engine.run("vision", {"pixel_values": px})["image_embeds"]  # [n, 576, D]
                embeds[ids == request.placeholder_id] = image_embeds.reshape(-1, image_embeds.shape[-1])
        rows, length = group.rows, group.prompt_len
        positions = torch.arange(length, device=dev).expand(rows, length).contiguous()  # [R, L]
        mask = torch.ones(rows, length, dtype=torch.long, device=dev)  # no padding: each group is alone
        if left_pad is not None:  # each row's positions count from its own first token; its padding is masked
            positions = (positions - left_pad[:, None]).clamp(min=0)  # [R, L]
            mask = (torch.arange(length, device=dev)[None, :] >= left_pad[:, None]).long()  # [R, L]
        hidden, past = self.transformer(embeds, positions, mask, self.empty_cache(rows))
        group.state = GroupState(generator, past, left_pad)
        self._sample(group, hidden, 0)

    def _negative_prompt_rows(self, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
        """A negative prompt's CFG rows as one batch: `[2P, L]` ids, the shorter prompt left-padded to the longer
        one's length L, and `[2P]` how many padding slots each row starts with (masked out by the graph)."""
        request, dev = group.request, self.device
        cond, uncond = negative_prompt_tokens(request.prompt_ids, request.negative_ids, group.images, dev)
        length = group.prompt_len
        ids = torch.full((group.rows, length), request.pad_id, dtype=torch.long, device=dev)  # [2P, L]
        ids[0::ROWS_PER_IMAGE, length - cond.shape[1]:] = cond
        ids[1::ROWS_PER_IMAGE, length - uncond.shape[1]:] = uncond
        left_pad = torch.tensor([length - n for n in group.row_prompt_lens], dtype=torch.long, device=dev)  # [2P]
        return ids, left_pad

    @torch.inference_mode()
    def decode(self, groups: list[Group]) -> None:
        for group in groups:
            self._decode_one(group)

    def _decode_one(self, group: Group) -> None:
        dev, step, state = self.device, group.steps_done, group.state
        last = self._records(group)[:, step - 1].to(dev)  # [P]
        if group.kind == "image":
            ids = pair_rows(last)[:, None]  # [2P, 1]
            embeds = self.engine.run("gen_embed", {"image_token_ids": ids})["inputs_embeds"]  # [2P, 1, D]
        else:
            embeds = self._embed_text(last[:, None])  # [1, 1, D]
        pos = torch.tensor(group.positions(), dtype=torch.long, device=dev)[:, None]  # [R, 1]
        slots = group.prompt_len + step  # past + 1: the cache as long as the longest row's, padding included
        mask = torch.ones(group.rows, slots, dtype=torch.long, device=dev)  # [R, past + 1]
        if state.left_pad is not None:
            mask = (torch.arange(slots, device=dev)[None, :] >= state.left_pad[:, None]).long()  # [R, past + 1]
        hidden, state.past = self.transformer(embeds, pos, mask, state.past)
        self._sample(group, hidden, step)

    def _sample(self, group: Group, hidden: torch.Tensor, step: int) -> None:
        image = group.kind == "image"
        head = "gen_head" if image else "lm_head"
        logits = self.engine.run(head, {"hidden_states": hidden})["logits"]  # [R, V]
        self._records(group)[:, step] = sample_head_logits(logits, image, group.params, group.state.generator).cpu()

    def read_tokens(self, group: Group, start: int, stop: int) -> torch.Tensor:
        return self._records(group)[:, start:stop].clone()

    def snapshot_tokens(self, group: Group, stop: int) -> torch.Tensor:
        return self._records(group)[:, :stop].clone()

    def release(self, group: Group) -> None:
        group.state = None

    @torch.inference_mode()
    def decode_pixels(self, tokens: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        parts = [self.engine.run("vq_decoder", {"image_token_ids": tokens[i:i + chunk].to(self.device)})["pixel_values"]
                 for i in range(0, tokens.shape[0], chunk)]
        return torch.cat(parts).float()

    def describe_mode(self) -> str:
        return f"{self.engine.describe()} ({str(self.dtype).removeprefix('torch.')} graphs)"
