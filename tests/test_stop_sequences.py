"""Stop sequences (`Janus.chat(..., stop=)`, `submit_chat(stop=)`, `jobs.StopText`): the answer ends right before
the first occurrence of any of them, however the text pieces split it; a stream holds back at most
len(longest) - 1 characters and never shows text past a match; the engine request ends at once (its row frees),
and a streamed, an awaited and a waited-for answer agree."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from janus_rt.errors import InputError
from janus_rt.jobs import StopText
from janus_rt.requests.chat import check_stop
from serve_utils import base, ckpt, make  # noqa: F401 - fixtures

QUESTION = "Tell me about foxes."


def first_cut(text: str, stops: list[str]) -> tuple[str, str | None]:
    """The text up to the stop sequence completed first (smallest end; on a tie the one that starts earlier),
    as generation meets it: it stops at the first completed match, so a later-ending one never completes."""
    hits = [(text.find(s) + len(s), text.find(s), s) for s in stops if s in text]
    if not hits:
        return text, None
    _, at, stop = min(hits)
    return text[:at], stop


@settings(max_examples=300, deadline=None)
@given(text=st.text("abc", max_size=30), stops=st.lists(st.text("abc", min_size=1, max_size=4), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 30), max_size=10))
def test_stop_text_cuts_before_the_first_match_however_split(text, stops, cuts) -> None:
    bounds = sorted({0, len(text), *[c for c in cuts if c < len(text)]})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    cutter = StopText(tuple(stops))
    released, seen = "", ""
    for piece in pieces:
        seen += piece
        released += cutter.add(piece)
        if cutter.matched is None:
            assert len(seen) - len(released) <= max(map(len, stops)) - 1  # held back at most longest - 1
    released += cutter.flush()
    expected, stop = first_cut(text, stops)
    assert released == expected
    if stop is not None:
        assert cutter.matched is not None and text[len(expected):].startswith(cutter.matched)


def test_check_stop_takes_a_string_or_up_to_four() -> None:
    assert check_stop(None) == () and check_stop("x") == ("x",) and check_stop(["a", "b"]) == ("a", "b")
    for bad in ("", [""], ["a"] * 5, [1], 3):
        with pytest.raises(InputError) as e:
            check_stop(bad)
        assert e.value.param == "stop"


def test_chat_stops_before_the_match_and_frees_the_row(make) -> None:
    m = make()
    decode = m.step_backend.decode

    def paced_decode(groups):  # a step takes 30 ms (as on a big model), so the stop is seen ~1 step after it is met
        time.sleep(0.03)
        decode(groups)

    m.step_backend.decode = paced_decode
    full = m.chat(QUESTION, max_new_tokens=60)
    full_steps = m.stats()["decode_steps"]
    stop = next(full.text[i:i + 2] for i in range(4, len(full.text)) if full.text[i:i + 2].isalnum()
                and full.text.find(full.text[i:i + 2]) > 0)
    before = full.text[:full.text.find(stop)]
    stopped = m.chat(QUESTION, max_new_tokens=60, stop=[stop])
    assert (stopped.text, stopped.finished, stopped.stop_sequence) == (before, True, stop)
    assert stopped.token_ids == full.token_ids[:len(stopped.token_ids)]
    assert len(stopped.token_ids) < len(full.token_ids)
    stats = m.stats()
    # ended at the match: the caller cancels the request when it reads it, so the engine ran a few steps past it
    # (however loaded the machine), never to max_new_tokens
    assert len(stopped.token_ids) <= stats["decode_steps"] - full_steps < full_steps
    assert stats["active_rows"] == 0

    job = m.submit_chat(QUESTION, max_new_tokens=60, stop=stop)
    assert "".join(job.stream()) == before and job.result() == stopped

    async def awaited():
        return await m.submit_chat(QUESTION, max_new_tokens=60, stop=(stop,))

    assert asyncio.run(awaited()) == stopped
    unmatched = m.chat(QUESTION, max_new_tokens=60, stop="\x00")
    assert (unmatched.text, unmatched.finished, unmatched.stop_sequence) == (full.text, full.finished, None)
