"""Export-side wrappers: one `nn.Module` per ONNX graph, with explicit tensor inputs and outputs only.

They reuse the parameters of a loaded `JanusModel` component (no copies), but spell the computation out so
that it traces to a clean, static ONNX graph and so that precision is explicit in every dtype:
- the transformer takes its KV cache as inputs and returns the grown cache as outputs (no in-place writes
  into a preallocated buffer), and builds its attention mask from an `attention_mask` input;
- RMSNorm / LayerNorm / GroupNorm statistics, RoPE tables, every softmax and the codebook L2 norm are
  computed in fp32 and cast back, so an fp16 / bf16 export keeps the numerics of the fp32 one where low
  precision breaks them; the VQ upsample is a nearest-neighbour copy in the activation dtype (exact, no
  hard-coded bf16 cast as in the reference).
In fp32 each wrapper computes what the runtime module computes (tests/test_export_graphs.py proves it).
Why a second forward beside `model/llm.py`: an ONNX graph needs the cache as inputs/outputs and fp32 islands spelled
out, which the runtime's in-place, reference-exact forward must not take on.

KV cache naming (one scheme for every graph and engine): inputs `past_key_values.{i}.key` /
`past_key_values.{i}.value` `[batch, kv_heads, past_sequence, head_dim]`, outputs `present.{i}.key` /
`present.{i}.value` `[batch, kv_heads, past_sequence + sequence, head_dim]` for layer i; prefill passes
`past_sequence` = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from janus_rt.model.heads import GenHead, MlpProjector
from janus_rt.model.llm import LanguageModel
from janus_rt.model.siglip import SigLIPTower
from janus_rt.model.vq import VQDecoder


def past_names(layers: int) -> list[str]:
    """Input names of the KV cache, layer-major: key then value of each layer."""
    return [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def present_names(layers: int) -> list[str]:
    return [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm with fp32 statistics, as Hugging Face Llama (and runtime/model/llm.py)."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def layer_norm32(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    return F.layer_norm(x.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(), norm.eps).to(x.dtype)


def group_norm32(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    return F.group_norm(x.float(), norm.num_groups, norm.weight.float(), norm.bias.float(), norm.eps).to(x.dtype)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mask: torch.Tensor | None) -> torch.Tensor:
    """q `[B, H, T, hd]`, k / v `[B, H, S, hd]`, mask `[B, 1, T, S]` (True = attend) -> `[B, H, T, hd]`."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale  # [B, H, T, S], fp32 statistics
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.matmul(torch.softmax(scores, dim=-1).to(v.dtype), v)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin `[B, T, head_dim]` for positions `[B, T]`, computed in fp32 (rotate_half layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))  # [hd/2]
    freqs = positions.float()[..., None] * inv_freq.to(positions.device)  # [B, T, hd/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [B, T, hd]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x `[B, H, T, hd]`, cos / sin `[B, T, hd]`."""
    half = x.shape[-1] // 2
    return x * cos[:, None] + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin[:, None]


class TransformerGraph(nn.Module):
    """(inputs_embeds, positions, attention_mask, *past) -> (hidden_states, *present).

    inputs_embeds `[B, T, D]`; positions `[B, T]` int64 (RoPE positions per row); attention_mask `[B, P+T]`
    int64, 1 = real token, 0 = left padding; past `[B, Hkv, P, hd]` per layer and kind (see `past_names`).
    Key j is visible to new token t when it is causal (j <= P + t) and not padding, or when j is t itself
    (a padded query attends to itself, so no row is fully masked), exactly as runtime/model/llm.py.
    hidden_states `[B, T, D]` are final-normed; apply `lm_head` or `gen_head` to the rows you need.
    """

    def __init__(self, llm: LanguageModel):
        super().__init__()
        self.llm = llm

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, attention_mask: torch.Tensor,
                *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg = self.llm.cfg
        b, t, _ = inputs_embeds.shape
        past_len = past[0].shape[2]
        cos, sin = rope_tables(positions, cfg.head_dim, cfg.rope_theta, inputs_embeds.dtype)
        key_idx = torch.arange(past_len + t, device=inputs_embeds.device)  # [S]
        query_pos = past_len + torch.arange(t, device=inputs_embeds.device)  # [T]
        causal = key_idx[None, :] <= query_pos[:, None]  # [T, S]
        itself = key_idx[None, :] == query_pos[:, None]  # [T, S]
        mask = ((causal[None] & (attention_mask[:, None, :] != 0)) | itself[None])[:, None]  # [B, 1, T, S]
        q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        rep = cfg.num_heads // cfg.num_kv_heads
        h, present = inputs_embeds, []
        for i, layer in enumerate(self.llm.layers):
            x = rms_norm(h, layer.input_norm.weight, layer.input_norm.eps)
            q, k, v = layer.attn.qkv_proj(x).split([q_out, kv_out, kv_out], dim=-1)
            q = q.reshape(b, t, cfg.num_heads, cfg.head_dim).transpose(1, 2)  # [B, H, T, hd]
            k = k.reshape(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
            v = v.reshape(b, t, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)  # [B, Hkv, T, hd]
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
            keys = torch.cat([past[2 * i], k], dim=2)  # [B, Hkv, S, hd]
            values = torch.cat([past[2 * i + 1], v], dim=2)  # [B, Hkv, S, hd]
            present += [keys, values]
            if rep > 1:  # grouped-query attention: each kv head serves `rep` query heads
                s = keys.shape[2]
                keys = keys[:, :, None].expand(b, cfg.num_kv_heads, rep, s, cfg.head_dim).reshape(b, -1, s, cfg.head_dim)
                values = values[:, :, None].expand(b, cfg.num_kv_heads, rep, s, cfg.head_dim).reshape(b, -1, s, cfg.head_dim)
            out = attention(q, keys, values, cfg.head_dim ** -0.5, mask)  # [B, H, T, hd]
            h = h + layer.attn.o_proj(out.transpose(1, 2).reshape(b, t, q_out))
            h = h + layer.mlp(rms_norm(h, layer.post_attn_norm.weight, layer.post_attn_norm.eps))
        return (rms_norm(h, self.llm.norm.weight, self.llm.norm.eps), *present)


class TextEmbedGraph(nn.Module):
    """input_ids `[B, T]` int64 -> inputs_embeds `[B, T, D]` (the language model's token embedding)."""

    def __init__(self, llm: LanguageModel):
        super().__init__()
        self.embed = llm.embed_tokens

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed(input_ids)


class HeadGraph(nn.Module):
    """hidden_states `[B, D]` -> logits `[B, V]`: the text `lm_head` (a Linear) or the image `gen_head`."""

    def __init__(self, head: nn.Linear | GenHead):
        super().__init__()
        self.head = head

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.head(hidden_states)


class GenEmbedGraph(nn.Module):
    """image_token_ids `[B, T]` int64 -> inputs_embeds `[B, T, D]` (gen_embed, then gen_aligner)."""

    def __init__(self, gen_embed: nn.Embedding, gen_aligner: MlpProjector):
        super().__init__()
        self.gen_embed, self.gen_aligner = gen_embed, gen_aligner

    def forward(self, image_token_ids: torch.Tensor) -> torch.Tensor:
        return self.gen_aligner(self.gen_embed(image_token_ids))


class VisionGraph(nn.Module):
    """pixel_values `[N, 3, S, S]` in [-1, 1] -> image_embeds `[N, num_patches, D]` (SigLIP, then aligner)."""

    def __init__(self, tower: SigLIPTower, aligner: MlpProjector):
        super().__init__()
        self.tower, self.aligner = tower, aligner

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tower = self.tower
        x = tower.patch_embed(pixel_values)  # [N, W, g, g]
        x = x.flatten(2).transpose(1, 2) + tower.pos_embed  # [N, g*g, W]
        n, p, w = x.shape
        for block in tower.blocks:
            heads = block.attn.heads
            qkv = block.attn.qkv(layer_norm32(x, block.norm1))  # [N, P, 3W]
            qkv = qkv.reshape(n, p, 3, heads, w // heads).permute(2, 0, 3, 1, 4)  # [3, N, H, P, hd]
            out = attention(qkv[0], qkv[1], qkv[2], (w // heads) ** -0.5, None)  # [N, H, P, hd]
            x = x + block.attn.proj(out.transpose(1, 2).reshape(n, p, w))
            x = x + block.mlp(layer_norm32(x, block.norm2))
        return self.aligner(layer_norm32(x, tower.norm))


class VQDecoderGraph(nn.Module):
    """image_token_ids `[N, grid*grid]` int64 (raster order) -> pixel_values `[N, 3, size, size]` in ~[-1, 1].

    Includes the codebook lookup and its L2 normalisation (fp32), post_quant_conv and the decoder.
    """

    def __init__(self, vq: VQDecoder):
        super().__init__()
        self.vq = vq

    @staticmethod
    def _res(block, x: torch.Tensor) -> torch.Tensor:
        h = block.conv1(swish(group_norm32(x, block.norm1)))
        h = block.conv2(swish(group_norm32(h, block.norm2)))
        return (block.nin_shortcut(x) if block.nin_shortcut is not None else x) + h

    @staticmethod
    def _attn(block, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        n = group_norm32(x, block.norm)
        q = block.q(n).reshape(b, c, hgt * wid).transpose(1, 2)  # [B, HW, C]
        k = block.k(n).reshape(b, c, hgt * wid).transpose(1, 2)  # [B, HW, C]
        v = block.v(n).reshape(b, c, hgt * wid).transpose(1, 2)  # [B, HW, C]
        out = attention(q[:, None], k[:, None], v[:, None], c ** -0.5, None)[:, 0]  # [B, HW, C]
        return x + block.proj_out(out.transpose(1, 2).reshape(b, c, hgt, wid))

    def _block(self, block, x: torch.Tensor) -> torch.Tensor:
        return self._attn(block, x) if hasattr(block, "proj_out") else self._res(block, x)

    def forward(self, image_token_ids: torch.Tensor) -> torch.Tensor:
        vq = self.vq
        n, grid = image_token_ids.shape[0], vq.cfg.image_token_grid
        z = F.normalize(vq.codebook[image_token_ids.reshape(-1)].float(), p=2, dim=-1)  # [N*g*g, d], unit rows
        z = z.to(vq.codebook.dtype).reshape(n, grid, grid, -1).permute(0, 3, 1, 2)  # [N, d, g, g]
        h = vq.conv_in(vq.post_quant_conv(z))
        for block in vq.mid:
            h = self._block(block, h)
        for level in vq.conv_blocks:
            for i, res in enumerate(level.res):
                h = self._res(res, h)
                if len(level.attn):
                    h = self._attn(level.attn[i], h)
            if level.upsample is not None:
                h = level.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return vq.conv_out(swish(group_norm32(h, vq.norm_out)))
