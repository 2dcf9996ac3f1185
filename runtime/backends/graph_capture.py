"""CUDA-graph captures in this process: one at a time (`CAPTURE_LOCK`), and emptying the allocator's cache never
during one. Torch only: the triton backend captures its decode steps here, and benchmarks and evaluations free
memory through `empty_cuda_cache` without importing triton.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

CAPTURE_LOCK = threading.RLock()
"""Held around every CUDA-graph capture in this process (`capture_graph`); reentrant, so a caller may hold it
around a capture and its retry. The one module-level lock of janus-rt, because what it guards is process-wide:
`torch.cuda.graph` synchronizes the device and empties the caching allocator on entry, its default side stream
is shared by the whole process, and PyTorch asserts when a capture overlaps another capture or an `empty_cache`.
A lock passed in explicitly would let two backends (two models in one process, or a model and a benchmark)
hold two different locks over this one resource; anything else in the process that captures or empties the
allocator's cache should take this lock too."""


def empty_cuda_cache() -> None:
    """`torch.cuda.empty_cache()` under `CAPTURE_LOCK`: never while another thread of the process captures a graph
    (PyTorch asserts when the allocator's cache is emptied during a capture)."""
    with CAPTURE_LOCK:
        torch.cuda.empty_cache()


def capture_graph(body: Callable[[], None], *, pool: object | None,
                  stream: "torch.cuda.Stream | None") -> "torch.cuda.CUDAGraph":
    """Capture `body` into a new CUDA graph under `CAPTURE_LOCK`, on `stream` (the backend's own capture stream:
    graphs sharing `pool` must share their stream) and in `pool`. `thread_local` capture mode: callers' threads
    may run VQ decodes on the GPU while the engine thread captures. The graph is not replayed here."""
    with CAPTURE_LOCK:
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, pool=pool, stream=stream, capture_error_mode="thread_local"):
            body()
        return graph
