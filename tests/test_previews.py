"""Image previews (`partial_images`): where they are taken, what they show, and that the engine never waits for them.

On the small-grid tiny model (6 x 6 tokens: 36 decode steps an image, 12 x 12 pixels). A test that needs every
preview slows the engine's steps a little (`slowed`), so the reader keeps up; without that the reader may skip
previews (latest wins), which `test_a_late_reader_gets_the_newest_preview_of_each_image` checks.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import janus_rt
from janus_rt.errors import InputError
from janus_rt.previews import UNDRAWN_GRAY, fill_undrawn, gray_undrawn, preview_steps
from serve_utils import with_image_grid

GRID = 6
WAIT_S = 60.0  # bound on every wait of these tests


@given(grid=st.integers(2, 32), data=st.data())
@settings(max_examples=200, deadline=None)
def test_preview_steps_are_evenly_spaced_whole_rows_before_the_last(grid, data):
    k = data.draw(st.integers(0, grid - 1))
    steps = preview_steps(k, grid)
    rows = [s // grid for s in steps]
    assert len(steps) == k and all(s % grid == 0 for s in steps)
    assert rows == sorted(set(rows)) and all(1 <= r < grid for r in rows)
    # evenly spaced: the k-th preview comes after floor(grid * (k + 1) / (K + 1)) rows
    assert rows == [grid * (i + 1) // (k + 1) for i in range(k)]


@pytest.mark.parametrize("bad", [-1, GRID, 2.0, True, "2", None])
def test_preview_count_outside_the_grid_is_refused(bad):
    with pytest.raises(InputError, match=rf"partial_images must be an integer in \[0, {GRID - 1}\]") as e:
        preview_steps(bad, GRID)
    assert e.value.param == "partial_images"


def test_fill_and_gray_undrawn_rows():
    tokens = torch.arange(2 * 2 * GRID).view(2, 2 * GRID)  # 2 images, 2 rows drawn
    full = fill_undrawn(tokens, GRID).view(2, GRID, GRID)  # [P, rows, cols]
    assert torch.equal(full[:, :2].reshape(2, -1), tokens)
    assert all(torch.equal(full[:, r], full[:, 1]) for r in range(2, GRID))  # each undrawn row: the last drawn one
    images = np.full((2, 12, 12, 3), 7, dtype=np.uint8)
    gray_undrawn(images, 2, GRID)
    assert (images[:, :4] == 7).all() and (images[:, 4:] == UNDRAWN_GRAY).all()  # 2 of 6 rows = 4 of 12 pixels


@pytest.fixture
def model(small_grid_model):
    m = with_image_grid(small_grid_model, GRID)
    yield m
    m.close()


def slowed(m: janus_rt.Janus, seconds: float = 0.02) -> janus_rt.Janus:
    """Make each decode step of `m`'s engine take at least `seconds` (its own backend instance only)."""
    decode = m.step_backend.decode

    def slow_decode(groups):
        time.sleep(seconds)
        decode(groups)

    m.step_backend.decode = slow_decode
    return m


def expected_preview(m: janus_rt.Janus, final_tokens: torch.Tensor, rows_done: int) -> np.ndarray:
    """What a preview after `rows_done` rows must show: the drawn tokens decoded, the rest gray."""
    drawn = final_tokens[:, :rows_done * GRID]  # the final tokens begin with the ones drawn then
    return gray_undrawn(m.decode_image_tokens(fill_undrawn(drawn, GRID)), rows_done, GRID)


def test_every_preview_comes_in_order_and_shows_the_drawn_rows(model):
    m = slowed(model)
    plain = m.generate_images("a red fox", num_images=2, seed=4)
    job = m.submit_images("a red fox", num_images=2, seed=4, partial_images=2)
    previews = list(job.previews())
    result = job.result()
    assert torch.equal(result.tokens, plain.tokens) and np.array_equal(result.images, plain.images)  # unchanged
    assert [(p.image_index, p.preview_index, p.rows_done, p.rows) for p in previews] == [
        (0, 0, 2, GRID), (1, 0, 2, GRID), (0, 1, 4, GRID), (1, 1, 4, GRID)]
    for p in previews:
        assert p.image.dtype == np.uint8 and p.image.shape == result.images.shape[1:]
        want = expected_preview(m, result.tokens[p.image_index:p.image_index + 1], p.rows_done)[0]
        assert np.array_equal(p.image, want)


def test_previews_of_several_prompts_are_indexed_like_the_result(model):
    m = slowed(model)
    job = m.submit_images(["a red fox", "a green field"], num_images=2, seed=1, partial_images=1)
    previews = sorted(job.previews(), key=lambda p: p.image_index)
    result = job.result()
    assert [p.image_index for p in previews] == [0, 1, 2, 3]
    for p in previews:
        want = expected_preview(m, result.tokens[p.image_index:p.image_index + 1], p.rows_done)[0]
        assert np.array_equal(p.image, want)


def test_async_previews_equal_the_blocking_ones(model):
    m = slowed(model)
    blocking = list(m.submit_images("a cat", seed=9, partial_images=3).previews())

    async def collect():
        job = m.submit_images("a cat", seed=9, partial_images=3)
        got = [p async for p in job.apreviews()]
        return got, await job

    got, result = asyncio.run(collect())
    assert [(p.preview_index, p.rows_done) for p in got] == [(0, 1), (1, 3), (2, 4)]
    assert [(p.preview_index, p.rows_done) for p in got] == [(p.preview_index, p.rows_done) for p in blocking]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(got, blocking))
    assert result.images.shape == (1, 12, 12, 3)


def test_the_engine_does_not_wait_for_a_preview(model):
    """The engine is held at step 24 (after the first preview point, 12); the first preview still arrives: it was
    taken and rendered while the image was being drawn, not at its end."""
    backend = model.step_backend
    decode, gate, held = backend.decode, threading.Event(), threading.Event()

    def gated_decode(groups):
        if any(g.steps_done >= 24 for g in groups):
            held.set()
            assert gate.wait(WAIT_S), "the test never released the engine"
        decode(groups)

    backend.decode = gated_decode
    job = model.submit_images("a red fox", seed=2, partial_images=2)
    try:
        previews = job.previews()
        first = next(previews)
        assert held.wait(WAIT_S)  # the engine is at step 24, held
        assert not job.done() and job.rows_done() == [4]  # 24 of 36 tokens: the image is not finished
        assert (first.preview_index, first.rows_done) == (0, 2)
    finally:
        gate.set()
    rest = list(previews)
    assert [(p.preview_index, p.rows_done) for p in rest] == [(1, 4)]
    assert job.result().images.shape == (1, 12, 12, 3)


def test_a_late_reader_gets_the_newest_preview_of_each_image(model):
    """Nobody reads while the job runs (the engine finishes regardless); a reader that starts afterwards gets only
    the newest preview of each image: latest wins, none out of order."""
    job = model.submit_images("a red fox", num_images=2, seed=3, partial_images=3)
    result = job.result()
    late = list(job.previews())
    assert [(p.image_index, p.preview_index, p.rows_done) for p in late] == [(0, 2, 4), (1, 2, 4)]
    for p in late:
        want = expected_preview(model, result.tokens[p.image_index:p.image_index + 1], p.rows_done)[0]
        assert np.array_equal(p.image, want)


def test_a_cancelled_job_ends_its_previews(model):
    m = slowed(model, 0.05)
    job = m.submit_images("a red fox", seed=3, partial_images=3)
    previews = job.previews()
    next(previews)
    job.cancel()
    assert len(list(previews)) <= 2  # ends (no hang); a preview already pending may still come
    assert job.done()


def test_generate_images_passes_previews_to_a_callback(model):
    m = slowed(model)
    seen = []
    result = m.generate_images("a red fox", seed=6, partial_images=2, on_preview=seen.append)
    assert [(p.preview_index, p.rows_done) for p in seen] == [(0, 2), (1, 4)]
    assert torch.equal(result.tokens, m.generate_images("a red fox", seed=6).tokens)


def test_rows_done_and_waiting_follow_the_job(small_grid_model):
    m = slowed(with_image_grid(small_grid_model, GRID, max_rows=2))  # one image at a time
    try:
        first = m.submit_images("a red fox", seed=1)
        second = m.submit_images("a green field", seed=1)
        deadline = time.monotonic() + WAIT_S
        while first.waiting() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not first.waiting() and second.waiting()  # the second waits for the first's rows
        assert second.rows_done() == [0]
        first.result(), second.result()
        assert first.rows_done() == second.rows_done() == [GRID] and not second.waiting()
    finally:
        m.close()


def test_preview_count_is_checked_before_any_work(model):
    with pytest.raises(InputError, match=r"partial_images must be an integer in \[0, 5\]"):
        model.submit_images("a red fox", partial_images=GRID)
    assert model.stats()["prefills"] == 0
