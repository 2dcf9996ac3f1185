"""backend="triton" against backend="torch" on a tiny checkpoint: the same greedy tokens, answers and pixels;
and the engine's guarantees on the triton backend: concurrent requests share one pass per step and get
exactly their solo tokens (greedy and seeded), also when they join mid-way. The same holds with every optional
fused kernel on (`fusions="all"`: norms and SiLU*up in the GEMM prologues, the attention merge in its split kernel).

Without CUDA the kernels run in the Triton interpreter and the decode step runs eagerly; on a GPU the same
tests run the compiled kernels and the CUDA-graph replay (capture on the second step, reuse across calls).
The interpreter takes about a second per decode step, so on CPU both backends share a checkpoint with a
3x3 image-token grid (9 tokens instead of 576) and 4096 image codes instead of 16384 (a narrower gen head): the same
code with a shorter loop. On a GPU the full grid and codebook run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from kernel_utils import DEVICE  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import janus_rt
from janus_rt.backends.choice import make_backend
from janus_rt.engine import SamplingParams
from janus_rt.errors import InputError
from janus_rt.backends.triton_ops import Fusions
from janus_rt.checkpoint.tiny import TinySpec
from janus_rt.timing import PhaseTimer

pytestmark = [pytest.mark.interpreter, pytest.mark.slow]

CPU_GRID, CPU_CODES = 3, 4096  # without CUDA: the interpreter's steps are slow (see the module docstring)


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint) -> Path:
    """Context of 1024 positions (576 image tokens + prompt on a GPU); a 3x3 grid of 4096 codes without CUDA."""
    smaller = {} if torch.cuda.is_available() else {"image_token_grid": CPU_GRID, "codes": CPU_CODES}
    return tiny_checkpoint(TinySpec(max_positions=1024, **smaller))


@pytest.fixture(scope="module")
def pair(ckpt: Path) -> Iterator[tuple[janus_rt.Janus, janus_rt.Janus]]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_m = janus_rt.load(ckpt, device=device, dtype="float32", backend="torch")
    triton_m = janus_rt.Janus(make_backend("triton", torch_m.model), torch_m.tokenizer, torch_m.chat_format, ckpt)
    yield torch_m, triton_m  # the same weights object: only the backend differs
    triton_m.close()
    torch_m.close()


def tokens_per_image(m: janus_rt.Janus) -> int:
    return m.config.image_tokens_per_image


def test_mode_is_stated(pair) -> None:
    _, triton_m = pair
    mode = triton_m.step_backend.describe_mode()
    expected = "CUDA graphs" if torch.cuda.is_available() else "Triton interpreter"
    assert expected in mode and triton_m.info()["backend"] == mode


def test_greedy_image_tokens_and_pixels_match_torch(pair) -> None:
    torch_m, triton_m = pair
    ref = torch_m.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=0)
    ours = triton_m.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=0)
    assert ours.tokens.shape == ref.tokens.shape == (2, tokens_per_image(torch_m))
    assert torch.equal(ours.tokens.cpu(), ref.tokens.cpu())
    assert np.array_equal(ours.images, ref.images)
    # a second call with another prompt length reuses the bucket's buffers (and on CUDA its captured graph)
    ref2 = torch_m.generate_images("snow", num_images=2, cfg_weight=3.0, temperature=0)
    ours2 = triton_m.generate_images("snow", num_images=2, cfg_weight=3.0, temperature=0)
    assert torch.equal(ours2.tokens.cpu(), ref2.tokens.cpu())
    assert list(triton_m.step_backend.steps) == [(4, 0)]  # 4 image rows, no text rows


def test_greedy_answers_match_torch(pair) -> None:
    torch_m, triton_m = pair
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    questions = ["What is in this picture?", "Describe it in one long sentence, please."]
    images = [image, None]
    ref = torch_m.chat(questions, image=images, max_new_tokens=24)
    ours = triton_m.chat(questions, image=images, max_new_tokens=24)
    assert [r.token_ids for r in ours] == [r.token_ids for r in ref]
    assert [r.finished for r in ours] == [r.finished for r in ref]


def test_eos_ends_the_answer(pair) -> None:
    """With EOS forced to be the greedy choice of the first step, the answer is empty and finished."""
    torch_m, triton_m = pair
    ref = torch_m.chat("Hello there", max_new_tokens=2)
    first = ref.token_ids[0] if ref.token_ids else triton_m.tokenizer.special.eos
    request, _ = triton_m.chat_inputs("Hello there")
    answer = triton_m.engine.submit_text(request.ids, None, first, triton_m.tokenizer.special.image_placeholder,
                                         SamplingParams(temperature=0, max_new_tokens=20)).result()
    assert answer == ([], True)


def test_seeded_sampling_reproduces(pair) -> None:
    _, triton_m = pair
    a = triton_m.generate_images("a cat", num_images=1, temperature=1.0, seed=11, top_k=100).tokens
    b = triton_m.generate_images("a cat", num_images=1, temperature=1.0, seed=11, top_k=100).tokens
    c = triton_m.generate_images("a cat", num_images=1, temperature=1.0, seed=12, top_k=100).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)
    t1 = triton_m.chat("Tell me a story", max_new_tokens=6, temperature=0.9, top_p=0.9, seed=5)
    t2 = triton_m.chat("Tell me a story", max_new_tokens=6, temperature=0.9, top_p=0.9, seed=5)
    assert t1.token_ids == t2.token_ids and len(t1.token_ids) > 0


def test_timer_phases(pair) -> None:
    _, triton_m = pair
    timer = PhaseTimer(triton_m.device)
    triton_m.engine.timer = timer
    try:
        triton_m.generate_images("a dog", num_images=1, temperature=0)
    finally:
        triton_m.engine.timer = None
    assert timer.counts == {"prefill": 1, "decode": tokens_per_image(triton_m) - 1}
    assert all(ms > 0 for ms in timer.elapsed_ms().values())


def test_concurrent_requests_share_one_pass_and_equal_solo(pair) -> None:
    """Image and text requests from three threads: one transformer pass per step, each its solo tokens."""
    from test_engine import run_threads

    _, triton_m = pair
    calls = [lambda: triton_m.generate_images("a red fox", num_images=1, seed=3).tokens,
             lambda: triton_m.generate_images("a blue lake", num_images=2, temperature=0).tokens,
             lambda: triton_m.chat("Tell me a story", max_new_tokens=8, temperature=0.8, seed=5).token_ids]
    solo, solo_steps = [], 0
    for call in calls:
        before = triton_m.stats()["decode_steps"]
        solo.append(call())
        solo_steps += triton_m.stats()["decode_steps"] - before
    before = triton_m.stats()["decode_steps"]
    together = run_threads(calls)
    assert triton_m.stats()["decode_steps"] - before < solo_steps
    assert torch.equal(together[0], solo[0]) and torch.equal(together[1], solo[1])
    assert together[2] == solo[2]
    assert any(bi > 0 and bt > 0 for bi, bt in triton_m.step_backend.steps)  # images and text in one pass


def test_joining_mid_decode_equals_solo(pair) -> None:
    _, triton_m = pair
    solo_a = triton_m.generate_images("a cat", num_images=1, seed=11, top_k=100).tokens
    solo_b = triton_m.generate_images("a dog", num_images=1, seed=12, top_p=0.9).tokens
    a = triton_m.submit_images("a cat", num_images=1, seed=11, top_k=100)
    while a.requests[0].progress < 6:
        time.sleep(0.01)
    b = triton_m.submit_images("a dog", num_images=1, seed=12, top_p=0.9)
    assert torch.equal(a.result().tokens, solo_a) and torch.equal(b.result().tokens, solo_b)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter check is for CPU-only machines")
def test_interpreter_must_precede_triton(monkeypatch: pytest.MonkeyPatch, pair) -> None:
    from janus_rt.backends import triton as triton_backend

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(InputError, match="TRITON_INTERPRET=1"):
        triton_backend.prepare_triton(torch.device("cpu"))


def test_cli_chat_with_triton_backend(ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    from janus_rt.cli.main import main

    device = "cuda" if torch.cuda.is_available() else "cpu"
    argv = ["chat", "--model", str(ckpt), "--device", device, "--dtype", "float32", "--max-new-tokens", "3", "Hi"]
    assert main(argv + ["--backend", "triton"]) == 0
    out_triton = capsys.readouterr()
    assert "backend      triton kernels" in out_triton.err
    assert main(argv) == 0
    out_torch = capsys.readouterr()
    assert out_triton.out == out_torch.out  # the same greedy answer


class CountingGemm:
    """The backend's SkinnyLinear with its fused entry points counted (proves the fused kernels ran)."""

    def __init__(self, gemm) -> None:
        self.gemm = gemm
        self.calls = {"norm_linear": 0, "silu_linear": 0}

    def __call__(self, **kw):
        return self.gemm(**kw)

    def norm_linear(self, **kw):
        self.calls["norm_linear"] += 1
        return self.gemm.norm_linear(**kw)

    def silu_linear(self, **kw):
        self.calls["silu_linear"] += 1
        return self.gemm.silu_linear(**kw)


@pytest.fixture(scope="module")
def fused(pair) -> janus_rt.Janus:
    torch_m, _ = pair
    m = janus_rt.Janus(make_backend("triton", torch_m.model, Fusions.parse("all")), torch_m.tokenizer,
                       torch_m.chat_format, torch_m.path)
    m.step_backend.ops.gemm = CountingGemm(m.step_backend.ops.gemm)
    return m


def test_fused_step_gives_torch_greedy_tokens(pair, fused) -> None:
    """Images and an answer decoding in one mixed step, every fusion on: torch's greedy tokens and pixels."""
    from test_engine import run_threads

    torch_m, _ = pair
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    ref_images = torch_m.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=0)
    ref_answer = torch_m.chat("What is in this picture?", image=image, max_new_tokens=12)
    ours_images, ours_answer = run_threads([
        lambda: fused.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=0),
        lambda: fused.chat("What is in this picture?", image=image, max_new_tokens=12)])
    assert torch.equal(ours_images.tokens.cpu(), ref_images.tokens.cpu())
    assert np.array_equal(ours_images.images, ref_images.images)
    assert ours_answer.token_ids == ref_answer.token_ids
    ops = fused.step_backend.ops
    layers = len(torch_m.model.llm.layers)
    assert ops.gemm.calls["norm_linear"] >= 2 * layers and ops.gemm.calls["silu_linear"] >= layers
    counters = list(ops.merge_counters.buffers())
    assert counters and all(not c.any() for c in counters)


def test_fused_step_keeps_rows_batch_invariant(fused) -> None:
    """Seeded requests together (one mixed step) equal the same requests alone, with every fusion on."""
    from test_engine import run_threads

    calls = [lambda: fused.generate_images("a blue lake", num_images=1, seed=3, top_k=50).tokens,
             lambda: fused.chat("Tell me a story", max_new_tokens=6, temperature=0.8, seed=5).token_ids]
    solo = [call() for call in calls]
    together = run_threads(calls)
    assert torch.equal(together[0], solo[0]) and together[1] == solo[1]


def test_fusions_option_is_checked(ckpt: Path) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    m = janus_rt.load(ckpt, device=device, dtype="float32", backend="triton", fusions="norm+attn")
    try:
        assert m.step_backend.fusions == Fusions(norm=True, attn=True)
        assert m.backend == "triton[norm+attn]"  # the label bench rows carry
        assert m.info()["backend"].endswith("fused kernels: norm+attn")
    finally:
        m.close()
    with pytest.raises(InputError, match="unknown fusion 'rms'") as info:
        janus_rt.load(ckpt, device=device, backend="triton", fusions="rms")
    assert info.value.param == "fusions"
    with pytest.raises(InputError, match="backend 'torch' has none"):
        janus_rt.load(ckpt, device=device, backend="torch", fusions="all")


def test_negative_prompt_rows_keep_their_own_positions_in_the_mixed_step(pair) -> None:
    """A negative prompt shorter and one longer than the prompt, beside a plain image and an answer in the same
    steps: each row runs at its own cache length and position, so the triton step gives torch's greedy tokens."""
    from test_engine import run_threads

    torch_m, triton_m = pair
    negatives = ["dark", "blurry, low quality, deformed, extra limbs, watermark, text"]
    asks = [lambda m, neg=neg: m.generate_images("a red fox in the snow", num_images=2, temperature=0,
                                                 negative_prompt=neg).tokens.cpu() for neg in negatives]
    asks.append(lambda m: m.generate_images("a green field", num_images=1, temperature=0).tokens.cpu())
    asks.append(lambda m: m.chat("What is this?", max_new_tokens=6).token_ids)
    ref = [ask(torch_m) for ask in asks]
    ours = run_threads([lambda ask=ask: ask(triton_m) for ask in asks])
    for got, want in zip(ours, ref):
        assert torch.equal(got, want) if isinstance(want, torch.Tensor) else got == want
    assert not torch.equal(ref[0], ref[1])  # the two negative prompts steer differently


def test_previews_come_from_the_triton_records(pair) -> None:
    """The triton backend's snapshots are the drawn tokens: each preview is their decode, the rest gray."""
    from janus_rt.previews import fill_undrawn, gray_undrawn

    _, triton_m = pair
    grid = triton_m.config.vq.image_token_grid
    job = triton_m.submit_images("a red fox", num_images=2, seed=3, partial_images=grid - 1)
    result = job.result()
    late = list(job.previews())  # read after the end: the newest preview of each image
    assert [(p.image_index, p.rows_done) for p in late] == [(0, grid - 1), (1, grid - 1)]
    for p in late:
        drawn = result.tokens[p.image_index:p.image_index + 1, :p.rows_done * grid]
        want = gray_undrawn(triton_m.decode_image_tokens(fill_undrawn(drawn, grid)), p.rows_done, grid)[0]
        assert np.array_equal(p.image, want)
