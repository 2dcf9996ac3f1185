"""Low-precision runs (bf16 is the CUDA default, as in the reference): same code path, outputs near fp32.

Tolerance: the bf16 / fp16 result must be within 4x the error of rounding the fp32 reference result itself
to that dtype, plus a small absolute floor scaled by the output magnitude (errors compound over ~10 layers
of a tiny model; a dtype bug such as a missing cast or an fp16 overflow gives errors orders of magnitude above).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.model.llm import KVCache


@pytest.fixture(scope="module")
def fp32(torch_model):
    return torch_model  # the session's tiny model in fp32, read only


def gen_head_logits(m, ids: list[int], image_tokens: torch.Tensor) -> torch.Tensor:
    embeds = torch.cat([m.model.llm.embed_tokens(torch.tensor([ids])), m.model.gen_token_embeddings(image_tokens)], 1)
    t = embeds.shape[1]
    cache = KVCache.allocate(m.config.llm, 1, t, m.device, m.dtype)
    return m.model.gen_head(m.model.llm(embeds, torch.arange(t)[None], cache, 0)).float()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@torch.no_grad()
def test_low_precision_logits_and_pixels_track_fp32(tiny_official, fp32, dtype: str):
    low = janus_rt.load(tiny_official, device="cpu", dtype=dtype)
    assert low.dtype == getattr(torch, dtype)
    assert all(p.dtype == low.dtype for p in low.model.parameters())
    ids = fp32.tokenizer.encode(fp32.image_prompt("a red fox in the snow"))
    image_tokens = torch.randint(0, fp32.config.vq.codebook_size, (1, 30), generator=torch.Generator().manual_seed(0))
    ref = gen_head_logits(fp32, ids, image_tokens)
    ours = gen_head_logits(low, ids, image_tokens)
    rounding = (ref.to(low.dtype).float() - ref).abs().max()
    scale = ref.abs().max()
    assert (ours - ref).abs().max() <= 4 * rounding + 0.02 * scale

    tokens = torch.randint(0, fp32.config.vq.codebook_size, (2, 576), generator=torch.Generator().manual_seed(1))
    ref_px, low_px = fp32.decode_image_tokens(tokens), low.decode_image_tokens(tokens)
    assert low_px.dtype == np.uint8 and low_px.shape == ref_px.shape
    diff = np.abs(low_px.astype(int) - ref_px.astype(int))
    assert np.median(diff) <= 2 and diff.max() <= 16


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_low_precision_end_to_end_runs(tiny_official, dtype: str):
    m = janus_rt.load(tiny_official, device="cpu", dtype=dtype)
    answer = m.chat("What is this?", image=np.full((64, 64, 3), 200, np.uint8), max_new_tokens=4)
    assert answer.finished or len(answer.token_ids) == 4  # stopped by EOS, or ran exactly max_new_tokens
    result = m.generate_images("a cat", num_images=1, seed=0)
    assert result.images.shape == (1, 48, 48, 3) and result.tokens.shape == (1, 576)
