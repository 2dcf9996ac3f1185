"""What the engine runs: a `Request` (one prompt, what the caller holds) split into `Group`s (what the batch holds).

A group is the unit of scheduling and of KV memory: rows that are admitted, stepped and freed together.
    image group: `2 * images` rows in the CFG row layout (`janus_rt.model.cfg_rows`), the reference's
                 doubled batch; one request of N images is one group when N images fit the row budget,
                 else ceil(N / per_group) groups that run in waves.
    text group:  one row (one question).
Rows of a group are contiguous in the KV pool (`first_row ...`), so a backend can take the group's cache as
a view. A group has sampled `steps_done` tokens per output row; row r's next input token sits at cache slot / RoPE
position `row_prompt_lens[r] + steps_done - 1` (no padding: every row starts at slot 0). The rows of a group share
one prompt length, except an image request with a negative prompt, whose unconditional rows hold the negative
prompt's own ids (`janus_rt.model.cfg_rows`).
An image request may ask for previews (`preview_steps`): when a group has sampled that many tokens per image, the
engine snapshots them without waiting for the device (`publish_preview`), and whoever listens renders them.

A `Request` is thread-safe to hold from any thread: `result()` blocks, `await request` suits asyncio,
`cancel()` frees its rows at the next step boundary, `stream()` / `astream()` yield text token ids as the
engine reads them back.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any, AsyncIterator, Iterator, Literal

import torch

from janus_rt.engine.params import SamplingParams, seed_bits
from janus_rt.model.cfg_rows import ROWS_PER_IMAGE, conditional_rows, rows_for_images

Kind = Literal["image", "text"]
_ids = itertools.count(1)
_END = object()  # end-of-stream marker


@dataclass(eq=False)
class Group:
    """Rows admitted together (see the module docstring)."""

    request: "Request"
    images: int  # output rows: images of this group (image) or 1 (text)
    first_image: int  # index of its first image within the request (result order, per-image seeds)
    index: int  # position among the request's groups (per-group generator seeds)
    first_row: int = -1  # pool row of its first KV row, -1 while waiting
    steps_done: int = 0  # tokens sampled per output row so far
    fetched: int = 0  # tokens per output row already read back to the host
    state: Any = None  # backend-owned (a torch.Generator, an ONNX past cache, ...)
    previews_taken: int = 0  # how many of the request's `preview_steps` this group has snapshotted

    @property
    def kind(self) -> Kind:
        return self.request.kind

    @property
    def rows(self) -> int:
        return rows_for_images(self.images) if self.kind == "image" else 1

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def prompt_len(self) -> int:
        """The longest prompt among the group's rows (what its rows need of the cache before sampling)."""
        return max(self.request.prompt_lens)

    @property
    def row_prompt_lens(self) -> list[int]:
        """Prompt length of each of the group's rows, in row order."""
        lens = self.request.prompt_lens
        return lens * self.images if self.kind == "image" else lens

    @property
    def uniform(self) -> bool:
        """Every row has the same prompt length (always, but for an image request with a negative prompt)."""
        return len(set(self.request.prompt_lens)) == 1

    @property
    def max_steps(self) -> int:
        return self.request.max_steps

    def row_sets(self) -> list[tuple[slice, int]]:
        """The group's rows split by prompt length: (rows of the group, their prompt length) for each length.
        One set for every group but an image group with a negative prompt: its conditional rows (0::2) and its
        unconditional rows (1::2)."""
        if self.uniform:
            return [(slice(0, self.rows), self.prompt_len)]
        cond, uncond = self.request.prompt_lens
        return [(slice(0, self.rows, ROWS_PER_IMAGE), cond), (slice(1, self.rows, ROWS_PER_IMAGE), uncond)]

    def positions(self) -> list[int]:
        """Cache slot and RoPE position of each row's next input token (the last sampled one)."""
        return [length + self.steps_done - 1 for length in self.row_prompt_lens]

    @property
    def done(self) -> bool:
        return self.steps_done >= self.max_steps

    def out_rows(self) -> list[int]:
        """Pool rows holding each output row's tokens: the conditional row of each image, or the text row."""
        return conditional_rows(self.first_row, self.images) if self.kind == "image" else [self.first_row]

    def seeds(self) -> list[int]:
        """Per output row seed of the fused sampler's Philox stream: the request's seed + the image index."""
        return [seed_bits(self.request.seed + self.first_image + i) for i in range(self.images)]  # int64 bits


class Request:
    """One submitted prompt: image tokens for `num_images` images, or one text answer (see module docstring)."""

    def __init__(self, kind: Kind, prompt_ids: list[int], params: SamplingParams, *, max_steps: int,
                 num_images: int = 1, pad_id: int = 0, pixel_values: torch.Tensor | None = None,
                 eos_id: int = -1, placeholder_id: int = -1, seed: int = 0,
                 negative_ids: list[int] | None = None, preview_steps: tuple[int, ...] = ()):
        self.id = next(_ids)
        self.kind: Kind = kind
        self.prompt_ids = list(prompt_ids)  # image: BOS ... <begin_of_image>; text: image placeholders expanded
        # image: the unconditional rows' own prompt (a negative prompt, formatted like the prompt); None = the
        # reference's pad-filled copy of the prompt
        self.negative_ids = list(negative_ids) if negative_ids is not None else None
        self.preview_steps = tuple(preview_steps)  # image: tokens per image at which a preview snapshot is taken
        self.previews: list[PreviewSnapshot] = []  # snapshots published so far (image)
        self.params = params
        self.seed = seed  # params.seed, or the fresh one drawn at submission
        self.max_steps = max_steps  # tokens per output row: the image grid, or max_new_tokens
        self.num_images = num_images if kind == "image" else 1
        self.pad_id = pad_id  # fills the unconditional rows' prompt (image)
        self.pixel_values = pixel_values  # [n, 3, S, S] images spliced into a text prompt
        self.eos_id = eos_id  # ends a text answer (not part of it)
        self.placeholder_id = placeholder_id  # the prompt ids that take `pixel_values`' embeddings (text)
        self.groups: list[Group] = []
        self.image_tokens = torch.zeros(self.num_images, max_steps, dtype=torch.long) if kind == "image" else None
        self.text_tokens: list[int] = []  # the answer so far (EOS excluded)
        self.finished_by_eos = False
        self._future: Future = Future()
        self._lock = threading.Lock()
        self._listeners: list[tuple[asyncio.AbstractEventLoop | None, Any]] = []
        self._cancel = threading.Event()
        self._groups_left = 0
        self.submitted_at = time.monotonic()  # when it was made (submission); the server's queue-wait / TTFT origin
        self.admitted_at: float | None = None  # when its first group got KV rows (its first prefill began)
        self.first_token_at: float | None = None  # when its first token was sampled (first prefill done)

    # ---------------------------------------------------------------------------------- caller side
    def result(self, timeout: float | None = None) -> Any:
        """Block until done: image tokens `[N, grid*grid]` (cpu int64), or (answer ids, finished by EOS)."""
        return self._future.result(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the request is done (finished, failed or cancelled), without raising its error."""
        try:
            self._future.exception(timeout)
        except CancelledError:
            pass

    def __await__(self):
        return asyncio.wrap_future(self._future).__await__()

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def cancel(self) -> None:
        """Ask the engine to drop this request; its rows are freed at the next step boundary."""
        self._cancel.set()
        engine_wake = getattr(self, "_wake", None)
        if engine_wake is not None:
            engine_wake()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    @property
    def progress(self) -> int:
        """Tokens sampled so far, over all output rows (read without locking: a progress bar's figure)."""
        return sum(g.steps_done * g.images for g in self.groups)

    @property
    def total_tokens(self) -> int:
        return self.max_steps * self.num_images

    @property
    def prompt_lens(self) -> list[int]:
        """Prompt length of each row of one image's CFG pair (conditional, unconditional), or of the text row."""
        if self.kind != "image":
            return [len(self.prompt_ids)]
        uncond = len(self.prompt_ids) if self.negative_ids is None else len(self.negative_ids)
        return [len(self.prompt_ids), uncond]

    def stream(self) -> Iterator[Any]:
        """Text token ids as the engine reads them back (EOS excluded), or an image request's preview snapshots;
        ends when the request ends."""
        q: queue.Queue = queue.Queue()
        self._listen(None, q)
        while True:
            item = q.get()
            if item is _END:
                break
            yield item

    async def astream(self) -> AsyncIterator[Any]:
        """`stream()` for asyncio; cancelling the consumer does not cancel the request (call `cancel()`)."""
        q: asyncio.Queue = asyncio.Queue()
        self._listen(asyncio.get_running_loop(), q)
        while True:
            item = await q.get()
            if item is _END:
                break
            yield item

    END = _END  # what a listener's queue receives last (`listen`)

    @property
    def failed(self) -> bool:
        """Done with an error (not finished, not cancelled)."""
        return self._future.done() and not self._future.cancelled() and self._future.exception() is not None

    def listen(self, loop: asyncio.AbstractEventLoop | None, q: Any) -> None:
        """Send what the request publishes (text ids, or preview snapshots; those published already first) to `q`,
        then `Request.END`: `q.put(item)` from the engine thread when `loop` is None, else `q.put_nowait(item)` on
        `loop` (an asyncio queue). `stream()` / `astream()` are built on it."""
        self._listen(loop, q)

    def _listen(self, loop: asyncio.AbstractEventLoop | None, q: Any) -> None:
        with self._lock:
            for item in (self.text_tokens if self.kind == "text" else self.previews):
                self._put(loop, q, item)
            if self._future.done():
                self._put(loop, q, _END)
            else:
                self._listeners.append((loop, q))

    @staticmethod
    def _put(loop: asyncio.AbstractEventLoop | None, q: Any, item: object) -> None:
        if loop is None:
            q.put(item)
        else:
            loop.call_soon_threadsafe(q.put_nowait, item)

    # ---------------------------------------------------------------------------------- engine side
    def publish_text(self, tokens: list[int]) -> bool:
        """Append newly read tokens of the text row; True when EOS (or the length cap) ended the answer."""
        with self._lock:
            for tid in tokens:
                if tid == self.eos_id:
                    self.finished_by_eos = True
                    break
                self.text_tokens.append(tid)
                for loop, q in self._listeners:
                    self._put(loop, q, tid)
        return self.finished_by_eos

    def publish_preview(self, snapshot: "PreviewSnapshot") -> None:
        """Hand a preview snapshot to every listener (never blocks: the engine thread calls it)."""
        with self._lock:
            self.previews.append(snapshot)
            for loop, q in self._listeners:
                self._put(loop, q, snapshot)

    def group_finished(self) -> bool:
        """One group is done; True when it was the last one (then call `finish`)."""
        self._groups_left -= 1
        return self._groups_left == 0

    def finish(self, error: BaseException | None = None) -> None:
        """Resolve the future (result, error, or cancelled) and end every stream."""
        with self._lock:
            if not self._future.done():
                if error is not None:
                    self._future.set_exception(error)
                elif self._cancel.is_set():
                    self._future.cancel()
                elif self.kind == "image":
                    self._future.set_result(self.image_tokens)
                else:
                    self._future.set_result((list(self.text_tokens), self.finished_by_eos))
            for loop, q in self._listeners:
                self._put(loop, q, _END)
            self._listeners.clear()


@dataclass(frozen=True)
class PreviewSnapshot:
    """The tokens a group had drawn when a preview was due, copied on the device without waiting for it.

    `tokens` may still be being computed when this arrives: call `ready()` (it waits for the device, in the
    caller's thread) before reading it."""

    first_image: int  # the group's first image within its request
    preview_index: int  # which of the request's `preview_steps`
    steps: int  # tokens per image drawn (the first `steps` of the raster order)
    tokens: torch.Tensor  # [images, steps] int64 on the backend's device (a copy: the rows may be reused)
    marker: Any = None  # a StepMarker enqueued after the copy (None: the copy is already done)

    def ready(self) -> torch.Tensor:
        """The tokens on the CPU `[images, steps]`, once the device has made them."""
        if self.marker is not None:
            self.marker.synchronize()
        return self.tokens.cpu()


@dataclass
class EngineStats:
    """Counters since the engine started (what `Janus.stats()` returns as a dict)."""

    decode_steps: int = 0  # decode steps run
    prefills: int = 0  # groups prefilled
    peak_rows: int = 0  # most KV rows in one decode step
    active_rows: int = 0  # rows in the running batch now
    queued_requests: int = 0  # requests waiting for rows
    finished_requests: int = 0
    cancelled_requests: int = 0
    failed_requests: int = 0
    tokens_sampled: int = 0  # output-row tokens, prefill tokens included


__all__ = ["CancelledError", "EngineStats", "Group", "PreviewSnapshot", "Request"]
