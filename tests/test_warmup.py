"""Warm-up: on the triton backend it builds the step of every (image rows, text rows) bucket the engine can reach
with its planned rows, mixed ones included, and tunes every GEMM there, so that serving builds, captures and tunes
nothing; each common decode shape runs before the first request, the engine is left idle and no later answer
changes; `janus-rt warmup` and `load(..., warmup=True)`.

The tests keep the row budget small (4 rows: 7 buckets) because the Triton interpreter takes most of a second per
step; on a CPU a bucket's build is its one eager run (no CUDA graphs), the set of buckets is the same as on a GPU,
where the same tests run the compiled kernels and a build also captures and replays the bucket's graph.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from kernel_utils import DEVICE  # sets TRITON_INTERPRET before triton is imported

import janus_rt
from janus_rt.cli.main import main
from janus_rt.engine import EngineConfig
from janus_rt.errors import InputError
from janus_rt.kernels.skinny_gemm import CONFIGS, SkinnyLinear
from janus_rt.kernels.tuning import TileChoices
from janus_rt.backends.triton_step import reachable_buckets
from janus_rt.backends.warmup import WarmupStep, build_buckets, warm_up

pytestmark = pytest.mark.interpreter

ROWS = 4  # the tests' planned rows: (0,1) (0,2) (0,4) (2,0) (2,1) (2,2) (4,0)
TILE = CONFIGS[0] if DEVICE.type == "cuda" else (2048, 128, 4, 1, 1)  # the one GEMM tile: wide is cheap interpreted


@pytest.fixture(scope="module")
def ckpt(tiny_official: Path) -> Path:
    return tiny_official


def padded(rows: int) -> int:
    """The next power of two of `rows` (0 stays 0): a section's padding, written out apart from triton_step."""
    return 0 if rows == 0 else 1 << (rows - 1).bit_length()


@cache
def image_row_totals(rows: int, largest_group: int) -> frozenset[int]:
    """Image rows of every multiset of image groups (1..largest_group images each, 2 rows per image) within `rows`."""
    totals = {0}
    for images in range(1, largest_group + 1):
        if 2 * images <= rows:
            totals |= {2 * images + rest for rest in image_row_totals(rows - 2 * images, images)}
    return frozenset(totals)


def batches_the_engine_can_form(rows: int) -> set[tuple[int, int]]:
    """(image bucket, text bucket) of every batch the engine can step with `rows` planned rows: image groups of up
    to rows // 2 images (`Engine.images_per_group`) beside any number of one-row answers, all rows within the pool,
    at least one row."""
    return {(padded(image_rows), padded(answers)) for image_rows in image_row_totals(rows, rows // 2)
            for answers in range(rows - image_rows + 1) if image_rows + answers > 0}


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 9, 16, 24])
def test_reachable_buckets_are_the_batches_the_engine_can_form(rows: int) -> None:
    keys = reachable_buckets(rows)
    assert len(keys) == len(set(keys)) and set(keys) == batches_the_engine_can_form(rows)
    assert [a + b for a, b in keys] == sorted((a + b for a, b in keys), reverse=True)  # largest first
    if rows == 16:  # the CPU default (cpu_max_rows): the mixed buckets are most of them
        assert len(keys) == 28 and sum(a > 0 and b > 0 for a, b in keys) == 19


class CountingBench:
    """Stands in for the tile tuner's timer: counts the configs timed, runs none, says each took 1 ms."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, fn: Callable[[], None]) -> float:
        self.calls += 1
        return 1.0


@dataclass
class Tiny:
    """A tiny triton model with ROWS planned rows whose GEMMs take the tuned launch (as on a GPU) with one TILE,
    stored in its own file; only the tuner's timer is fake."""

    model: janus_rt.Janus
    bench: CountingBench
    store: TileChoices

    @classmethod
    def load(cls, ckpt: Path, tiles: Path) -> "Tiny":
        m = janus_rt.load(ckpt, device=DEVICE.type, dtype="float32", backend="triton",
                          engine=EngineConfig(max_rows=ROWS))
        bench, store = CountingBench(), TileChoices(tiles, slug="test")
        m.step_backend.ops.gemm = SkinnyLinear(store=store, bench=bench, configs=[TILE])
        return cls(m, bench, store)

    def tuned(self) -> dict:
        """The tile choices written to the store's file (key -> tile)."""
        return json.loads(self.store.path.read_text())["entries"]


@dataclass
class Warmed:
    tiny: Tiny
    report: list[WarmupStep]  # what warm_up returned
    stats: dict  # the engine's counters right after it


@pytest.fixture(scope="module")
def warmed(ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Warmed]:
    """A tiny triton model after a warm-up of one step per shape (the buckets are built as by the default)."""
    tiny = Tiny.load(ckpt, tmp_path_factory.mktemp("tiles"))
    try:
        report = warm_up(tiny.model, image_batches=(1,), text_batches=(2,), steps=1)
        yield Warmed(tiny, report, tiny.model.stats())
    finally:
        tiny.model.close()


def test_warmup_builds_every_reachable_bucket_and_reports_it(warmed: Warmed) -> None:
    tiny, report, stats = warmed.tiny, warmed.report, warmed.stats
    assert [(s.kind, s.batch) for s in report] == [("buckets", 7), ("image", 1), ("text", 2), ("vq", 1)]
    assert all(s.seconds > 0 for s in report)
    backend = tiny.model.step_backend
    assert len(batches_the_engine_can_form(ROWS)) == 7
    assert set(backend.steps) == batches_the_engine_can_form(ROWS)  # (image rows, text rows) buckets
    assert backend.serving_builds == 0  # the shape runs used the buckets built before them
    assert stats["active_rows"] == 0 and stats["queued_requests"] == 0 and stats["peak_rows"] == 0
    assert stats["cancelled_requests"] == 1 and stats["failed_requests"] == 0  # the image; the answers ran out


def test_warmup_tunes_every_gemm_of_the_step(warmed: Warmed) -> None:
    """lm_head and the gen head were tuned in warm-up (by the bucket builds: the shape runs' prefills are eager)."""
    tiny = warmed.tiny
    tuned = tiny.tuned()
    m = tiny.model.model
    for layer in (m.lm_head, m.gen_head.out, m.gen_head.proj, m.llm.layers[0].attn.qkv_proj):
        n, k = layer.weight.shape
        assert any(f"K={k},N={n}," in key for key in tuned), (layer, sorted(tuned))
    assert tiny.bench.calls == len(tuned)  # one config: one timing per key


def count_runs(run: Callable[[], None], key: tuple[int, int], used: Counter) -> Callable[[], None]:
    """`run` (a bucket's `StepGraph.step`), counting its calls in `used[key]`."""
    def counted() -> None:
        used[key] += 1
        run()

    return counted


def test_mixed_batches_after_warmup_build_and_tune_nothing(warmed: Warmed) -> None:
    """Batches mixing images and answers run in the buckets warm-up built: no build, no capture, no tuning."""
    tiny = warmed.tiny
    m, backend = tiny.model, tiny.model.step_backend
    tuned, timed = tiny.tuned(), tiny.bench.calls
    used: Counter[tuple[int, int]] = Counter()
    for key, step in backend.steps.items():
        step.step = count_runs(step.step, key, used)
    try:
        for answers in (2, 1):  # 1 image beside 2 answers (bucket (2, 2)), then beside 1 (bucket (2, 1))
            with m.engine.admit_together():
                image = m.submit_images("a red fox", num_images=1, seed=1)
                chats = [m.submit_chat("Hello there", max_new_tokens=2, seed=i) for i in range(answers)]
            for chat in chats:
                chat.request.result()
            image.cancel()
            for request in image.requests:
                request.wait()
    finally:
        for step in backend.steps.values():
            del step.step
    assert used[2, 2] > 0 and used[2, 1] > 0  # the mixed steps ran
    assert backend.serving_builds == 0 and set(backend.steps) == batches_the_engine_can_form(ROWS)
    assert tiny.bench.calls == timed and tiny.tuned() == tuned  # nothing tuned while serving
    assert [(s.kind, s.batch) for s in build_buckets(m)] == [("buckets", 0)]  # each built once per process


def test_warmup_changes_no_answer_and_a_cold_model_builds_while_serving(warmed: Warmed, ckpt: Path,
                                                                       tmp_path: Path) -> None:
    tiny = warmed.tiny
    cold = Tiny.load(ckpt, tmp_path)
    try:
        question = "What is in this picture?"
        ours = tiny.model.chat(question, max_new_tokens=4).token_ids
        assert ours == cold.model.chat(question, max_new_tokens=4).token_ids
        assert tiny.model.step_backend.serving_builds == 0
        assert cold.model.step_backend.serving_builds == 1  # (0, 1): the counter the tests above read can fail
    finally:
        cold.model.close()


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
    assert "bucket" not in out  # the torch backend has no decode buckets
    argv = ["warmup", "--model", str(ckpt), "--device", "cpu", "--backend", "triton", "--max-rows", "2"]
    assert main(argv + ["--images", "none", "--text", "none"]) == 0
    out = capsys.readouterr().out
    assert "warmed       3 bucket(s)" in out and "image(s)" not in out  # (0, 1), (0, 2), (2, 0)
    with pytest.raises(SystemExit):
        main(["warmup", "--model", str(ckpt), "--images", "1,x"])
