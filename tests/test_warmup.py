"""Warm-up: each common decode shape runs (and, on the triton backend, builds its step) before the first request,
leaves the engine idle and changes no later answer; `janus-rt warmup` and `load(..., warmup=True)`."""

from __future__ import annotations

from pathlib import Path

import pytest

import janus_rt
from janus_rt.cli import main
from janus_rt.engine import EngineConfig
from janus_rt.errors import InputError
from janus_rt.tiny import write_tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("warmup") / "ckpt")


def test_triton_warmup_builds_each_bucket_and_changes_no_answer(ckpt: Path) -> None:
    warmed = janus_rt.load(ckpt, device="cpu", dtype="float32", backend="triton")
    cold = janus_rt.load(ckpt, device="cpu", dtype="float32", backend="triton")
    try:
        steps = warmed.warmup(image_batches=(1, 2), text_batches=(1, 2))
        assert [(s.kind, s.batch) for s in steps] == [("image", 1), ("image", 2), ("text", 1), ("text", 2), ("vq", 1)]
        assert all(s.seconds > 0 for s in steps)
        assert {(2, 0), (4, 0), (0, 1), (0, 2)} <= set(warmed.step_backend.steps)  # (image rows, text rows) buckets
        stats = warmed.stats()
        assert stats["active_rows"] == 0 and stats["queued_requests"] == 0 and stats["peak_rows"] == 0
        assert stats["cancelled_requests"] == 2 and stats["failed_requests"] == 0
        question = "What is in this picture?"
        assert warmed.chat(question, max_new_tokens=8).token_ids == cold.chat(question, max_new_tokens=8).token_ids
    finally:
        warmed.close()
        cold.close()


def test_shapes_larger_than_the_pool_are_skipped(ckpt: Path) -> None:
    m = janus_rt.load(ckpt, device="cpu", dtype="float32", engine=EngineConfig(max_rows=4))
    try:
        steps = m.warmup(image_batches=(1, 2, 4), text_batches=(4, 8))
        assert [(s.kind, s.batch) for s in steps] == [("image", 1), ("image", 2), ("text", 4), ("vq", 1)]
        with pytest.raises(InputError, match="image_batches must be integers >= 1"):
            m.warmup(image_batches=(0,))
    finally:
        m.close()


def test_load_with_warmup_and_the_cli(ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    m = janus_rt.load(ckpt, device="cpu", dtype="float32", warmup=True)
    try:
        assert m.stats()["decode_steps"] > 0 and m.stats()["active_rows"] == 0
    finally:
        m.close()
    assert main(["warmup", "--model", str(ckpt), "--device", "cpu", "--images", "1", "--text", "none"]) == 0
    out = capsys.readouterr().out
    assert "warmed       1 image(s)" in out and "VQ decode" in out and "answer" not in out
    with pytest.raises(SystemExit):
        main(["warmup", "--model", str(ckpt), "--images", "1,x"])
