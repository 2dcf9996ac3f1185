"""Model configuration: one frozen dataclass per component (LLM, SigLIP tower, MLP aligners, gen head, VQ model,
image processor) and `JanusConfig` holding them, with a one-line comment per field and the quantities derived
from them (patch grid, image tokens per image, the variant's name).

Built from a checkpoint's config.json by `config_loading.load_config` (the entry point), which reads either
layout through `config_layouts.py` (official `multi_modality`, Hugging Face `janus`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Layout = Literal["official", "hf"]


@dataclass(frozen=True)
class LLMConfig:
    vocab_size: int  # rows of embed_tokens / lm_head (102400 for every Janus)
    hidden_size: int  # D: 2048 (1.3B, Pro-1B) or 4096 (Pro-7B)
    intermediate_size: int  # SwiGLU inner width
    num_layers: int  # decoder layers
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (== num_heads for every Janus: plain MHA)
    head_dim: int  # 128 for every Janus
    rms_norm_eps: float  # RMSNorm epsilon
    rope_theta: float  # RoPE base frequency
    max_position_embeddings: int  # context length the checkpoint was configured for
    tie_word_embeddings: bool  # lm_head may share embed_tokens' weight (used when the checkpoint has no lm_head)


@dataclass(frozen=True)
class VisionConfig:
    image_size: int  # input side in pixels (384)
    patch_size: int  # conv patch size (16)
    width: int  # transformer width (1024)
    layers: int  # blocks actually run (select_layer applied)
    heads: int  # attention heads (16, head_dim 64)
    mlp_dim: int  # fc1 output width (4096)
    layer_norm_eps: float  # 1e-6 everywhere in the tower

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid


@dataclass(frozen=True)
class MlpConfig:
    input_dim: int  # features in
    output_dim: int  # features out (also the hidden width)
    depth: int  # number of Linear layers, exact GELU between consecutive ones


@dataclass(frozen=True)
class GenHeadConfig:
    input_dim: int  # LLM hidden size
    hidden_dim: int  # output_mlp_projector width (image_token_embed)
    vocab_size: int  # image-token logits (16384)


@dataclass(frozen=True)
class VQConfig:
    codebook_size: int  # number of codes (16384)
    codebook_embed_dim: int  # code vector width (8)
    z_channels: int  # latent channels after post_quant_conv (256)
    base_channels: int  # decoder base width `ch` (128)
    channel_multipliers: tuple[int, ...]  # per level, low to high resolution in the encoder's order
    num_res_blocks: int  # encoder res blocks per level; the decoder uses one more
    image_token_grid: int  # tokens per side of the latent grid (24)

    @property
    def image_size(self) -> int:
        return self.image_token_grid * 2 ** (len(self.channel_multipliers) - 1)


@dataclass(frozen=True)
class ImageProcessorConfig:
    image_size: int = 384  # square side fed to the vision tower
    min_size: int = 14  # smallest resized side
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale_factor: float = 1.0 / 255.0
    do_normalize: bool = True

    @property
    def background_color(self) -> tuple[int, int, int]:
        return tuple(int(x * 255) for x in self.image_mean)  # type: ignore[return-value]


@dataclass(frozen=True)
class JanusConfig:
    layout: Layout  # which checkpoint layout this was read from
    llm: LLMConfig
    vision: VisionConfig
    aligner: MlpConfig  # SigLIP features -> LLM hidden
    gen_embed_rows: int  # gen_embed vocabulary (16384)
    gen_embed_dim: int  # gen_embed width (8)
    gen_aligner: MlpConfig  # gen_embed vector -> LLM hidden
    gen_head: GenHeadConfig
    vq: VQConfig
    image_processor: ImageProcessorConfig

    @property
    def image_tokens_per_image(self) -> int:
        return self.vq.image_token_grid**2

    def variant_name(self, pro_chat_format: bool | None = None) -> str:
        """A human name for the transformer shape (the weights cannot say which release they are)."""
        d, n = self.llm.hidden_size, self.llm.num_layers
        if (d, n) == (2048, 24):
            if pro_chat_format is None:
                return "Janus-1.3B / Janus-Pro-1B shape"
            return "Janus-Pro-1B shape" if pro_chat_format else "Janus-1.3B shape"
        if (d, n) == (4096, 30):
            return "Janus-Pro-7B shape"
        return f"custom shape (hidden {d}, {n} layers)"
