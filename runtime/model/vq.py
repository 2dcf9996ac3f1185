"""VQ-16 image decoder (LlamaGen tokenizer as used by Janus): image-token ids -> RGB in [-1, 1].

Only the decoder half runs at inference. The codebook is kept as stored and the looked-up rows are
L2-normalised in the activation dtype, as the reference's `get_codebook_entry` does (identical in fp32, and
bit-faithful to the reference in bf16).
Precision follows the reference: the nearest-neighbour upsample runs in fp32 and the result is cast back to
the activation dtype (the official code hard-codes bfloat16, the only low-precision dtype it runs in).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from janus_rt.model.config import VQConfig


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        skip = self.nin_shortcut(x) if self.nin_shortcut is not None else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with scale C^-0.5."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = group_norm(ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bmm -> softmax -> bmm in the reference's order, so decoded pixels match it bit for bit
        b, c, h, w = x.shape
        n = self.norm(x)
        q = self.q(n).reshape(b, c, h * w).transpose(1, 2)  # [B, HW, C]
        k = self.k(n).reshape(b, c, h * w)  # [B, C, HW]
        v = self.v(n).reshape(b, c, h * w)  # [B, C, HW]
        weights = torch.softmax(torch.bmm(q, k) * (int(c) ** (-0.5)), dim=2)  # [B, HW(query), HW(key)]
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w)  # [B, C, H, W]
        return x + self.proj_out(out)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype)
        return self.conv(up)


class DecoderLevel(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, with_attn: bool, with_upsample: bool):
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(in_ch if i == 0 else out_ch, out_ch) for i in range(num_blocks))
        self.attn = nn.ModuleList(AttnBlock(out_ch) for _ in range(num_blocks)) if with_attn else nn.ModuleList()
        self.upsample = Upsample(out_ch) if with_upsample else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return self.upsample(h) if self.upsample is not None else h


class VQDecoder(nn.Module):
    """Codebook lookup + post_quant_conv + convolutional decoder."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        mults = cfg.channel_multipliers
        top = cfg.base_channels * mults[-1]
        self.codebook = nn.Parameter(torch.zeros(cfg.codebook_size, cfg.codebook_embed_dim))  # raw rows
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, padding=1)
        self.mid = nn.ModuleList([ResnetBlock(top, top), AttnBlock(top), ResnetBlock(top, top)])
        levels, ch = [], top
        for i, level in enumerate(reversed(range(len(mults)))):  # lowest resolution first
            out_ch = cfg.base_channels * mults[level]
            levels.append(DecoderLevel(ch, out_ch, cfg.num_res_blocks + 1, with_attn=i == 0, with_upsample=level != 0))
            ch = out_ch
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(ch)
        self.conv_out = nn.Conv2d(ch, 3, 3, padding=1)

    def latents(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens `[N, grid*grid]` (raster order) -> codebook vectors `[N, embed_dim, grid, grid]`."""
        n, grid = tokens.shape[0], self.cfg.image_token_grid
        z = F.normalize(self.codebook[tokens.reshape(-1)], p=2, dim=-1)  # [N*grid*grid, d], unit rows
        return z.view(n, grid, grid, -1).permute(0, 3, 1, 2).contiguous()  # [N, d, grid, grid]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens `[N, grid*grid]` -> RGB `[N, 3, size, size]`, nominally in [-1, 1]."""
        h = self.conv_in(self.post_quant_conv(self.latents(tokens)))
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))
