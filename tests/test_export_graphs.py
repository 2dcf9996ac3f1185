"""The export wrappers (export/graphs.py) compute what the runtime's torch modules compute.

fp32 wrappers against the fp32 modules: max abs error <= 1e-5 * (1 + max |ref|) (same math, different op
order: the KV cache is concatenated instead of written in place, the mask is built from attention_mask).
fp16 wrappers against the fp32 modules: within 4x the error of the fp16 *runtime* modules plus 1% of the
output scale (fp32 statistics must make the export no worse than the runtime in the same dtype).
"""

from __future__ import annotations

import pytest
import torch

import janus_rt
from janus_rt.export import graphs
from janus_rt.export.specs import build_module
from janus_rt.model.llm import KVCache


def close(a: torch.Tensor, ref: torch.Tensor, rel: float = 1e-5) -> bool:
    return bool((a.float() - ref.float()).abs().max() <= rel * (1 + ref.float().abs().max()))


@pytest.fixture(scope="module")
def fp32(torch_model):
    return torch_model  # the session's tiny model in fp32, read only


def run_llm_reference(model, embeds, positions, key_start, past_k, past_v):
    """The runtime LanguageModel with a static cache pre-filled with `past` -> (hidden, keys, values)."""
    layers, b, hkv, p, hd = past_k.shape
    t = embeds.shape[1]
    cache = KVCache.allocate(model.cfg.llm, b, p + t, embeds.device, embeds.dtype)
    cache.keys[:, :, :, :p], cache.values[:, :, :, :p] = past_k, past_v
    hidden = model.llm(embeds, positions, cache, p, key_start)
    return hidden, cache.keys, cache.values


@pytest.mark.parametrize("past,t", [(0, 5), (6, 1), (3, 4)])
@torch.no_grad()
def test_transformer_graph_equals_runtime_llm(fp32, past: int, t: int):
    cfg = fp32.config.llm
    g = torch.Generator().manual_seed(past * 10 + t)
    b = 3
    embeds = torch.randn(b, t, cfg.hidden_size, generator=g)
    past_k = torch.randn(cfg.num_layers, b, cfg.num_kv_heads, past, cfg.head_dim, generator=g)
    past_v = torch.randn(cfg.num_layers, b, cfg.num_kv_heads, past, cfg.head_dim, generator=g)
    key_start = torch.tensor([0, 1, 2]).clamp(max=past + t - 1)  # left padding of rows 1 and 2
    positions = (past + torch.arange(t))[None, :] - key_start[:, None]
    positions = positions.clamp(min=0)
    mask = (torch.arange(past + t)[None, :] >= key_start[:, None]).long()  # [B, past + t]
    ref_h, ref_k, ref_v = run_llm_reference(fp32.model, embeds, positions, key_start, past_k, past_v)
    past_list = [x for i in range(cfg.num_layers) for x in (past_k[i], past_v[i])]
    out = graphs.TransformerGraph(fp32.model.llm)(embeds, positions, mask, *past_list)
    assert close(out[0], ref_h)
    for i in range(cfg.num_layers):
        assert close(out[1 + 2 * i], ref_k[i]) and close(out[2 + 2 * i], ref_v[i])


@torch.no_grad()
def test_small_graphs_equal_runtime_modules(fp32):
    m, cfg = fp32.model, fp32.config
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, cfg.vision.image_size, cfg.vision.image_size, generator=g) * 2 - 1
    assert close(build_module("vision", m, "float32")(pixels), m.image_embeddings(pixels))
    ids = torch.randint(0, cfg.llm.vocab_size, (2, 5), generator=g)
    assert torch.equal(build_module("text_embed", m, "float32")(ids), m.llm.embed_tokens(ids))
    hidden = torch.randn(3, cfg.llm.hidden_size, generator=g)
    assert close(build_module("lm_head", m, "float32")(hidden), m.lm_head(hidden))
    assert close(build_module("gen_head", m, "float32")(hidden), m.gen_head(hidden))
    image_ids = torch.randint(0, cfg.vq.codebook_size, (2, 3), generator=g)
    assert close(build_module("gen_embed", m, "float32")(image_ids), m.gen_token_embeddings(image_ids))
    tokens = torch.randint(0, cfg.vq.codebook_size, (2, cfg.image_tokens_per_image), generator=g)
    assert close(build_module("vq_decoder", m, "float32")(tokens), m.vq(tokens))


@torch.no_grad()
def test_fp16_wrappers_keep_statistics_in_fp32(tiny_official, fp32):
    low = janus_rt.load(tiny_official, device="cpu", dtype="float16")
    cfg = fp32.config
    tokens = torch.randint(0, cfg.vq.codebook_size, (1, cfg.image_tokens_per_image), generator=torch.Generator().manual_seed(1))
    ref = fp32.model.vq(tokens)
    runtime_err = (low.model.vq(tokens).float() - ref).abs().max()
    export_err = (build_module("vq_decoder", fp32.model, "float16")(tokens).float() - ref).abs().max()
    assert export_err <= 4 * runtime_err + 0.01 * ref.abs().max()
    assert all(p.dtype == torch.float32 for p in fp32.model.parameters())  # the loaded model is untouched
