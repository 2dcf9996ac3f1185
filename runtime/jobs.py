"""Caller-side handles of submitted work: `ImageJob` (prompts -> images) and `ChatJob` (question -> answer).

A job wraps the engine's token-level `Request`s and turns their tokens into what the API returns: pixels
(decoded in the caller's thread, or in an executor when awaited, so the engine thread keeps stepping) and
text. Each job can be waited on (`result()`), awaited (`await job`), cancelled (`cancel()`); a chat job
also streams text (`stream()`, `astream()`).
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


@dataclass
class ImageResult:
    tokens: torch.LongTensor  # [N, grid*grid] image-token ids, raster order (prompt order, num_images each)
    images: np.ndarray  # uint8 [N, S, S, 3]
    prompt: str | list[str]  # the exact text tokenized (a list when a list of prompts was given)


@dataclass
class ChatResult:
    text: str  # decoded answer, special tokens skipped
    token_ids: list[int]  # new tokens only, EOS excluded
    finished: bool  # True when EOS ended the answer, False when max_new_tokens did
    prompt: str  # the exact text that was tokenized (before placeholder expansion)


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
                 decode: Callable[[torch.Tensor], np.ndarray]):
        self.requests = requests
        self.prompts = prompts
        self.single = single  # a single prompt string was given (ImageResult.prompt is then a string)
        self._decode = decode

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

    def __init__(self, request: Request, prompt: str, tokenizer: JanusTokenizer):
        self.request = request
        self.prompt = prompt
        self._tokenizer = tokenizer

    def _build(self) -> ChatResult:
        ids, finished = self.request.result()
        return ChatResult(text=self._tokenizer.decode(ids), token_ids=ids, finished=finished, prompt=self.prompt)

    def result(self, progress: bool = False) -> ChatResult:
        """Wait for the answer; `progress` draws a bar of decoded tokens (out of max_new_tokens) meanwhile."""
        wait_with_progress([self.request], progress, "answer", "tok")
        return self._build()

    def __await__(self):
        return self._async_result().__await__()

    async def _async_result(self) -> ChatResult:
        await self.request
        return self._build()

    def cancel(self) -> None:
        self.request.cancel()

    def done(self) -> bool:
        return self.request.done()

    def stream(self) -> Iterator[str]:
        """Text pieces as the engine produces them; their concatenation is the final `text`."""
        decoder = TextDeltas(self._tokenizer)
        for tid in self.request.stream():
            piece = decoder.add(tid)
            if piece:
                yield piece
        if tail := decoder.flush():
            yield tail

    async def astream(self) -> AsyncIterator[str]:
        """`stream()` for asyncio."""
        decoder = TextDeltas(self._tokenizer)
        async for tid in self.request.astream():
            piece = decoder.add(tid)
            if piece:
                yield piece
        if tail := decoder.flush():
            yield tail


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
