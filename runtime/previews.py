"""Previews of images being drawn: which rows, how they are rendered, and the reader that renders them.

Janus draws an image's tokens in raster order, `grid` rows of `grid` tokens. A request asking for K previews
(`preview_steps`) gets them after `floor(grid * (k + 1) / (K + 1))` rows, k = 0..K-1: evenly spaced, each before the
last row. The engine snapshots the drawn tokens on the device at those points and goes on (engine/core.py);
`PreviewReader` renders them in the consumer's thread (or an executor, when iterated with `async for`).

How a preview shows the rows not yet drawn: the VQ decoder needs a full grid (its mid blocks attend over the whole
image and the exported decoders have a fixed shape), so each undrawn row takes a copy of the last drawn row, which
keeps the decoder's view of the drawn rows close to what it will be; the pixels below the drawn rows are then
painted flat gray, so a preview never shows pixels that no sampled token decided. The final image is decoded from the
final tokens alone: a preview never changes tokens or pixels.

Latest wins: the engine never waits for a preview, and when the reader falls behind (several snapshots of one image
pending when it wakes) it renders only the newest. So fewer than K previews may arrive, never one out of order.
"""

from __future__ import annotations

import asyncio
import queue
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator

import numpy as np
import torch

from janus_rt.engine.request import PreviewSnapshot, Request
from janus_rt.errors import InputError

UNDRAWN_GRAY = 128  # the value of every channel of the pixels below the drawn rows


@dataclass(frozen=True)
class Preview:
    """One preview of one image of a job."""

    image_index: int  # which image of the job (prompt-major, as `ImageResult.images`)
    preview_index: int  # 0..K-1 for that image
    rows_done: int  # token rows drawn when it was taken (< rows)
    rows: int  # token rows of a whole image (the grid)
    image: np.ndarray  # uint8 [S, S, 3]; the pixels below the drawn rows are flat gray


def preview_steps(partial_images: object, grid: int, param: str = "partial_images") -> tuple[int, ...]:
    """Tokens per image after which each of `partial_images` previews is taken (see the module docstring)."""
    if not isinstance(partial_images, int) or isinstance(partial_images, bool) or not 0 <= partial_images < grid:
        raise InputError(f"{param} must be an integer in [0, {grid - 1}] (previews come after whole token rows, before "
                         f"the last of the {grid}), got {partial_images!r}", param=param)
    return tuple(grid * (grid * (k + 1) // (partial_images + 1)) for k in range(partial_images))


def fill_undrawn(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """`[P, rows_done * grid]` drawn tokens -> `[P, grid * grid]`: each undrawn row a copy of the last drawn one."""
    drawn = tokens.view(tokens.shape[0], -1, grid)  # [P, rows_done, grid]
    rest = drawn[:, -1:].expand(-1, grid - drawn.shape[1], -1)  # [P, grid - rows_done, grid]
    return torch.cat([drawn, rest], dim=1).reshape(tokens.shape[0], grid * grid)  # [P, grid*grid]


def gray_undrawn(images: np.ndarray, rows_done: int, grid: int) -> np.ndarray:
    """Paint the pixels below the first `rows_done` token rows flat gray (uint8 `[P, S, S, 3]`, in place)."""
    images[:, images.shape[1] * rows_done // grid:] = UNDRAWN_GRAY
    return images


class _Tagged:
    """A queue front that tags each item with the request it came from (a `Request.listen` target)."""

    def __init__(self, target: queue.Queue | asyncio.Queue, tag: int):
        self.target, self.tag = target, tag

    def put(self, item: object) -> None:
        self.target.put((self.tag, item))

    def put_nowait(self, item: object) -> None:
        self.target.put_nowait((self.tag, item))


class PreviewReader:
    """Renders the preview snapshots of a job's requests (one per prompt, `per_request` images each)."""

    def __init__(self, requests: list[Request], per_request: int, grid: int,
                 decode: Callable[[torch.Tensor], np.ndarray]):
        self.requests = requests
        self.per_request = per_request
        self.grid = grid
        self.decode = decode  # [N, grid*grid] tokens -> uint8 [N, S, S, 3]
        self._pending: dict[tuple[int, int], PreviewSnapshot] = {}  # (request, group's first image) -> newest
        self._ended = 0

    def render(self, tag: int, snapshot: PreviewSnapshot) -> list[Preview]:
        """The previews of one snapshot, one per image of its group (waits for the device, then decodes)."""
        tokens = snapshot.ready()  # [P, steps]
        rows_done = snapshot.steps // self.grid
        images = gray_undrawn(self.decode(fill_undrawn(tokens, self.grid)), rows_done, self.grid)  # [P, S, S, 3]
        first = tag * self.per_request + snapshot.first_image
        return [Preview(first + i, snapshot.preview_index, rows_done, self.grid, image)
                for i, image in enumerate(images)]

    def _absorb(self, items: list[tuple[int, object]]) -> None:
        for tag, item in items:
            if item is Request.END:
                self._ended += 1
                request = self.requests[tag]
                if request.cancel_requested or request.failed:  # nothing to preview any more
                    self._pending = {k: v for k, v in self._pending.items() if k[0] != tag}
            else:
                assert isinstance(item, PreviewSnapshot)
                self._pending[(tag, item.first_image)] = item  # latest wins

    def _advance(self, items: list[tuple[int, object]]) -> tuple[int, PreviewSnapshot] | None:
        """Take in what arrived; the oldest pending snapshot to render now, or None when nothing is pending."""
        self._absorb(items)
        if not self._pending:
            return None
        key = next(iter(self._pending))
        return key[0], self._pending.pop(key)

    @property
    def _finished(self) -> bool:
        return self._ended == len(self.requests) and not self._pending

    @property
    def _must_wait(self) -> bool:
        """Nothing to render and a request still running: block until it publishes something."""
        return not self._pending and self._ended < len(self.requests)

    def __iter__(self) -> Iterator[Preview]:
        q: queue.Queue = queue.Queue()
        for tag, request in enumerate(self.requests):
            request.listen(None, _Tagged(q, tag))
        while not self._finished:
            job = self._advance(([q.get()] if self._must_wait else []) + _drain(q))
            if job is not None:
                yield from self.render(*job)

    async def aiter(self) -> AsyncIterator[Preview]:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        for tag, request in enumerate(self.requests):
            request.listen(loop, _Tagged(q, tag))
        while not self._finished:
            job = self._advance(([await q.get()] if self._must_wait else []) + _drain(q))
            if job is not None:
                for preview in await loop.run_in_executor(None, self.render, *job):
                    yield preview


def _drain(q: queue.Queue | asyncio.Queue) -> list:
    """Everything already in `q`, without waiting."""
    items = []
    while not q.empty():
        items.append(q.get_nowait())
    return items
