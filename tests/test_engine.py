"""The engine: concurrent requests share decode steps and still get exactly their solo tokens.

Backend "torch" on a tiny checkpoint with a 6x6 image-token grid (36 steps an image: the same loop, shorter),
so each test runs many requests in a few seconds. What is proven here, for every request:
- sharing: concurrent requests take fewer decode steps than the sum of their solo runs;
- batch invariance: greedy and seeded tokens equal the same request run alone, also when it joins mid-way
  through another request's decode, and in waves through a row budget smaller than the request;
- cancellation frees the rows at the next step; what can never fit is refused at once, naming the limit.
The triton and onnxruntime backends run the same checks in their own test files.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.backends.choice import make_backend
from janus_rt.engine import EngineConfig, EngineError, SamplingParams
from janus_rt.errors import InputError
from faults import fail_decode_at

PROMPTS = ["a red fox in the snow", "a lighthouse at night", "green apples", "an old map of the sea"]


@pytest.fixture(scope="module")
def shared(small_grid_model: janus_rt.Janus):
    """(model with a 6x6 grid, tokenizer, chat format, path): every test builds its own engine over these weights."""
    m = small_grid_model
    return m.model, m.tokenizer, m.chat_format, m.path


def make(shared, backend: str = "torch", **config) -> janus_rt.Janus:
    model, tokenizer, fmt, path = shared
    return janus_rt.Janus(make_backend(backend, model), tokenizer, fmt, path, EngineConfig(**config))


def run_threads(fns) -> list:
    """Run each callable in its own thread, all started together; their results in order."""
    out: list = [None] * len(fns)
    errors: list = []
    barrier = threading.Barrier(len(fns))

    def go(i, fn):
        try:
            barrier.wait()
            out[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=go, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return out


# ------------------------------------------------------------------------------- sharing + invariance
@pytest.mark.parametrize("temperature,seeds", [(0.0, [None] * 4), (1.0, [3, 4, 5, 6])])
def test_concurrent_images_share_steps_and_equal_solo(shared, temperature, seeds) -> None:
    m = make(shared)
    solo, solo_steps = [], 0
    for prompt, seed in zip(PROMPTS, seeds):
        before = m.stats()["decode_steps"]
        solo.append(m.generate_images(prompt, num_images=2, temperature=temperature, seed=seed).tokens)
        solo_steps += m.stats()["decode_steps"] - before
    before = m.stats()["decode_steps"]
    together = run_threads([
        (lambda p=p, s=s: m.generate_images(p, num_images=2, temperature=temperature, seed=s).tokens)
        for p, s in zip(PROMPTS, seeds)])
    shared_steps = m.stats()["decode_steps"] - before
    for a, b in zip(solo, together):
        assert torch.equal(a, b)
    assert shared_steps < solo_steps  # they really ran in the same steps
    assert m.stats()["peak_rows"] > 4  # more than one request's rows (2 images = 4 rows) in one step
    if temperature > 0:
        assert not torch.equal(solo[0], solo[1])


def test_text_and_images_share_steps(shared) -> None:
    m = make(shared)
    q = ["Describe a fox.", "What is the capital of nowhere?"]
    solo_text = [m.chat(x, max_new_tokens=12, temperature=0.7, seed=9).token_ids for x in q]
    solo_image = m.generate_images(PROMPTS[0], num_images=1, seed=2).tokens
    before = m.stats()["decode_steps"]
    out = run_threads([lambda: m.chat(q[0], max_new_tokens=12, temperature=0.7, seed=9).token_ids,
                       lambda: m.generate_images(PROMPTS[0], num_images=1, seed=2).tokens,
                       lambda: m.chat(q[1], max_new_tokens=12, temperature=0.7, seed=9).token_ids])
    assert out[0] == solo_text[0] and out[2] == solo_text[1]
    assert torch.equal(out[1], solo_image)
    assert m.stats()["decode_steps"] - before < 35 + 2 * 11  # fewer than the three alone


def test_requests_joining_mid_decode_equal_solo(shared) -> None:
    m = make(shared)
    solo_a = m.generate_images(PROMPTS[0], num_images=2, seed=1).tokens
    solo_b = m.generate_images(PROMPTS[1], num_images=1, seed=2).tokens
    solo_c = m.chat("Tell me a story.", max_new_tokens=10, temperature=1.0, seed=3).token_ids
    a = m.submit_images(PROMPTS[0], num_images=2, seed=1)
    while a.requests[0].progress < 2 * 10:  # A is 10 steps in
        time.sleep(0.002)
    b = m.submit_images(PROMPTS[1], num_images=1, seed=2)
    while b.requests[0].progress < 5:
        time.sleep(0.002)
    c = m.submit_chat("Tell me a story.", max_new_tokens=10, temperature=1.0, seed=3)
    assert torch.equal(a.result().tokens, solo_a)
    assert torch.equal(b.result().tokens, solo_b)
    assert c.result().token_ids == solo_c


def test_list_of_prompts_is_in_order_and_equals_single_calls(shared) -> None:
    m = make(shared)
    out = m.generate_images(PROMPTS[:3], num_images=2, seed=7)
    assert out.tokens.shape == (6, 36) and out.images.shape[0] == 6
    assert isinstance(out.prompt, list) and len(out.prompt) == 3
    for i, prompt in enumerate(PROMPTS[:3]):
        single = m.generate_images(prompt, num_images=2, seed=7)
        assert torch.equal(out.tokens[2 * i:2 * i + 2], single.tokens)
        assert np.array_equal(out.images[2 * i:2 * i + 2], single.images)
        assert out.prompt[i] == single.prompt


def test_seeded_images_match_the_reference_stream(shared) -> None:
    """A request's draw is the reference's: manual_seed(seed), one multinomial over its images per step."""
    from janus_rt.model.cfg_rows import cfg_prompt_tokens
    from janus_rt.model.llm import KVCache
    from janus_rt.kernels.reference_sampling import cfg_mix

    m = make(shared)
    model = shared[0]
    ids = m.tokenizer.encode(m.image_prompt(PROMPTS[2]))
    ours = run_threads([lambda: m.generate_images(PROMPTS[2], num_images=2, seed=21, top_k=40).tokens,
                        lambda: m.generate_images(PROMPTS[3], num_images=3, seed=22).tokens])[0]
    g = torch.Generator().manual_seed(21)
    tokens = cfg_prompt_tokens(ids, m.tokenizer.special.pad, 2, torch.device("cpu"))
    cache = KVCache.allocate(model.cfg.llm, 4, len(ids) + 36, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        hidden = model.llm(model.llm.embed_tokens(tokens), torch.arange(len(ids)).expand(4, -1), cache, 0)[:, -1]
        ref = []
        for step in range(36):
            logits = cfg_mix(model.gen_head(hidden), 5.0)
            kth = torch.topk(logits, 40).values[:, -1:]
            probs = torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=g).squeeze(-1)
            ref.append(nxt)
            emb = model.gen_token_embeddings(nxt.repeat_interleave(2))[:, None]
            hidden = model.llm(emb, torch.full((4, 1), len(ids) + step), cache, len(ids) + step)[:, -1]
    assert torch.equal(ours, torch.stack(ref, 1))


# ------------------------------------------------------------------------------------- memory budget
def test_waves_through_a_small_row_budget(shared) -> None:
    m_small = make(shared, max_rows=4)  # 2 images at a time
    m_big = make(shared, max_rows=16)
    assert m_small.stats()["images_per_group"] == 2
    small = m_small.generate_images(PROMPTS[0], num_images=5, temperature=0).tokens
    big = m_big.generate_images(PROMPTS[0], num_images=5, temperature=0).tokens
    assert torch.equal(small, big)  # greedy: the waves change nothing
    s = m_small.stats()
    assert s["peak_rows"] <= 4 and s["decode_steps"] >= 3 * 35  # three waves of at most 2 images
    seeded = m_small.generate_images(PROMPTS[0], num_images=5, seed=5).tokens
    # with companions arriving in between, each wave's stream is still its own
    together = run_threads([lambda: m_small.generate_images(PROMPTS[0], num_images=5, seed=5).tokens,
                            lambda: m_small.chat("Hi there", max_new_tokens=30, temperature=1.0, seed=1).token_ids])
    assert torch.equal(together[0], seeded)
    assert m_small.stats()["peak_rows"] <= 4


def test_refused_at_once_when_it_can_never_fit(shared) -> None:
    m = make(shared, max_seq_len=64)
    long_prompt = "a very long description of a fox " * 3  # with the chat template: over 64 - 35 tokens
    assert len(m.tokenizer.encode(m.image_prompt(long_prompt))) + 35 > 64
    with pytest.raises(InputError, match=r"needs \d+ cache slots, more than the 64 cache slots \(.*the engine's rows hold 64\)"):
        m.generate_images(long_prompt)
    # with the reference's system prompt, the prompt alone is longer than 64 tokens
    with pytest.raises(InputError, match=r"prompt is \d+ tokens \(images included\), which leaves no room for an "
                                         r"answer in the 64 cache slots .*rows hold 64\)"):
        m.chat("Hello", max_new_tokens=60)
    with pytest.raises(InputError, match=r"max_new_tokens=60 it needs \d+ cache slots, more than the 64 cache slots"):
        m.chat("Hello", max_new_tokens=60, system_prompt="", raw=False)
    assert m.stats()["decode_steps"] == 0 and m.stats()["prefills"] == 0
    with pytest.raises(InputError, match=r"one image needs 2 KV rows but the engine has max_rows=1"):
        make(shared, max_rows=1).generate_images(PROMPTS[0])
    with pytest.raises(InputError, match=r"max_seq_len=5000 exceeds the model's context of 1024"):
        make(shared, max_seq_len=5000)


def test_cpu_row_cap_and_overrides(shared) -> None:
    assert make(shared).stats()["max_rows"] == EngineConfig().cpu_max_rows
    assert make(shared, cpu_max_rows=6).stats()["max_rows"] == 6
    assert make(shared, max_rows=10).stats()["max_rows"] == 10
    assert make(shared).stats()["max_seq_len"] == 1024  # the model's context (under the 2048 default cap)
    with pytest.raises(InputError, match=r"gpu_memory_utilization must be a fraction in \(0, 1\]"):
        make(shared, gpu_memory_utilization=1.5)


# ---------------------------------------------------------------------------------------- cancellation
def test_cancel_frees_rows_at_the_next_step(shared) -> None:
    m = make(shared, max_rows=4)
    running = m.submit_images(PROMPTS[0], num_images=2, seed=1)  # takes all 4 rows
    queued = m.submit_images(PROMPTS[1], num_images=1, seed=2)  # waits for rows
    while running.requests[0].progress < 8:
        time.sleep(0.002)
    steps_at_cancel = m.stats()["decode_steps"]
    queued.cancel()
    running.cancel()
    with pytest.raises(CancelledError):
        running.result()
    with pytest.raises(CancelledError):
        queued.result()
    s = m.stats()
    assert s["active_rows"] == 0 and s["queued_requests"] == 0 and s["cancelled_requests"] == 2
    assert s["decode_steps"] < steps_at_cancel + 5  # stopped within a step or two, not after 36
    again = m.generate_images(PROMPTS[1], num_images=1, seed=2).tokens  # the rows are usable again
    assert torch.equal(again, make(shared).generate_images(PROMPTS[1], num_images=1, seed=2).tokens)


def test_failed_step_fails_its_requests_and_the_engine_goes_on(shared, monkeypatch) -> None:
    m = make(shared)
    fail_decode_at(m, monkeypatch, call=3)
    with pytest.raises(EngineError, match="decode step failed: RuntimeError: simulated device fault"):
        m.generate_images(PROMPTS[0], temperature=0)
    assert m.stats()["failed_requests"] == 1 and m.stats()["active_rows"] == 0
    ok = m.generate_images(PROMPTS[0], temperature=0).tokens
    assert ok.shape == (1, 36)


def test_closed_engine_refuses_new_work(shared) -> None:
    m = make(shared)
    m.close()
    with pytest.raises(EngineError, match="closed"):
        m.generate_images(PROMPTS[0])


# --------------------------------------------------------------------------------------------- asyncio
def test_async_face_streams_and_cancels(shared) -> None:
    m = make(shared)
    solo = m.chat("Tell me about foxes.", max_new_tokens=16, temperature=0.9, seed=4)
    solo_image = m.generate_images(PROMPTS[3], num_images=1, seed=8)

    async def main():
        job = m.submit_chat("Tell me about foxes.", max_new_tokens=16, temperature=0.9, seed=4)
        image_job = m.submit_images(PROMPTS[3], num_images=1, seed=8)
        doomed = m.submit_images(PROMPTS[0], num_images=2, seed=1)
        pieces = [p async for p in job.astream()]
        doomed.cancel()
        result = await job
        image = await image_job
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return pieces, result, image

    pieces, result, image = asyncio.run(main())
    assert result.token_ids == solo.token_ids and "".join(pieces) == result.text == solo.text
    assert torch.equal(image.tokens, solo_image.tokens) and np.array_equal(image.images, solo_image.images)


def test_sync_stream_equals_result(shared) -> None:
    m = make(shared)
    job = m.submit_chat("Say something long.", max_new_tokens=20, temperature=1.0, seed=12)
    assert "".join(job.stream()) == job.result().text


def test_sampling_params_are_validated_in_one_place() -> None:
    with pytest.raises(InputError, match=r"temperature must be 0 \(greedy\) or a number in \[0\.0001, 10000\]"):
        SamplingParams(temperature=-1)
    with pytest.raises(InputError, match=r"top_p must be in \(0, 1\]"):
        SamplingParams(top_p=0)
    with pytest.raises(InputError, match=r"max_new_tokens must be an integer in \[1, 1048576\]"):
        SamplingParams(max_new_tokens=0)
    assert SamplingParams(temperature=0).greedy


def test_admit_together_starts_a_batch_at_one_boundary(shared) -> None:
    m = make(shared)
    params = SamplingParams(temperature=0)
    ids = m.tokenizer.encode(m.image_prompt(PROMPTS[0]))
    with m.engine.admit_together():
        requests = [m.engine.submit_images(ids, m.tokenizer.special.pad, n, params) for n in (1, 2, 3)]
    for r in requests:
        r.result()
    s = m.stats()
    assert s["decode_steps"] == 35 and s["peak_rows"] == 12  # one batch of 6 images from the first step
    m.engine.reset_peak_rows()
    assert m.stats()["peak_rows"] == 0


def test_a_fault_outside_a_step_fails_the_requests_not_the_engine(shared, monkeypatch) -> None:
    m = make(shared)
    original = m.step_backend.read_tokens

    def broken(*args):
        raise RuntimeError("simulated read fault")

    monkeypatch.setattr(m.step_backend, "read_tokens", broken)
    with pytest.raises(EngineError, match="the engine loop failed: RuntimeError: simulated read fault"):
        m.generate_images(PROMPTS[0], temperature=0)
    monkeypatch.setattr(m.step_backend, "read_tokens", original)
    assert m.stats()["active_rows"] == 0
    assert m.generate_images(PROMPTS[0], temperature=0).tokens.shape == (1, 36)


def test_idle_engine_thread_exits_and_restarts(shared, monkeypatch) -> None:
    from janus_rt.engine import core

    monkeypatch.setattr(core, "IDLE_EXIT_S", 0.05)
    m = make(shared)
    first = m.generate_images(PROMPTS[1], temperature=0).tokens
    deadline = time.monotonic() + 10
    while m.engine._thread is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert m.engine._thread is None  # no thread holds the model while nothing runs
    assert torch.equal(m.generate_images(PROMPTS[1], temperature=0).tokens, first)
