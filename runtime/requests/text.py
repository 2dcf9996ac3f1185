"""Checks of user text made before it is tokenized: valid Unicode, and a length bound known without tokenizing.

Tokenizing is the first costly step of a request (a 30 MB prompt takes a minute of CPU), so a text that cannot
fit is refused from its size alone: a text of B UTF-8 bytes is at least B / `max_token_bytes` tokens.
"""

from __future__ import annotations

from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.engine.capacity import CONTEXT_EXCEEDED
from janus_rt.errors import InputError


def check_text(text: str, param: str) -> int:
    """Refuse text that is not valid Unicode (a lone surrogate such as "\\ud800"); return its UTF-8 size in bytes."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InputError(f"{param} is not valid Unicode: {text[e.start:e.end]!a} at character {e.start} is half of a "
                         "UTF-16 surrogate pair; send whole characters", param=param) from None


def check_size_before_tokenizing(size_bytes: int, tokenizer: JanusTokenizer, slots: int, param: str) -> None:
    """Refuse a text of `size_bytes` bytes that is surely more than `slots` tokens, without tokenizing it."""
    per_token = tokenizer.max_token_bytes
    if per_token is None:
        return
    least = -(-size_bytes // per_token)  # ceil
    if least > slots:
        raise InputError(f"{param} is {size_bytes:,} bytes of text, at least {least:,} tokens, more than the {slots:,} "
                         "cache slots a request may use: shorten it", param=param, code=CONTEXT_EXCEEDED)
