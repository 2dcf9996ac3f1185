"""Sampling: CFG mixing, top-k / top-p, the draw, seeded reproducibility, and the reference's sampling loop.

`test_seeded_sampling_reproduces_reference_loop` writes out the official `generation_inference.py` loop
(interleaved cond/uncond rows, `torch.manual_seed`, `torch.multinomial` on softmax(guided / T)) on the
transformers modules of the same weights, and requires janus-rt's seeded tokens to be identical.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import janus_rt
from janus_rt.checkpoint.tiny import TinySpec
from janus_rt.kernels.reference_sampling import cfg_mix, filter_top_k, filter_top_p, sample
from oracle import transformers_oracle


def test_cfg_mix_uses_interleaved_rows():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g, dtype=torch.float64)
    w = 3.5
    expected = torch.stack([logits[2 * i + 1] + w * (logits[2 * i] - logits[2 * i + 1]) for i in range(3)])
    torch.testing.assert_close(cfg_mix(logits, w), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(cfg_mix(logits, 1.0), logits[0::2], rtol=0, atol=1e-12)  # w=1: conditional only
    torch.testing.assert_close(cfg_mix(logits, 0.0), logits[1::2], rtol=0, atol=1e-12)  # w=0: unconditional only


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1))
def test_top_k_keeps_exactly_the_k_largest(k: int, seed: int):
    logits = torch.randn(3, 60, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kept = torch.isfinite(filter_top_k(logits, k))
    top = torch.zeros_like(kept).scatter(-1, logits.topk(k, dim=-1).indices, True)
    assert torch.equal(kept, top)


@settings(max_examples=40, deadline=None)
@given(st.floats(0.01, 0.999), st.integers(0, 2**31 - 1), st.floats(0.1, 5.0))
def test_top_p_matches_transformers_and_keeps_the_smallest_nucleus(top_p: float, seed: int, scale: float):
    logits = scale * torch.randn(4, 80, generator=torch.Generator().manual_seed(seed))
    ours = filter_top_p(logits, top_p)
    kept = torch.isfinite(ours)
    probs = logits.softmax(-1)
    for row in range(logits.shape[0]):
        p_sorted = probs[row][kept[row]].sort(descending=True).values
        assert p_sorted.sum() >= top_p - 1e-6  # the nucleus holds at least top_p of the mass
        assert p_sorted[:-1].sum() < top_p + 1e-6 or p_sorted.numel() == 1  # and no smaller prefix would
    transformers = transformers_oracle()
    ref = transformers.TopPLogitsWarper(top_p)(None, logits.clone())
    assert torch.equal(kept, torch.isfinite(ref))


def test_sample_temperature_zero_is_argmax_and_draws_follow_the_distribution():
    logits = torch.tensor([[0.0, 2.0, 1.0], [5.0, -1.0, 4.9]])
    assert sample(logits, 0.0, None).tolist() == [1, 0]
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample(logits[:1], 1.0, g) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=3).double() / draws.numel()
    torch.testing.assert_close(freq, logits[0].double().softmax(-1), atol=0.03, rtol=0)
    top1 = torch.stack([sample(logits[:1], 1.0, g, top_k=1) for _ in range(50)])
    assert (top1 == 1).all()


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint) -> Iterator[janus_rt.Janus]:
    """The tiny weights with a 6x6 image-token grid (36 steps an image) and the whole 2048-position context (a chat
    with two images takes 1156 positions), fp32 on the CPU."""
    m = janus_rt.load(tiny_checkpoint(TinySpec(image_token_grid=6)), device="cpu", dtype="float32")
    yield m
    m.close()


def test_seeded_image_sampling_is_reproducible_and_seed_dependent(tiny):
    a = tiny.generate_images("a red fox", num_images=2, seed=7)
    b = tiny.generate_images("a red fox", num_images=2, seed=7)
    c = tiny.generate_images("a red fox", num_images=2, seed=8)
    assert torch.equal(a.tokens, b.tokens) and np.array_equal(a.images, b.images)
    assert not torch.equal(a.tokens, c.tokens)
    assert not torch.equal(a.tokens[0], a.tokens[1])  # the two images of one call are different samples


def test_seeded_chat_sampling_is_reproducible(tiny):
    kwargs = dict(max_new_tokens=12, temperature=1.0, top_p=0.9)
    assert tiny.chat("Tell me a story.", seed=1, **kwargs).token_ids == tiny.chat("Tell me a story.", seed=1, **kwargs).token_ids


def test_greedy_images_are_identical_across_the_batch(tiny):
    one = tiny.generate_images("a red fox", num_images=1, temperature=0.0)
    three = tiny.generate_images("a red fox", num_images=3, temperature=0.0)
    assert all(torch.equal(three.tokens[i], one.tokens[0]) for i in range(3))


def test_batched_chat_equals_one_at_a_time(tiny):
    rng = np.random.default_rng(0)
    questions = ["Describe this image.", "Hi!", "What is the difference between these two pictures, in detail?"]
    images = [rng.integers(0, 256, (120, 200, 3), dtype=np.uint8), None,
              [rng.integers(0, 256, (90, 90, 3), dtype=np.uint8), rng.integers(0, 256, (300, 100, 3), dtype=np.uint8)]]
    batched = tiny.chat(questions, image=images, max_new_tokens=10)
    single = [tiny.chat(q, image=img, max_new_tokens=10) for q, img in zip(questions, images)]
    assert [a.token_ids for a in batched] == [a.token_ids for a in single]
    assert all(len(a.token_ids) > 0 for a in single)


@torch.no_grad()
def reference_sampling_loop(hf, prompt_ids: list[int], pad_id: int, parallel: int, cfg_weight: float,
                            temperature: float, seed: int, steps: int) -> torch.Tensor:
    """The official generation_inference.py loop, on transformers' modules (written out, not imported)."""
    torch.manual_seed(seed)
    ids = torch.tensor(prompt_ids)
    tokens = torch.zeros((parallel * 2, len(prompt_ids)), dtype=torch.int)
    for i in range(parallel * 2):
        tokens[i, :] = ids
        if i % 2 != 0:
            tokens[i, 1:-1] = pad_id
    inputs_embeds = hf.model.language_model.embed_tokens(tokens)
    generated = torch.zeros((parallel, steps), dtype=torch.int)
    past = None
    for i in range(steps):
        out = hf.model.language_model(inputs_embeds=inputs_embeds, use_cache=True, past_key_values=past)
        past = out.past_key_values
        logits = hf.model.generation_head(out.last_hidden_state[:, -1, :])
        cond, uncond = logits[0::2, :], logits[1::2, :]
        logits = uncond + cfg_weight * (cond - uncond)
        probs = torch.softmax(logits / temperature, dim=-1)
        next_token = torch.multinomial(probs, num_samples=1)
        generated[:, i] = next_token.squeeze(dim=-1)
        next_token = torch.cat([next_token.unsqueeze(dim=1), next_token.unsqueeze(dim=1)], dim=1).view(-1)
        inputs_embeds = hf.prepare_embeddings_for_image_generation(next_token).unsqueeze(dim=1)
    return generated.long()


def test_seeded_sampling_reproduces_reference_loop(hf_checkpoint):
    hf_dir, hf, _ = hf_checkpoint
    m = janus_rt.load(hf_dir, device="cpu", dtype="float32")
    ours = m.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=1.0, seed=1234)
    ids = m.tokenizer.encode(ours.prompt)
    ref = reference_sampling_loop(hf, ids, m.tokenizer.special.pad, 2, 5.0, 1.0, 1234, ours.tokens.shape[1])
    assert torch.equal(ours.tokens, ref)
