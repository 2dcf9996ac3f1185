"""How many cache slots a request takes in one KV row, and the one check that it fits (every caller's).

A row holds its prompt and every sampled token but the last (the last one is never fed back), so a prompt of
`L` tokens that samples `N` more needs `L + N - 1` slots, at RoPE positions `0 .. L + N - 2`. Both the
engine's row size (`max_seq_len`) and the model's context (its position table) bound that; the smaller wins.
Image requests sample the image grid (`N = grid * grid`), text requests `max_new_tokens`.
"""

from __future__ import annotations

from dataclasses import dataclass

from janus_rt.errors import InputError
from janus_rt.spelling import API, Spelling

CONTEXT_EXCEEDED = "context_length_exceeded"  # InputError.code of every refusal below


@dataclass(frozen=True)
class RowCapacity:
    """The slots one request may use: the engine's `max_seq_len` and the model's `context`."""

    max_seq_len: int  # KV slots of one engine row
    context: int  # positions of the model (max_position_embeddings)

    @property
    def slots(self) -> int:
        """Most slots one request may fill: the row, or the model's context when that is smaller."""
        return min(self.max_seq_len, self.context)

    def limits(self) -> str:
        return f"{self.slots} cache slots (the model's context is {self.context}, the engine's rows hold {self.max_seq_len})"

    def room(self, prompt_len: int) -> int:
        """Most tokens a prompt of `prompt_len` tokens may sample (< 1: not even one)."""
        return self.slots - prompt_len + 1

    def check_image(self, prompt_len: int, image_tokens: int, spelling: Spelling = API, field: str = "prompt") -> None:
        """Refuse an image prompt (or negative prompt: `field`) whose `image_tokens` sampled tokens do not fit after it."""
        need = prompt_len + image_tokens - 1
        if need > self.slots:
            name = "prompt" if field == "prompt" else spelling.name(field)
            raise InputError(f"the {name} is {prompt_len} tokens; with {image_tokens} image tokens it needs {need} "
                             f"cache slots, more than the {self.limits()}: shorten the {name} (to at most "
                             f"{self.slots - image_tokens + 1} tokens) or load with a larger {spelling.name('max_seq_len')}",
                             param=field, code=CONTEXT_EXCEEDED)

    def check_text(self, prompt_len: int, max_new_tokens: int, spelling: Spelling = API) -> None:
        """Refuse a text prompt (images included) that leaves no room for `max_new_tokens` tokens."""
        room = self.room(prompt_len)
        if room < 1:
            raise InputError(f"the prompt is {prompt_len} tokens (images included), which leaves no room for an "
                             f"answer in the {self.limits()}: shorten the prompt (to at most {self.slots} tokens, "
                             "images included) or send fewer images",
                             param="prompt", code=CONTEXT_EXCEEDED)
        if max_new_tokens > room:
            name = spelling.name("max_new_tokens")
            raise InputError(f"the prompt is {prompt_len} tokens (images included); with {name}={max_new_tokens} "
                             f"it needs {prompt_len + max_new_tokens - 1} cache slots, more than the {self.limits()}: ask "
                             f"for at most {room} tokens, shorten the prompt or load with a larger {spelling.name('max_seq_len')}",
                             param="max_new_tokens", code=CONTEXT_EXCEEDED)
