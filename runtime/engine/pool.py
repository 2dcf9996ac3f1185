"""KV rows: how many the memory budget allows (`plan_rows`) and which are free (`RowPool`).

A row is one sequence's KV cache, `max_seq_len` slots deep in every layer, plus its token record. The
budget is fixed when the engine starts, so the engine never allocates KV memory past it:
    CUDA: rows = (gpu_memory_utilization * total - memory in use - activation_reserve) / bytes per row
    CPU:  rows = cpu_max_rows (the host has no such measure worth trusting; a cap instead)
Both are overridden by an explicit `max_rows`. Groups take contiguous rows (first fit), so a backend
can hand a group's cache to the model as a view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import torch

from janus_rt.model.config import LLMConfig
from janus_rt.errors import InputError
from janus_rt.spelling import API, Spelling, build_in_words

GiB = 1 << 30


@dataclass(frozen=True)
class EngineConfig:
    """The engine's knobs (`janus_rt.load(..., engine=EngineConfig(...))`), validated once, when built."""

    max_rows: int | None = None  # KV rows (2 per image in flight, 1 per answer); None = from the budget below
    max_seq_len: int | None = None  # slots per row (prompt + generated); None = min(context, 2048)
    gpu_memory_utilization: float = 0.90  # fraction of the GPU's total memory janus-rt may hold in all
    activation_reserve_gib: float = 2.0  # left free for activations (prefill, SigLIP, VQ decode) on CUDA
    cpu_max_rows: int = 16  # the row cap on CPU
    row_limit: int = 256  # never more rows than this (the largest CUDA-graph bucket)
    spelling: Spelling = field(default=API, compare=False, repr=False)  # how later refusals name these knobs

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def checked(cls, spelling: Spelling = API, **fields: object) -> "EngineConfig":
        """Build one (validated once); a bad knob is reported in `spelling` (the CLI's flags, the API's keywords)."""
        return build_in_words(cls, {**fields, "spelling": spelling}, spelling,
                              lambda values, words: cls.validate(SimpleNamespace(**values), words))

    def validate(self, spelling: Spelling = API) -> None:
        """Raise InputError naming the bad knob (as `spelling` writes it) and its allowed range."""
        for name in ("max_rows", "max_seq_len"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise InputError(f"{spelling.name(name)} must be a positive integer or {spelling.off(name)}, got {v!r}",
                                 param=name)
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InputError(f"{spelling.name('gpu_memory_utilization')} must be a fraction in (0, 1], got "
                             f"{self.gpu_memory_utilization!r}", param="gpu_memory_utilization")
        if self.activation_reserve_gib < 0 or self.cpu_max_rows < 1 or self.row_limit < 2:
            raise InputError("activation_reserve_gib must be >= 0, cpu_max_rows >= 1 and row_limit >= 2")


DEFAULT_MAX_SEQ_LEN = 2048


def kv_bytes_per_row(llm: LLMConfig, max_seq_len: int, dtype: torch.dtype) -> int:
    """Keys + values of one row over every layer, plus its int64 token record."""
    elem = torch.empty((), dtype=dtype).element_size()
    return 2 * llm.num_layers * llm.num_kv_heads * llm.head_dim * max_seq_len * elem + 8 * max_seq_len


def plan_rows(config: EngineConfig, llm: LLMConfig, device: torch.device, dtype: torch.dtype) -> tuple[int, int]:
    """(rows, max_seq_len) for this model on this device; raises InputError when not even one image fits."""
    context = llm.max_position_embeddings
    seq = config.max_seq_len or min(context, DEFAULT_MAX_SEQ_LEN)
    if seq > context:
        name = config.spelling.name
        raise InputError(f"{config.spelling.setting('max_seq_len', seq)} exceeds the model's context of {context} "
                         f"tokens; use at most {context} (or leave {name('max_seq_len')} out)", param="max_seq_len")
    per_row = kv_bytes_per_row(llm, seq, dtype)
    if config.max_rows is not None:
        rows = config.max_rows
    elif device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        budget = config.gpu_memory_utilization * total - (total - free) - config.activation_reserve_gib * GiB
        rows = int(max(budget, 0) // per_row)
        if rows < 2:
            name = config.spelling.name
            raise InputError(
                f"the KV budget holds {rows} row(s) of {per_row / GiB:.2f} GiB ({config.spelling.setting('max_seq_len', seq)}); "
                f"one image needs 2: lower {name('max_seq_len')}, raise {name('gpu_memory_utilization')} (now "
                f"{config.gpu_memory_utilization}) or free GPU memory", param="max_rows")
    else:
        rows = config.cpu_max_rows
    return min(rows, config.row_limit), seq


class RowPool:
    """First-fit allocator of contiguous rows in `[0, rows)`; row `rows` is a scratch row for padding."""

    def __init__(self, rows: int, max_seq_len: int):
        self.rows = rows
        self.max_seq_len = max_seq_len
        self.scratch_row = rows  # backends allocate rows + 1; padding rows of a bucket point here
        self._used = [False] * rows

    @property
    def used(self) -> int:
        return sum(self._used)

    def allocate(self, n: int) -> int | None:
        """The first row of `n` free contiguous rows, now taken; None when no such run is free."""
        run = 0
        for i, used in enumerate(self._used):
            run = 0 if used else run + 1
            if run == n:
                first = i - n + 1
                self._used[first:i + 1] = [True] * n
                return first
        return None

    def free(self, first: int, n: int) -> None:
        if not all(self._used[first:first + n]):
            raise RuntimeError(f"rows {first}..{first + n - 1} freed twice")
        self._used[first:first + n] = [False] * n
