"""Wall-clock timing of one call on a device: CUDA events around it on a GPU, the host clock elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import torch

from janus_rt.backends.graph_capture import empty_cuda_cache

T = TypeVar("T")


def timed(fn: Callable[[], T], device: torch.device) -> tuple[T, float]:
    """Run `fn()` once and return (its result, milliseconds until the device finished its work)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return out, start.elapsed_time(end)
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1e3


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA only; a no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        empty_cuda_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak allocated device memory (GB, 1e9 bytes) since the last reset; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1e9
