"""Streaming detokenization (`jobs.TextDeltas`): the pieces join to the full decode of the ids, whatever they are
(multi-byte UTF-8 split across tokens, skipped special tokens), and each token costs a short decode, not one of
the whole answer (the previous version re-decoded every id at each token: O(n^2) in the answer's length)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_rt.jobs import TextDeltas
from janus_rt.checkpoint.tiny import TinySpec, build_tokenizer
from janus_rt.checkpoint.tokenizer import JanusTokenizer


class CountingTokenizer:
    """A JanusTokenizer that records how many ids each decode call was given."""

    def __init__(self, tokenizer: JanusTokenizer) -> None:
        self.tokenizer = tokenizer
        self.lengths: list[int] = []

    def decode(self, ids: list[int]) -> str:
        self.lengths.append(len(ids))
        return self.tokenizer.decode(ids)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> JanusTokenizer:
    folder: Path = tmp_path_factory.mktemp("tok")
    build_tokenizer(TinySpec()).save(str(folder / "tokenizer.json"))
    return JanusTokenizer(folder)


def stream(tokenizer, ids: list[int]) -> list[str]:
    deltas = TextDeltas(tokenizer)
    return [deltas.add(t) for t in ids] + [deltas.flush()]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_pieces_join_to_the_full_decode(tokenizer: JanusTokenizer, data: st.DataObject) -> None:
    vocab = tokenizer._tok.get_vocab_size()
    ids = data.draw(st.lists(st.integers(0, vocab - 1), max_size=40))
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == tokenizer.decode(ids)
    # a piece never ends in a character that the next token may complete (invalid bytes stay U+FFFD, as in a
    # full decode, but only once a later character shows they are not the start of one)
    assert not any(p.endswith("\ufffd") for p in pieces[:-1]), pieces


def test_multibyte_characters_come_out_whole(tokenizer: JanusTokenizer) -> None:
    text = "naïve café — 日本語 ok 🙂!"
    ids = tokenizer._tok.encode(text, add_special_tokens=False).ids
    pieces = stream(tokenizer, ids)
    assert "".join(pieces) == text and all("\ufffd" not in p for p in pieces)
    assert sum(1 for p in pieces if p) > 5  # streamed in many pieces, not at the end


def test_each_token_decodes_a_short_window(tokenizer: JanusTokenizer) -> None:
    text = "the quick brown fox jumps over the lazy dog " * 40
    ids = tokenizer._tok.encode(text, add_special_tokens=False).ids
    counting = CountingTokenizer(tokenizer)
    assert "".join(stream(counting, ids)) == text
    assert len(ids) > 300 and max(counting.lengths) <= 8, max(counting.lengths)
    assert sum(counting.lengths) <= 8 * len(ids)  # linear in the answer's length (was ~n^2 / 2)
