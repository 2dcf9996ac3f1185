"""The transformers column: `JanusForConditionalGeneration` holding exactly our random weights, timed.

The twin is built from our `JanusConfig` (HF `janus` layout config), then every HF parameter is copied from
ours through janus-rt's own HF-layout key mapping (`weights.key_mapper`, read in reverse: for each HF key,
the janus-rt parameter and row range it would load into). Unused HF parts (the VQ encoder, `quant_conv`)
keep transformers' init. transformers is optional: callers check `transformers_version()` first.
"""

from __future__ import annotations

import dataclasses
import statistics

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.model.janus import JanusModel
from janus_rt.model.prefill import TextRequest
from janus_rt.checkpoint.weights import key_mapper

from janus_rt.bench.image_bench import ImageMeasurement
from janus_rt.bench.text_bench import TextMeasurement
from janus_rt.bench.timers import peak_memory_gb, reset_peak_memory, timed
from janus_rt.bench.workload import SpecialIds
from janus_rt.engine.params import IMAGE_DEFAULTS


def transformers_version() -> str | None:
    """The installed transformers version when it has `JanusForConditionalGeneration`, else None."""
    try:
        import transformers
        from transformers import JanusForConditionalGeneration  # noqa: F401
    except ImportError:
        return None
    return transformers.__version__


def hf_config(cfg: JanusConfig, special: SpecialIds):
    """A `transformers.JanusConfig` with our dimensions (untied lm_head, as the release checkpoints)."""
    from transformers import JanusConfig as HFJanusConfig

    llm, v, vq = cfg.llm, cfg.vision, cfg.vq
    if not (cfg.gen_head.hidden_dim == cfg.gen_aligner.output_dim and cfg.gen_aligner.depth >= 1):
        raise ValueError("transformers' Janus ties the gen head width to the gen aligner width; this config differs")
    text = dict(model_type="llama", vocab_size=llm.vocab_size, hidden_size=llm.hidden_size,
                intermediate_size=llm.intermediate_size, num_hidden_layers=llm.num_layers,
                num_attention_heads=llm.num_heads, num_key_value_heads=llm.num_kv_heads, head_dim=llm.head_dim,
                max_position_embeddings=llm.max_position_embeddings, rms_norm_eps=llm.rms_norm_eps,
                rope_theta=llm.rope_theta, tie_word_embeddings=False)
    vision = dict(hidden_size=v.width, num_hidden_layers=v.layers, num_attention_heads=v.heads,
                  image_size=v.image_size, patch_size=v.patch_size, mlp_ratio=v.mlp_dim / v.width,
                  layer_norm_eps=v.layer_norm_eps, projection_dim=cfg.aligner.output_dim, depth=cfg.aligner.depth,
                  num_image_tokens=cfg.image_tokens_per_image)
    vq_cfg = dict(embed_dim=vq.codebook_embed_dim, num_embeddings=vq.codebook_size, latent_channels=vq.z_channels,
                  base_channels=vq.base_channels, channel_multiplier=list(vq.channel_multipliers),
                  num_res_blocks=vq.num_res_blocks, projection_dim=cfg.gen_aligner.output_dim,
                  num_hidden_layers=cfg.gen_aligner.depth, image_token_embed_dim=cfg.gen_head.input_dim)
    return HFJanusConfig(text_config=text, vision_config=vision, vq_config=vq_cfg,
                         image_token_id=special.placeholder, tie_word_embeddings=False)


@torch.no_grad()
def copy_weights_to_hf(model: JanusModel, hf) -> int:
    """Copy every janus-rt parameter into the HF model through the HF-layout key mapping; return tensors copied.

    Raises when an HF parameter has no mapping, a shape differs, or a janus-rt parameter is left uncovered.
    """
    ours = dict(model.named_parameters())
    map_key = key_mapper(dataclasses.replace(model.cfg, layout="hf"))
    covered = {name: 0 for name in ours}
    copied = 0
    for key, dest in hf.named_parameters():
        targets = map_key(key)
        if targets is None:
            raise KeyError(f"transformers parameter {key!r} has no janus-rt counterpart in the HF key mapping")
        for target in targets:  # IGNORE (empty): a part janus-rt never runs (VQ encoder, quant_conv)
            src = ours[target.param]
            if target.rows is not None:
                src = src[target.rows[0]:target.rows[1]]
            if src.numel() != dest.numel():
                raise ValueError(f"{key}: shape {list(dest.shape)} but {target.param} gives {list(src.shape)}")
            dest.copy_(src.reshape(dest.shape))  # reshape undoes the only transform (pos_embed's unsqueeze)
            covered[target.param] += src.shape[0] if src.dim() else 1
            copied += 1
    missing = [n for n, rows in covered.items() if rows != (ours[n].shape[0] if ours[n].dim() else 1)]
    if missing:
        raise ValueError(f"janus-rt parameters not (or not fully) copied into the HF model: {missing[:5]}")
    return copied


def check_same_weights(model: JanusModel, hf) -> None:
    """Assert a few tensors of each component are bit-identical in both models."""
    hp = dict(hf.named_parameters())
    q = model.cfg.llm.num_heads * model.cfg.llm.head_dim
    pairs = [
        (model.llm.embed_tokens.weight, hp["model.language_model.embed_tokens.weight"]),
        (model.llm.layers[-1].attn.qkv_proj.weight[:q], hp[f"model.language_model.layers.{model.cfg.llm.num_layers - 1}.self_attn.q_proj.weight"]),
        (model.lm_head.weight, hp["lm_head.weight"]),
        (model.gen_head.out.weight, hp["model.generation_head.vision_head.weight"]),
        (model.vq.codebook, hp["model.vqmodel.quantize.embedding.weight"]),
        (model.vision.pos_embed[0], hp["model.vision_model.embeddings.position_embedding.weight"]),
    ]
    for ours, theirs in pairs:
        if not torch.equal(ours, theirs):
            raise AssertionError("the transformers twin does not hold the same weights as the janus-rt model")


def build_hf_twin(model: JanusModel, special: SpecialIds):
    """`JanusForConditionalGeneration` on the model's device and dtype, holding the model's weights."""
    from transformers import JanusForConditionalGeneration

    device, dtype = model.gen_embed.weight.device, model.gen_embed.weight.dtype
    with torch.device(device):
        hf = JanusForConditionalGeneration._from_config(hf_config(model.cfg, special), dtype=dtype)
    hf.eval().requires_grad_(False)
    copy_weights_to_hf(model, hf)
    check_same_weights(model, hf)
    gc = hf.generation_config
    gc.bos_token_id, gc.eos_token_id, gc.pad_token_id = special.bos, special.eos, special.pad
    gc.generation_kwargs = {"boi_token_id": special.begin_of_image}
    patch_static_cache_call(hf)
    return hf


def patch_static_cache_call(hf) -> None:
    """Work around transformers 5.17, whose Janus image `generate` calls `_prepare_static_cache` without the
    `prefill_chunk_size` argument that the same release's GenerationMixin requires (5.23 passes it).

    Only when the method's signature requires it; the default added is None (no chunked prefill).
    """
    import inspect

    method = hf._prepare_static_cache
    param = inspect.signature(method).parameters.get("prefill_chunk_size")
    if param is None or param.default is not inspect.Parameter.empty:
        return

    def prepare(*args, prefill_chunk_size=None, **kwargs):
        return method(*args, prefill_chunk_size=prefill_chunk_size, **kwargs)

    hf._prepare_static_cache = prepare


def hf_generate_images(hf, prompt_ids: list[int], num_images: int, cfg_weight: float, temperature: float) -> torch.Tensor:
    """transformers' image path: `generate(generation_mode="image")` -> `[num_images, 576]` token ids."""
    ids = torch.tensor([prompt_ids], device=hf.device)
    return hf.generate(ids, attention_mask=torch.ones_like(ids), generation_mode="image", do_sample=temperature > 0,
                       temperature=temperature if temperature > 0 else None, guidance_scale=cfg_weight,
                       num_return_sequences=num_images, max_new_tokens=None)


def measure_hf_image_row(hf, prompt_ids: list[int], num_images: int, repeats: int, cfg_weight: float = IMAGE_DEFAULTS.cfg_weight,
                         temperature: float = 1.0, exclude_gb: float = 0.0) -> ImageMeasurement:
    """Time transformers generating `num_images` images; it has no phase marks, so ms/step = total / 576.

    `exclude_gb` is subtracted from the peak memory (the janus-rt model that shares the GPU).
    """
    device = hf.device
    steps = hf.config.vision_config.num_image_tokens
    reset_peak_memory(device)
    tokens, warmup_ms = timed(lambda: hf_generate_images(hf, prompt_ids, num_images, cfg_weight, temperature), device)
    totals = [timed(lambda: hf_generate_images(hf, prompt_ids, num_images, cfg_weight, temperature), device)[1]
              for _ in range(max(repeats, 1))]
    total = statistics.median(totals)
    hf.decode_image_tokens(tokens)
    vq_ms = statistics.median(timed(lambda: hf.decode_image_tokens(tokens), device)[1] for _ in range(max(repeats, 1)))
    peak = peak_memory_gb(device)
    return ImageMeasurement("transformers", num_images, steps, warmup_ms, None, total / steps, total,
                            vq_ms / num_images, None if peak is None else peak - exclude_gb)


def measure_hf_text_row(hf, request: TextRequest, batch: int, new_tokens: int, repeats: int,
                        exclude_gb: float = 0.0) -> TextMeasurement:
    """Time transformers' greedy `generate` for `batch` copies of `request`, exactly `new_tokens` tokens each.

    TTFT = the time of `generate(max_new_tokens=1)`; a decode step = (t(new_tokens) - TTFT) / (new_tokens - 1).
    """
    device, dtype = hf.device, hf.dtype
    ids = torch.tensor([request.ids] * batch, device=device)
    pixels = request.pixel_values.to(device=device, dtype=dtype).repeat(batch, 1, 1, 1)

    def run(n: int) -> torch.Tensor:
        return hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                           max_new_tokens=n, min_new_tokens=n, do_sample=False, generation_mode="text")

    reset_peak_memory(device)
    _, warmup_ms = timed(lambda: run(new_tokens), device)
    ttft = statistics.median(timed(lambda: run(1), device)[1] for _ in range(max(repeats, 1)))
    full = statistics.median(timed(lambda: run(new_tokens), device)[1] for _ in range(max(repeats, 1)))
    peak = peak_memory_gb(device)
    return TextMeasurement("transformers", batch, len(request.ids), new_tokens, warmup_ms, ttft,
                           max(full - ttft, 1e-3) / (new_tokens - 1), None if peak is None else peak - exclude_gb)
