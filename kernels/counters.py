"""Arrival counters for kernels whose last-arriving program finishes the work (the split-K GEMM's reduction, the
attention's fused merge): int32 zeros, one per output tile, that each launch leaves at zero again.

`ArrivalCounters.get(device, n)` returns a buffer of at least n counters on `device`, zeroed once when it is
allocated (no memset per launch). A larger request allocates a larger buffer and keeps the old ones alive:
captured CUDA graphs hold their addresses. Launches sharing a buffer must not run concurrently (one stream).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

MIN_COUNTERS = 4096  # the first buffer's size: every decode shape of the Janus family fits, but the lm_head's


class ArrivalCounters:
    """Per-device self-resetting counter buffers, owned by one launcher."""

    def __init__(self) -> None:
        self._held: dict[torch.device, list[torch.Tensor]] = {}

    def get(self, device: torch.device, n: int) -> torch.Tensor:
        held = self._held.setdefault(device, [])
        if not held or held[-1].numel() < n:
            held.append(torch.zeros(max(n, MIN_COUNTERS), dtype=torch.int32, device=device))
        return held[-1]

    def buffers(self) -> Iterator[torch.Tensor]:
        """Every buffer allocated so far (tests check that launches leave them at zero)."""
        for held in self._held.values():
            yield from held
