"""Phase timing for benchmarks: device events on CUDA (no sync until read), host clock elsewhere.

The engine, given a `PhaseTimer` (`engine.timer`), marks phase boundaries (`mark("prefill")` after each
prefill, `mark("decode")` after each step); reading `elapsed_ms()` synchronizes once and returns each phase's milliseconds. Nothing is timed when no timer is given.
"""

from __future__ import annotations

import time

import torch


class PhaseTimer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.names: list[str] = []
        self.stamps: list[object] = []
        self.counts: dict[str, int] = {}
        self._stamp()

    def _stamp(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.stamps.append(event)
        else:
            self.stamps.append(time.perf_counter())

    def mark(self, phase: str, count: int = 1) -> None:
        """End `phase` (which did `count` units of work, e.g. decode steps) here."""
        self.names.append(phase)
        self.counts[phase] = self.counts.get(phase, 0) + count
        self._stamp()

    def elapsed_ms(self) -> dict[str, float]:
        """Milliseconds per phase (phases marked several times add up)."""
        if self.cuda:
            self.stamps[-1].synchronize()  # type: ignore[union-attr]
        out: dict[str, float] = {}
        for name, start, end in zip(self.names, self.stamps, self.stamps[1:]):
            ms = start.elapsed_time(end) if self.cuda else (end - start) * 1e3  # type: ignore[union-attr,operator]
            out[name] = out.get(name, 0.0) + ms
        return out
