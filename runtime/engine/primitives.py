"""What a backend provides the engine: step primitives over KV rows, nothing that knows about requests' lifetimes.

The engine (engine/core.py) owns the request loop: admission, steps, stopping, cancellation, results. A
backend implements:
    allocate(rows, max_seq_len)   KV storage for `rows` rows (+1 scratch row) and their token records
    prefill(group)                run the group's prompt into its rows; sample token 0 of each output row
    decode(groups)                one step for every row of these groups: feed each output row's last token,
                                  sample token `group.steps_done` (the engine then advances `steps_done`)
    read_tokens(group, a, b)      tokens a..b-1 of each output row, `[images, b - a]` int64 on the CPU
    snapshot_tokens(group, b)     a copy of tokens 0..b-1 of each output row, `[images, b]`, made on the device
                                  without waiting for it (a preview: the rows may be reused before it is read)
    release(group)                drop per-group state (the engine frees the rows)
    decode_pixels(tokens)         image-token ids `[N, grid*grid]` -> RGB `[N, 3, S, S]` in [-1, 1] (thread-safe)
`sync_every` says how many steps the engine may run between reads of text tokens (EOS checks, streaming):
1 where tokens are on the host anyway, more where a read is a device sync that stalls the GPU.
Optional: mark_step() -> StepMarker, a marker of the work enqueued so far, whose `synchronize()` returns once
that work has run; the engine waits on it to bound the steps in flight (see `step_marker_source`). A backend
without it gets the default: a CUDA event on CUDA, nothing elsewhere.
Every backend keeps a request's tokens independent of its batch companions (see README, "Batch invariance").
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.model.janus import JanusModel
from janus_rt.engine.request import Group


class StepBackend(Protocol):
    name: str  # the backend name given to `janus_rt.load`
    cfg: JanusConfig
    device: torch.device
    dtype: torch.dtype
    model: JanusModel | None  # the torch module tree, where the backend has one
    sync_every: int

    def allocate(self, rows: int, max_seq_len: int) -> None: ...

    def prefill(self, group: Group) -> None: ...

    def decode(self, groups: list[Group]) -> None: ...

    def read_tokens(self, group: Group, start: int, stop: int) -> torch.Tensor: ...

    def snapshot_tokens(self, group: Group, stop: int) -> torch.Tensor: ...

    def release(self, group: Group) -> None: ...

    def decode_pixels(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def describe_mode(self) -> str:
        """One line saying how this backend runs here (shown by the CLI)."""
        ...


class StepMarker(Protocol):
    """A point in the device's queue of work: `synchronize()` returns once everything enqueued before it has run."""

    def synchronize(self) -> None: ...


def step_marker_source(backend: StepBackend) -> Callable[[], StepMarker] | None:
    """What the engine calls after each decode step to mark it, or None where a step has run when `decode` returns.

    The backend's own `mark_step` where it has one (a test double of a lagging device does); else, on CUDA, a
    `torch.cuda.Event` recorded on the engine thread's current stream, where every backend enqueues its step (the
    triton backend replays its CUDA graphs there, eager modules and TensorRT launch there, ONNX Runtime syncs its
    outputs itself); else None: CPU steps (eager, or the Triton interpreter) are synchronous, so nothing is marked.
    """
    own = getattr(backend, "mark_step", None)
    if own is not None:
        return own
    if backend.device.type == "cuda":
        return _record_cuda_event
    return None


def _record_cuda_event() -> torch.cuda.Event:
    """An event recorded on the current CUDA stream (the engine thread has made the backend's device current)."""
    event = torch.cuda.Event()
    event.record()
    return event


def seeded_generator(seed: int, group_index: int, device: torch.device) -> torch.Generator:
    """The torch.multinomial stream of one group: the reference's `manual_seed(seed)` for a request's first group.

    Later groups (a request split into waves by the row budget) get their own stream, derived from the seed and
    the group index, so a group's tokens never depend on when it was admitted.
    """
    derived = seed if group_index == 0 else (seed * 1_000_003 + group_index * 7_919) % (1 << 63)
    return torch.Generator(device=device).manual_seed(derived)
