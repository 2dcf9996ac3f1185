"""Caller-side handles of submitted work: `ImageJob` (prompts -> images) and `ChatJob` (question -> answer).

A job wraps the engine's token-level `Request`s and turns their tokens into what the API returns: pixels
(decoded in the caller's thread, or in an executor when awaited, so the engine thread keeps stepping) and
text. Each job can be waited on (`result()`), awaited (`await job`), cancelled (`cancel()`); a chat job
also streams text (`stream()`, `astream()`); an image job asked for previews yields them as they are drawn
(`previews()`, `apreviews()`: janus_rt/previews.py) and tells how far each image is (`rows_done()`, `waiting()`).

Stop sequences (a chat job's `stop`): the answer ends right before the one completed first (as generation meets it), the match
itself not returned, and the job then counts as finished (`ChatResult.finished`, `stop_sequence`). Whoever waits
on the job (`result()`, `await job`, `stream()`, `astream()`) watches the text as it is decoded and cancels the
engine request at the first match, so its row frees at the next step boundary; a stream holds back only a tail
that could still start a match (at most len(longest stop) - 1 characters), so it never emits text past one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from janus_rt.engine.request import Request
from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.previews import Preview, PreviewReader


@dataclass
class ImageResult:
    tokens: torch.LongTensor  # [N, grid*grid] image-token ids, raster order (prompt order, num_images each)
    images: np.ndarray  # uint8 [N, S, S, 3]
    prompt: str | list[str]  # the exact text tokenized (a list when a list of prompts was given)


@dataclass
class ChatResult:
    text: str  # decoded answer, special tokens skipped
    token_ids: list[int]  # new tokens only, EOS excluded
    finished: bool  # True when EOS or a stop sequence ended the answer, False when max_new_tokens did
    prompt: str  # the exact text that was tokenized (before placeholder expansion)
    stop_sequence: str | None = None  # the stop sequence that ended the answer (not part of `text`), if one did


def wait_with_progress(requests: list[Request], progress: bool, desc: str, unit: str) -> None:
    """Block until every request is done; on `progress`, a bar of sampled tokens (polled, engine-thread free)."""
    if not progress:
        for r in requests:
            r.wait()  # the error, if any, is raised by result()
        return
    total = sum(r.total_tokens for r in requests)
    with tqdm(total=total, desc=desc, unit=unit, leave=False) as bar:
        while not all(r.done() for r in requests):
            time.sleep(0.05)
            bar.n = min(sum(r.progress for r in requests), total)
            bar.refresh()


class ImageJob:
    """Images of one or more prompts in flight (see module docstring)."""

    def __init__(self, requests: list[Request], prompts: list[str], single: bool,
                 decode: Callable[[torch.Tensor], np.ndarray], grid: int):
        self.requests = requests  # one per prompt, each of the same number of images
        self.prompts = prompts
        self.single = single  # a single prompt string was given (ImageResult.prompt is then a string)
        self.grid = grid  # token rows (and columns) of an image
        self._decode = decode

    @property
    def num_images(self) -> int:
        return sum(r.num_images for r in self.requests)

    def previews(self) -> Iterator[Preview]:
        """The previews asked for (`partial_images`), rendered as they come; ends when every image is done. A slow
        consumer sees only the newest preview of each image (the engine never waits): fewer may come, in order."""
        return iter(self._reader())

    def apreviews(self) -> AsyncIterator[Preview]:
        """`previews()` for asyncio (rendered in an executor); cancelling the consumer does not cancel the job."""
        return self._reader().aiter()

    def _reader(self) -> PreviewReader:
        return PreviewReader(self.requests, self.requests[0].num_images, self.grid, self._decode)

    def rows_done(self) -> list[int]:
        """Token rows drawn so far of each image (prompt-major order), 0..grid; read without locks."""
        done = []
        for r in self.requests:
            per_image = [0] * r.num_images
            for g in r.groups:
                steps = r.max_steps if r.done() and not r.cancel_requested and not r.failed else g.steps_done
                per_image[g.first_image:g.first_image + g.images] = [steps // self.grid] * g.images
            done += per_image
        return done

    def waiting(self) -> bool:
        """True while none of the job's images has started (its requests wait for KV rows)."""
        return all(r.admitted_at is None for r in self.requests) and not self.done()

    def _build(self) -> ImageResult:
        tokens = torch.cat([r.result() for r in self.requests])  # [N, grid*grid]
        return ImageResult(tokens=tokens, images=self._decode(tokens),
                           prompt=self.prompts[0] if self.single else list(self.prompts))

    def result(self, progress: bool = False) -> ImageResult:
        wait_with_progress(self.requests, progress, "image tokens", "tok")
        return self._build()

    def __await__(self):
        return self._async_result().__await__()

    async def _async_result(self) -> ImageResult:
        for r in self.requests:
            await r
        return await asyncio.get_running_loop().run_in_executor(None, self._build)

    def cancel(self) -> None:
        for r in self.requests:
            r.cancel()

    def done(self) -> bool:
        return all(r.done() for r in self.requests)


class ChatJob:
    """One answer in flight (see module docstring)."""

    def __init__(self, request: Request, prompt: str, tokenizer: JanusTokenizer, stop: tuple[str, ...] = ()):
        self.request = request
        self.prompt = prompt
        self.stop = tuple(stop)  # checked by `janus_rt.requests.chat.check_stop`
        self._tokenizer = tokenizer
        self._stopped = False  # a stop sequence matched and this job cancelled the engine request

    def _build(self) -> ChatResult:
        if self._stopped and self.request.cancelled():  # ended by its stop sequence: the tokens read so far
            ids, finished = list(self.request.text_tokens), True
        else:
            ids, finished = self.request.result()
        if not self.stop:
            return ChatResult(text=self._tokenizer.decode(ids), token_ids=ids, finished=finished, prompt=self.prompt)
        text, used, matched = cut_at_stop(self._tokenizer, ids, self.stop)
        return ChatResult(text=text, token_ids=ids[:used], finished=finished or matched is not None,
                          prompt=self.prompt, stop_sequence=matched)

    def result(self, progress: bool = False) -> ChatResult:
        """Wait for the answer; `progress` draws a bar of decoded tokens (out of max_new_tokens) meanwhile."""
        if self.stop:
            with tqdm(total=self.request.total_tokens, desc="answer", unit="tok", leave=False,
                      disable=not progress) as bar:
                for _ in self.stream():  # watches for the stop sequences
                    bar.n = min(self.request.progress, bar.total)
                    bar.refresh()
            self.request.wait()
        else:
            wait_with_progress([self.request], progress, "answer", "tok")
        return self._build()

    def __await__(self):
        return self._async_result().__await__()

    async def _async_result(self) -> ChatResult:
        if self.stop:
            async for _ in self.astream():  # watches for the stop sequences
                pass
            async for _ in self.request.astream():  # until the engine has dropped it (no error raised)
                pass
        else:
            await self.request
        return self._build()

    def cancel(self) -> None:
        self.request.cancel()

    def done(self) -> bool:
        return self.request.done()

    def stream(self) -> Iterator[str]:
        """Text pieces as the engine produces them; their concatenation is the final `text`."""
        pieces = self._pieces()
        for tid in self.request.stream():
            piece = pieces.add(tid)
            if piece:
                yield piece
            if pieces.matched is not None:
                self._stop_request()
                return
        if tail := pieces.flush():
            yield tail

    async def astream(self) -> AsyncIterator[str]:
        """`stream()` for asyncio."""
        pieces = self._pieces()
        async for tid in self.request.astream():
            piece = pieces.add(tid)
            if piece:
                yield piece
            if pieces.matched is not None:
                self._stop_request()
                return
        if tail := pieces.flush():
            yield tail

    def _pieces(self) -> "StoppedText":
        return StoppedText(TextDeltas(self._tokenizer), StopText(self.stop))

    def _stop_request(self) -> None:
        if not self.request.done():
            self._stopped = True
            self.request.cancel()


def cut_at_stop(tokenizer: JanusTokenizer, ids: list[int], stop: tuple[str, ...]) -> tuple[str, int, str | None]:
    """(the answer's text cut before the first stop sequence, how many ids it took, the sequence or None): what
    a stream of these ids yields, so a streamed and a waited-for answer agree."""
    pieces = StoppedText(TextDeltas(tokenizer), StopText(stop))
    out = []
    for used, tid in enumerate(ids, start=1):
        out.append(pieces.add(tid))
        if pieces.matched is not None:
            return "".join(out), used, pieces.matched
    out.append(pieces.flush())
    return "".join(out), len(ids), None


class StopText:
    """Text pieces in, the same text out, cut right before the stop sequence that is completed first.

    A piece is released once no stop sequence can start in it: the longest tail of the text so far that is the
    beginning of a stop sequence is held back (at most len(longest) - 1 characters) until the next piece settles
    it. So the first match is found wherever the pieces split it, and no released text follows it."""

    def __init__(self, stop: tuple[str, ...]):
        self.stop = stop
        self.longest = max((len(s) for s in stop), default=0)
        self.pending = ""  # text received but not released: a possible beginning of a match
        self.matched: str | None = None  # the stop sequence found (then everything after it is dropped)

    def add(self, piece: str) -> str:
        if self.matched is not None or not self.stop:
            return "" if self.matched is not None else piece
        self.pending += piece
        # the first stop sequence to complete ends the answer (generation stops there, so one that would end later
        # never completes): the smallest end, then the earliest start
        found = [(at + len(s), at, i) for i, s in enumerate(self.stop) if (at := self.pending.find(s)) >= 0]
        if found:
            _, at, i = min(found)
            self.matched = self.stop[i]
            released, self.pending = self.pending[:at], ""
            return released
        held = self._held()
        released = self.pending[:len(self.pending) - held]
        self.pending = self.pending[len(released):]
        return released

    def _held(self) -> int:
        for size in range(min(self.longest - 1, len(self.pending)), 0, -1):
            tail = self.pending[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

    def flush(self) -> str:
        """The held-back tail once the answer has ended without a match."""
        released, self.pending = ("" if self.matched is not None else self.pending), ""
        return released


class StoppedText:
    """Token ids -> text pieces: incremental detokenization (`TextDeltas`) then the stop sequences (`StopText`)."""

    def __init__(self, deltas: "TextDeltas", stops: StopText):
        self.deltas = deltas
        self.stops = stops

    @property
    def matched(self) -> str | None:
        return self.stops.matched

    def add(self, tid: int) -> str:
        return self.stops.add(self.deltas.add(tid))

    def flush(self) -> str:
        return self.stops.add(self.deltas.flush()) + self.stops.flush()


class TextDeltas:
    """Incremental detokenization: the new text each token adds, holding back an unfinished UTF-8 sequence.

    Each call decodes a short window, never the whole answer (which made streaming O(n^2) in the answer's
    length): the ids from `prefix` to the end, where [prefix, read) are the tokens of the text returned last (kept
    as context, so that a decoder which treats a sequence's first token specially treats both decodes alike) and
    [read, end) the tokens not yet returned. The new text is what the window decodes to beyond [prefix, read)'s
    text. While the window ends inside a UTF-8 sequence (the decode ends in U+FFFD) or adds no text (a skipped
    special token), nothing is returned and the window grows; once text comes out, it slides forward. The pieces
    join to the full decode of the ids."""

    def __init__(self, tokenizer: JanusTokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0  # first id of the window: the tokens of the text returned last start here
        self.read = 0  # ids before this one have been returned as text
        self.returned = ""  # the decode of ids [prefix, read): fixed until the window slides

    def add(self, tid: int) -> str:
        self.ids.append(tid)
        return self._advance(final=False)

    def flush(self) -> str:
        """What is left after the last token (an unfinished UTF-8 sequence comes out as U+FFFD, as in a full
        decode)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        window = self.tokenizer.decode(self.ids[self.prefix:])
        if not final and (window.endswith("\ufffd") or len(window) <= len(self.returned)):
            return ""
        piece = window[len(self.returned):]
        self.prefix, self.read = self.read, len(self.ids)
        self.returned = self.tokenizer.decode(self.ids[self.prefix:self.read])
        return piece
