"""The `Runner` of the engine backends: janus-rt's loops over exported graphs (ONNX Runtime or TensorRT).

The engine only runs graphs (`engine.run(name, {input: tensor}) -> {output: tensor}` on its device); the
CFG batch layout, the KV-cache bookkeeping, the attention masks and sampling (`janus_rt.sampling`) stay
here, in torch, and follow the torch backend step for step, so greedy runs give the same tokens.
The KV cache travels as the `past_key_values.{i}.*` inputs / `present.{i}.*` outputs of the transformer.
"""

from __future__ import annotations

from typing import Protocol

import torch
from tqdm.auto import tqdm

from ..config import JanusConfig
from ..generation import cfg_prompt_tokens
from ..sampling import cfg_mix, sample
from ..understanding import TextRequest, record_tokens
from .graphs import past_names, present_names


class GraphEngine(Protocol):
    device: torch.device
    dtype: torch.dtype

    def run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def describe(self) -> str: ...


class EngineRunner:
    """Implements `janus_rt.backend.Runner` over a `GraphEngine`; `model` is None (no torch modules)."""

    model = None

    def __init__(self, name: str, engine: GraphEngine, cfg: JanusConfig):
        self.name = name
        self.engine = engine
        self.cfg = cfg
        self.device = engine.device
        self.dtype = engine.dtype
        self._past, self._present = past_names(cfg.llm.num_layers), present_names(cfg.llm.num_layers)

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

    # ----------------------------------------------------------------------------------- Runner methods
    @torch.inference_mode()
    def generate_image_tokens(self, prompt_ids, pad_id, num_images, cfg_weight, temperature, seed, top_k, top_p,
                              progress):
        dev, steps = self.device, self.cfg.image_tokens_per_image
        generator = None if seed is None else torch.Generator(device=dev).manual_seed(seed)
        rows, prompt_len = 2 * num_images, len(prompt_ids)
        tokens = cfg_prompt_tokens(prompt_ids, pad_id, num_images, dev)  # [2P, L], interleaved cond / uncond
        positions = torch.arange(prompt_len, device=dev).expand(rows, prompt_len).contiguous()  # [2P, L]
        mask = torch.ones(rows, prompt_len, dtype=torch.long, device=dev)  # no padding mask, as the reference
        hidden, cache = self.transformer(self._embed_text(tokens), positions, mask, self.empty_cache(rows))
        out = torch.empty(num_images, steps, dtype=torch.long, device=dev)
        for step in tqdm(range(steps), desc="image tokens", unit="tok", disable=not progress, leave=False):
            logits = self.engine.run("gen_head", {"hidden_states": hidden})["logits"]  # [2P, V]
            next_tokens = sample(cfg_mix(logits.float(), cfg_weight), temperature, generator, top_k, top_p)  # [P]
            out[:, step] = next_tokens
            if step == steps - 1:
                break
            ids = next_tokens.repeat_interleave(2)[:, None]  # [2P, 1]
            embeds = self.engine.run("gen_embed", {"image_token_ids": ids})["inputs_embeds"]  # [2P, 1, D]
            pos = torch.full((rows, 1), prompt_len + step, dtype=torch.long, device=dev)
            mask = torch.ones(rows, prompt_len + step + 1, dtype=torch.long, device=dev)
            hidden, cache = self.transformer(embeds, pos, mask, cache)
        return out

    def _prefill_inputs(self, requests: list[TextRequest], pad_id: int, placeholder: int):
        """Left-padded ids -> (embeds `[B, T, D]`, positions `[B, T]`, attention_mask `[B, T]`)."""
        dev = self.device
        width = max(len(r.ids) for r in requests)
        pads = torch.tensor([width - len(r.ids) for r in requests], device=dev)  # [B]
        ids = torch.tensor([[pad_id] * (width - len(r.ids)) + r.ids for r in requests], dtype=torch.long, device=dev)
        embeds = self._embed_text(ids).clone()  # [B, T, D]
        pixels = [r.pixel_values for r in requests if r.pixel_values is not None]
        if pixels:
            px = torch.cat(pixels).to(device=dev, dtype=self.dtype)  # [n, 3, S, S]
            image_embeds = self.engine.run("vision", {"pixel_values": px})["image_embeds"]  # [n, 576, D]
            embeds[ids == placeholder] = image_embeds.reshape(-1, image_embeds.shape[-1])  # row-major over rows
        slots = torch.arange(width, device=dev)[None, :]  # [1, T]
        positions = (slots - pads[:, None]).clamp(min=0)  # [B, T]
        mask = (slots >= pads[:, None]).long()  # [B, T], 0 on left padding
        return embeds, positions, mask

    @torch.inference_mode()
    def generate_text(self, requests, pad_id, placeholder, eos_id, max_new_tokens, temperature, seed, top_k, top_p):
        generator = None if seed is None else torch.Generator(device=self.device).manual_seed(seed)
        embeds, positions, mask = self._prefill_inputs(requests, pad_id, placeholder)
        batch = embeds.shape[0]
        hidden, cache = self.transformer(embeds, positions, mask, self.empty_cache(batch))
        next_pos = positions[:, -1] + 1  # [B]
        outputs: list[list[int]] = [[] for _ in range(batch)]
        finished = [False] * batch
        for step in range(max_new_tokens):
            logits = self.engine.run("lm_head", {"hidden_states": hidden})["logits"].float()  # [B, V]
            tokens = sample(logits, temperature, generator, top_k, top_p)  # [B]
            record_tokens(outputs, finished, tokens.tolist(), eos_id)
            if all(finished) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long, device=self.device)], dim=1)  # [B, P+1]
            hidden, cache = self.transformer(self._embed_text(tokens[:, None]), (next_pos + step)[:, None], mask, cache)
        return list(zip(outputs, finished))

    @torch.inference_mode()
    def decode_tokens(self, tokens: torch.Tensor, chunk: int = 4) -> torch.Tensor:
        parts = [self.engine.run("vq_decoder", {"image_token_ids": tokens[i:i + chunk].to(self.device)})["pixel_values"]
                 for i in range(0, tokens.shape[0], chunk)]
        return torch.cat(parts).float()

    def describe_mode(self) -> str:
        return f"{self.engine.describe()} ({str(self.dtype).removeprefix('torch.')} graphs)"
