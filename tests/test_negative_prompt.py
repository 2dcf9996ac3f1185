"""Negative prompts: the unconditional CFG rows take the negative prompt's formatted ids instead of the pad-filled
prompt. Checked against an independent CFG loop on transformers' Janus (the oracle, fp32 CPU, each row its own
sequence and cache): greedy tokens must be identical. Absent or empty, tokens and pixels are exactly today's (the
reference's); the length and type checks name the negative prompt.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.errors import InputError
from test_engine import run_threads

PROMPT = "a red fox in the snow"
SHORT_NEGATIVE = "dark"  # fewer tokens than the prompt
LONG_NEGATIVE = "blurry, low quality, deformed, extra limbs, watermark, text, jpeg artifacts"  # more tokens


@pytest.fixture(scope="module")
def pair(hf_checkpoint):
    hf_dir, hf_model, _ = hf_checkpoint
    m = janus_rt.load(hf_dir, device="cpu", dtype="float32")
    yield m, hf_model
    m.close()


@torch.no_grad()
def oracle_cfg_greedy(hf, cond_ids: list[int], uncond_ids: list[int], cfg_weight: float, steps: int) -> torch.Tensor:
    """Greedy CFG written directly on transformers' modules: the conditional and the unconditional sequence each run
    alone with their own cache (so their lengths need not agree); logits mixed as uncond + w * (cond - uncond)."""
    lm = hf.model.language_model
    cache = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"  # renamed in 5.x

    def start(ids: list[int]):
        out = lm(input_ids=torch.tensor([ids]), use_cache=True)
        return out.last_hidden_state[:, -1], getattr(out, cache)

    (h_cond, cache_cond), (h_uncond, cache_uncond) = start(cond_ids), start(uncond_ids)
    tokens = []
    for _ in range(steps):
        cond, uncond = hf.model.generation_head(h_cond), hf.model.generation_head(h_uncond)  # [1, V]
        token = (uncond + cfg_weight * (cond - uncond)).argmax(-1)  # [1]
        tokens.append(token)
        embeds = hf.prepare_embeddings_for_image_generation(token[:, None])  # [1, 1, D]
        out = lm(inputs_embeds=embeds, use_cache=True, **{cache: cache_cond})
        h_cond, cache_cond = out.last_hidden_state[:, -1], getattr(out, cache)
        out = lm(inputs_embeds=embeds, use_cache=True, **{cache: cache_uncond})
        h_uncond, cache_uncond = out.last_hidden_state[:, -1], getattr(out, cache)
    return torch.stack(tokens, dim=1)  # [1, steps]


@pytest.mark.parametrize("negative", [SHORT_NEGATIVE, LONG_NEGATIVE])
def test_greedy_tokens_match_an_independent_cfg_loop(pair, negative):
    m, hf = pair
    cond_ids = m.tokenizer.encode(m.image_prompt(PROMPT))
    uncond_ids = m.tokenizer.encode(m.image_prompt(negative))
    assert (len(uncond_ids) < len(cond_ids)) == (negative == SHORT_NEGATIVE)  # both orders of lengths are covered
    got = m.generate_images(PROMPT, num_images=2, cfg_weight=5.0, temperature=0.0, negative_prompt=negative)
    ref = oracle_cfg_greedy(hf, cond_ids, uncond_ids, 5.0, m.config.image_tokens_per_image)
    assert got.tokens.unique().numel() > 10  # a real sequence, not a degenerate constant
    assert torch.equal(got.tokens, ref.expand(2, -1))


def test_no_or_empty_negative_prompt_is_the_reference(pair):
    m, _ = pair
    plain = m.generate_images(PROMPT, num_images=2, seed=11)
    empty = m.generate_images(PROMPT, num_images=2, seed=11, negative_prompt="")
    none = m.generate_images(PROMPT, num_images=2, seed=11, negative_prompt=None)
    for other in (empty, none):
        assert torch.equal(other.tokens, plain.tokens) and np.array_equal(other.images, plain.images)
    steered = m.generate_images(PROMPT, num_images=2, seed=11, negative_prompt=LONG_NEGATIVE)
    assert (steered.tokens != plain.tokens).float().mean() > 0.1  # the guidance moved many draws


def test_negative_prompt_request_is_batch_invariant(small_grid_model):
    """A seeded negative-prompt request gives the same tokens alone and beside a plain image and an answer."""
    from serve_utils import with_image_grid

    m = with_image_grid(small_grid_model, 6)
    try:
        alone = m.generate_images(PROMPT, num_images=2, seed=5, negative_prompt=LONG_NEGATIVE).tokens
        together = run_threads([
            lambda: m.generate_images(PROMPT, num_images=2, seed=5, negative_prompt=LONG_NEGATIVE).tokens,
            lambda: m.generate_images("a green field", num_images=1, seed=1).tokens,
            lambda: m.chat("What is this?", max_new_tokens=8).token_ids])
        assert torch.equal(together[0], alone)
        assert m.stats()["peak_rows"] >= 5  # they did share steps
    finally:
        m.close()


def test_a_wave_split_request_keeps_the_negative_prompt(small_grid_model):
    """More images than one group holds run in waves; every wave takes the negative prompt."""
    from serve_utils import with_image_grid

    m = with_image_grid(small_grid_model, 6, max_rows=2)  # one image per group
    try:
        got = m.generate_images(PROMPT, num_images=2, temperature=0, negative_prompt=SHORT_NEGATIVE).tokens
        ref = small_grid_model.generate_images(PROMPT, num_images=1, temperature=0, negative_prompt=SHORT_NEGATIVE)
        assert torch.equal(got, ref.tokens.expand(2, -1))
    finally:
        m.close()


def test_negative_prompt_checks_name_the_field(small_grid_model):
    m = small_grid_model
    with pytest.raises(InputError, match="negative_prompt must be a string") as e:
        m.submit_images(PROMPT, negative_prompt=3)  # type: ignore[arg-type]
    assert e.value.param == "negative_prompt"
    with pytest.raises(InputError, match="negative_prompt is not valid Unicode"):
        m.submit_images(PROMPT, negative_prompt="bad \ud800 text")
    slots = m.engine.capacity.slots
    with pytest.raises(InputError, match=r"the negative_prompt is \d+ tokens; .* shorten the negative_prompt") as e:
        m.submit_images(PROMPT, negative_prompt="word " * slots)
    assert e.value.param == "negative_prompt"


def test_cli_generate_takes_a_negative_prompt(tiny_small_grid, tmp_path, capsys):
    from janus_rt.cli.main import main

    out = tmp_path / "out"
    args = ["generate", "--model", str(tiny_small_grid), "--device", "cpu", "--dtype", "float32", "--seed", "3",
            "--out", str(out), PROMPT]
    assert main(args + ["--negative-prompt", LONG_NEGATIVE]) == 0
    assert main(args) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 2
    from PIL import Image

    first, second = (np.asarray(Image.open(f)) for f in files)
    assert first.shape == second.shape and not np.array_equal(first, second)
    m = janus_rt.load(tiny_small_grid, device="cpu", dtype="float32")
    try:
        ref = m.generate_images(PROMPT, seed=3, negative_prompt=LONG_NEGATIVE).images[0]
    finally:
        m.close()
    assert any(np.array_equal(np.asarray(Image.open(f)), ref) for f in files)
