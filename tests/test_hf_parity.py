"""Parity with transformers' JanusForConditionalGeneration (the independent oracle), fp32 on CPU.

Each test runs twice: on the `save_pretrained` checkpoint (HF layout) and on the same weights rewritten in
the official layout (sharded .bin). Tolerances (fp32, values of order 1): features, embeddings and logits
within atol 2e-4 + rtol 1e-4 of the oracle (measured differences are ~1e-6: only op order differs);
greedy token sequences must be identical; decoded uint8 pixels may differ by at most one level where the
float lies on a rounding boundary.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.model.llm import KVCache
from janus_rt.model.prefill import text_embeddings

ATOL, RTOL = 2e-4, 1e-4


@pytest.fixture(scope="module", params=["hf", "official"])
def pair(request, hf_checkpoint, official_from_hf):
    hf_dir, hf_model, tok = hf_checkpoint
    path = hf_dir if request.param == "hf" else official_from_hf
    return janus_rt.load(path, device="cpu", dtype="float32"), hf_model, tok


def random_image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    torch.testing.assert_close(ours.float(), ref.float(), atol=ATOL, rtol=RTOL)


def pixels_of(m, *images) -> torch.Tensor:
    from janus_rt.requests.pixels import preprocess

    return torch.stack([preprocess(img, m.config.image_processor) for img in images])


@torch.no_grad()
def test_siglip_features_and_aligner(pair):
    m, hf, _ = pair
    px = pixels_of(m, random_image(1, 300, 500), random_image(2, 384, 200))
    close(m.model.vision(px), hf.model.vision_model(pixel_values=px).last_hidden_state)
    close(m.model.image_embeddings(px), hf.model.get_image_features(pixel_values=px).pooler_output)


def teacher_forced(m, ids: list[int], pixels: torch.Tensor | None) -> torch.Tensor:
    """Our final hidden states `[1, T, D]` for a whole sequence in one prefill."""
    embeds = text_embeddings(m.model, ids, pixels, m.tokenizer.special.image_placeholder)  # [1, T, D]
    positions = torch.arange(len(ids))[None]  # [1, T]
    cache = KVCache.allocate(m.config.llm, 1, len(ids), m.device, m.dtype)
    return m.model.llm(embeds, positions, cache, 0)


@torch.no_grad()
def test_text_logits_teacher_forced(pair):
    m, hf, _ = pair
    request, _ = m.chat_inputs("What is shown here? Answer briefly.", random_image(3, 200, 260))
    ids = torch.tensor([request.ids])
    ref = hf(input_ids=ids, pixel_values=request.pixel_values, attention_mask=torch.ones_like(ids)).logits
    close(m.model.lm_head(teacher_forced(m, request.ids, request.pixel_values)), ref)


@torch.no_grad()
def test_generation_head_logits_teacher_forced(pair):
    m, hf, _ = pair
    ids = m.tokenizer.encode(m.image_prompt("a red fox in the snow"))
    image_tokens = torch.randint(0, m.config.vq.codebook_size, (1, 40), generator=torch.Generator().manual_seed(0))
    prompt_embeds = hf.model.language_model.embed_tokens(torch.tensor([ids]))
    ref_embeds = torch.cat([prompt_embeds, hf.prepare_embeddings_for_image_generation(image_tokens)], dim=1)
    ref_hidden = hf.model.language_model(inputs_embeds=ref_embeds).last_hidden_state
    ours_embeds = torch.cat([m.model.llm.embed_tokens(torch.tensor([ids])), m.model.gen_token_embeddings(image_tokens)], 1)
    close(ours_embeds, ref_embeds)
    t = ours_embeds.shape[1]
    cache = KVCache.allocate(m.config.llm, 1, t, m.device, m.dtype)
    hidden = m.model.llm(ours_embeds, torch.arange(t)[None], cache, 0)
    close(hidden, ref_hidden)
    close(m.model.gen_head(hidden), hf.model.generation_head(ref_hidden))


def hf_greedy_text(hf, tok, requests, max_new_tokens: int, **sampling) -> list[list[int]]:
    """transformers' generate (greedy unless `sampling` says otherwise) on left-padded rows; new tokens before EOS."""
    from janus_rt.checkpoint.tokenizer import EOS, PAD

    eos, pad = tok.token_to_id(EOS), tok.token_to_id(PAD)
    width = max(len(r.ids) for r in requests)
    ids = torch.tensor([[pad] * (width - len(r.ids)) + r.ids for r in requests])
    mask = torch.tensor([[0] * (width - len(r.ids)) + [1] * len(r.ids) for r in requests])
    kwargs = {}
    if any(r.pixel_values is not None for r in requests):
        kwargs["pixel_values"] = torch.cat([r.pixel_values for r in requests if r.pixel_values is not None])
    sampling = sampling or {"do_sample": False}
    out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, eos_token_id=eos,
                      pad_token_id=pad, **sampling, **kwargs)[:, width:].tolist()
    return [row[: row.index(eos)] if eos in row else row for row in out]


def test_greedy_answer_matches_transformers(pair):
    m, hf, tok = pair
    image = random_image(4, 240, 320)
    ours = m.chat("Describe the picture.", image=image, max_new_tokens=24, temperature=0.0)
    request, _ = m.chat_inputs("Describe the picture.", image)
    assert len(ours.token_ids) > 0
    assert ours.token_ids == hf_greedy_text(hf, tok, [request], 24)[0]


def test_greedy_batched_answers_match_transformers(pair):
    """Left-padded batch (rows of different lengths, both with images) against transformers' batch."""
    m, hf, tok = pair
    questions = ["Describe the picture.", "What colour is the large object in the middle of this image?"]
    images = [random_image(5, 100, 300), random_image(6, 300, 120)]
    ours = m.chat(questions, image=images, max_new_tokens=16, temperature=0.0)
    requests = [m.chat_inputs(q, img)[0] for q, img in zip(questions, images)]
    assert [a.token_ids for a in ours] == hf_greedy_text(hf, tok, requests, 16)


def test_seeded_sampled_answers_reproduce_transformers(pair):
    """Sampling as the reference's demo calls it (temperature, top-p, generate's default top-k 50), seeded.

    Each question of a list is its own request with its own stream: it equals the reference run on that
    question alone after `torch.manual_seed(seed)` (the engine batches them, and batching must not show).
    """
    m, hf, tok = pair
    questions = ["Describe the picture.", "Tell me more about the colours, please."]
    images = [random_image(7, 200, 200), random_image(8, 150, 300)]
    ours = m.chat(questions, image=images, max_new_tokens=20, temperature=0.8, top_p=0.9, seed=11)
    requests = [m.chat_inputs(q, img)[0] for q, img in zip(questions, images)]
    ref = []
    for request in requests:
        torch.manual_seed(11)
        ref += hf_greedy_text(hf, tok, [request], 20, do_sample=True, temperature=0.8, top_p=0.9)
    assert [a.token_ids for a in ours] == ref
    greedy = m.chat(questions, image=images, max_new_tokens=20, temperature=0.0)
    assert [a.token_ids for a in greedy] != ref  # the draw really sampled


def test_greedy_cfg_image_tokens_and_pixels_match_transformers(pair):
    m, hf, _ = pair
    result = m.generate_images("a red fox in the snow", num_images=1, cfg_weight=5.0, temperature=0.0)
    ids = torch.tensor([m.tokenizer.encode(result.prompt)])
    with torch.no_grad():
        ref_tokens = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_mode="image",
                                 do_sample=False, guidance_scale=5.0)
    assert result.tokens.shape == (1, 576)
    assert result.tokens.unique().numel() > 10  # a real sequence, not a degenerate constant
    assert torch.equal(result.tokens, ref_tokens.long())

    with torch.no_grad():
        ref_float = hf.decode_image_tokens(ref_tokens)  # [N, H, W, 3] in [-1, 1]
        ours_float = m.model.vq(result.tokens).permute(0, 2, 3, 1)
    close(ours_float, ref_float)
    ref_uint8 = np.clip((ref_float.numpy() + 1) / 2 * 255, 0, 255).astype(np.uint8)
    diff = np.abs(result.images.astype(int) - ref_uint8.astype(int))
    assert result.images.shape == ref_uint8.shape == (1, 48, 48, 3)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
