"""backend="triton" against backend="torch" on a tiny checkpoint: the same greedy tokens, answers and pixels.

Without CUDA the kernels run in the Triton interpreter and the decode step runs eagerly; on a GPU the same
tests run the compiled kernels and the CUDA-graph replay (capture on the second step, reuse across calls).
The interpreter takes about a second per decode step, so on CPU both backends share a configuration with a
6x6 image-token grid (36 tokens instead of 576): the same code with a shorter loop. On a GPU the full grid runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from kernel_utils import DEVICE  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import janus_rt
from janus_rt.api import make_runner
from janus_rt.errors import InputError
from janus_rt.tiny import TinySpec, write_tiny_checkpoint
from janus_rt.timing import PhaseTimer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Context of 600 positions (576 image tokens + prompt); VQ decoder kept small for speed."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("triton") / "ckpt", TinySpec(max_positions=1024))


@pytest.fixture(scope="module")
def pair(ckpt: Path) -> tuple[janus_rt.Janus, janus_rt.Janus]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_m = janus_rt.load(ckpt, device=device, dtype="float32", backend="torch")
    if device == "cpu":  # a 6x6 token grid: the interpreter's steps are slow (see the module docstring)
        model = torch_m.model
        model.cfg = replace(model.cfg, vq=replace(model.cfg.vq, image_token_grid=6))
        model.vq.cfg = model.cfg.vq
        torch_m = janus_rt.Janus(make_runner("torch", model), torch_m.tokenizer, torch_m.chat_format, torch_m.path)
    triton_m = janus_rt.Janus(make_runner("triton", torch_m.model), torch_m.tokenizer, torch_m.chat_format, ckpt)
    return torch_m, triton_m  # the same weights object: only the backend differs


def tokens_per_image(m: janus_rt.Janus) -> int:
    return m.config.image_tokens_per_image


def test_mode_is_stated(pair) -> None:
    _, triton_m = pair
    mode = triton_m.runner.describe_mode()
    expected = "CUDA graphs" if torch.cuda.is_available() else "Triton interpreter"
    assert expected in mode and triton_m.info()["backend"] == mode


def test_greedy_image_tokens_and_pixels_match_torch(pair) -> None:
    torch_m, triton_m = pair
    ref = torch_m.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=0)
    ours = triton_m.generate_images("a red fox in the snow", num_images=2, cfg_weight=5.0, temperature=0)
    assert ours.tokens.shape == ref.tokens.shape == (2, tokens_per_image(torch_m))
    assert torch.equal(ours.tokens.cpu(), ref.tokens.cpu())
    assert np.array_equal(ours.images, ref.images)
    # a second call with another prompt length reuses the buffers (and on CUDA the captured graph)
    ref2 = torch_m.generate_images("snow", num_images=2, cfg_weight=3.0, temperature=0)
    ours2 = triton_m.generate_images("snow", num_images=2, cfg_weight=3.0, temperature=0)
    assert torch.equal(ours2.tokens.cpu(), ref2.tokens.cpu())
    assert len([k for k in triton_m.runner.loops if k[0] == "image"]) == 1


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
    answers = triton_m.runner.generate_text([request], triton_m.tokenizer.special.pad,
                                            triton_m.tokenizer.special.image_placeholder, first, 20, 0.0, None,
                                            None, None)
    assert answers == [([], True)]


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
    ids = triton_m.tokenizer.encode(triton_m.image_prompt("a dog"))
    triton_m.runner.generate_image_tokens(ids, triton_m.tokenizer.special.pad, 1, 5.0, 0.0, None, None, None, False,
                                          timer)
    assert timer.counts == {"prefill": 1, "decode": tokens_per_image(triton_m) - 1}
    assert all(ms > 0 for ms in timer.elapsed_ms().values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="the interpreter check is for CPU-only machines")
def test_interpreter_must_precede_triton(monkeypatch: pytest.MonkeyPatch, pair) -> None:
    from janus_rt import triton_backend

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(InputError, match="TRITON_INTERPRET=1"):
        triton_backend.prepare_triton(torch.device("cpu"))


def test_cli_chat_with_triton_backend(ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    from janus_rt.cli import main

    device = "cuda" if torch.cuda.is_available() else "cpu"
    argv = ["chat", "--model", str(ckpt), "--device", device, "--dtype", "float32", "--max-new-tokens", "3", "Hi"]
    assert main(argv + ["--backend", "triton"]) == 0
    out_triton = capsys.readouterr()
    assert "backend      triton kernels" in out_triton.err
    assert main(argv) == 0
    out_torch = capsys.readouterr()
    assert out_triton.out == out_torch.out  # the same greedy answer
