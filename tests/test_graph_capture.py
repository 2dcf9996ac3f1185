"""CUDA-graph captures of the triton backend: one at a time in the process (`graph_capture.CAPTURE_LOCK`, held while
`torch.cuda.graph` empties the allocator's cache and captures), each backend on its own capture stream, made on its
device, every graph of a backend on that one stream and in its one pool.

These run on a CPU with doubles of `torch.cuda`'s graph API (`FakeCuda`): they prove what janus-rt's code does
(which lock it holds, which stream and pool it hands to `torch.cuda.graph`, that a build captures and replays once).
Only a GPU can show that PyTorch then captures without its assert when two models capture at once, and that the
graphs replay correctly from their own streams: `test_two_backends_capture_at_once_on_a_gpu` does that where CUDA is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from kernel_utils import DEVICE  # sets TRITON_INTERPRET before triton is imported

import janus_rt
from janus_rt.backends import triton_step
from janus_rt.backends.choice import make_backend
from janus_rt.engine import EngineConfig
from janus_rt.backends.triton import TritonBackend
from janus_rt.backends.graph_capture import CAPTURE_LOCK, capture_graph
from janus_rt.backends.triton_step import StepGraph

pytestmark = pytest.mark.interpreter


@dataclass
class Capture:
    """One `torch.cuda.graph(...)` entered: what it was given and whether CAPTURE_LOCK was held by its thread."""

    stream: object
    pool: object
    lock_held: bool
    thread: str


@dataclass
class FakeCuda:
    """Doubles of the `torch.cuda` calls a capture makes; records every capture and who is inside one."""

    captures: list[Capture] = field(default_factory=list)
    streams: list["FakeStream"] = field(default_factory=list)
    inside: int = 0  # captures under way now
    most_inside: int = 0  # the most captures ever under way at once
    replays: int = 0
    _count_lock: threading.Lock = field(default_factory=threading.Lock)

    def graph(self, cuda_graph: object, pool: object = None, stream: object = None,
              capture_error_mode: str = "global") -> "FakeGraphContext":
        assert capture_error_mode == "thread_local"
        return FakeGraphContext(self, stream, pool)

    def stream(self, device: torch.device) -> "FakeStream":
        made = FakeStream(device)
        self.streams.append(made)
        return made

    def enter(self, stream: object, pool: object) -> None:
        with self._count_lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.captures.append(Capture(stream, pool, CAPTURE_LOCK._is_owned(), threading.current_thread().name))

    def leave(self) -> None:
        with self._count_lock:
            self.inside -= 1


class FakeStream:
    def __init__(self, device: torch.device) -> None:
        self.device = device


class FakeGraphContext:
    """`torch.cuda.graph(...)`: the real one synchronizes and empties the allocator's cache on entry, then captures."""

    def __init__(self, cuda: FakeCuda, stream: object, pool: object) -> None:
        self.cuda, self.stream, self.pool = cuda, stream, pool

    def __enter__(self) -> None:
        self.cuda.enter(self.stream, self.pool)

    def __exit__(self, *exc: object) -> None:
        self.cuda.leave()


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> FakeCuda:
    cuda = FakeCuda()

    class FakeGraph:
        def replay(self) -> None:
            cuda.replays += 1

    monkeypatch.setattr(torch.cuda, "graph", cuda.graph)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: cuda.stream(device))
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: object())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    return cuda


def run_threads(calls: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=call, name=f"capture-{i}") for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()


def test_captures_from_two_threads_never_overlap(fake_cuda: FakeCuda) -> None:
    start = threading.Barrier(2)

    def slow_body() -> None:
        time.sleep(0.05)  # widens the window an unlocked pair of captures would overlap in (no timing is asserted)

    def capture(stream: str) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            for _ in range(3):
                capture_graph(slow_body, pool=None, stream=stream)
        return run

    run_threads([capture("stream a"), capture("stream b")])
    assert len(fake_cuda.captures) == 6 and fake_cuda.most_inside == 1
    assert all(c.lock_held for c in fake_cuda.captures)  # held while torch.cuda.graph empties the cache
    assert {(c.thread, c.stream) for c in fake_cuda.captures} == {("capture-0", "stream a"), ("capture-1", "stream b")}


def test_a_capture_waits_for_whoever_holds_the_lock(fake_cuda: FakeCuda) -> None:
    """Anything else that must not run during a capture (an `empty_cache`, a retried allocation) holds the lock."""
    entered = threading.Event()
    with CAPTURE_LOCK:
        t = threading.Thread(target=lambda: capture_graph(entered.set, pool=None, stream=None))
        t.start()
        assert not entered.wait(0.2) and fake_cuda.captures == []
    t.join(30)
    assert entered.is_set() and len(fake_cuda.captures) == 1


def test_a_failed_capture_releases_the_lock(fake_cuda: FakeCuda) -> None:
    def failing_body() -> None:
        raise RuntimeError("out of memory while capturing")

    with pytest.raises(RuntimeError, match="out of memory"):
        capture_graph(failing_body, pool=None, stream=None)
    free = []

    def try_lock() -> None:  # from another thread: an RLock would let this one in again anyway
        got = CAPTURE_LOCK.acquire(blocking=False)
        free.append(got)
        if got:
            CAPTURE_LOCK.release()

    run_threads([try_lock])
    assert free == [True] and fake_cuda.inside == 0


@pytest.fixture(scope="module")
def ckpt(tiny_official: Path) -> Path:
    return tiny_official


@pytest.fixture(scope="module")
def model(ckpt: Path) -> Iterator[janus_rt.Janus]:
    m = janus_rt.load(ckpt, device=DEVICE.type, dtype="float32", backend="triton", engine=EngineConfig(max_rows=2))
    yield m
    m.close()


def graph_backend(model: janus_rt.Janus) -> TritonBackend:
    """A second triton backend over the model's weights, set to capture graphs (as it does on CUDA)."""
    backend = make_backend("triton", model.model)
    backend.interpreted = False  # the graph path; FakeCuda stands in for the device
    backend.allocate(2, 64)
    return backend


def test_each_backend_captures_on_its_own_stream(fake_cuda: FakeCuda, model: janus_rt.Janus,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = []
    monkeypatch.setattr(StepGraph, "body", lambda self: bodies.append((self.bi, self.bt)))  # no kernel runs
    first, second = graph_backend(model), graph_backend(model)
    assert first.build_bucket((2, 0)) and second.build_bucket((2, 0)) and first.build_bucket((0, 1))
    assert not first.build_bucket((0, 1))  # built once
    assert len(fake_cuda.streams) == 2 and [s.device for s in fake_cuda.streams] == [first.device, second.device]
    streams = [c.stream for c in fake_cuda.captures]
    assert streams == [first.capture_stream(), second.capture_stream(), first.capture_stream()]
    assert first.capture_stream() is not second.capture_stream()
    pools = [c.pool for c in fake_cuda.captures]
    assert pools[0] is pools[2] and pools[0] is not pools[1]  # one pool per backend, shared by its graphs
    assert all(c.lock_held for c in fake_cuda.captures)
    # each build: one eager run (compile, tune) and the run under capture, then one replay of the new graph
    assert bodies == [(2, 0), (2, 0), (2, 0), (2, 0), (0, 1), (0, 1)] and fake_cuda.replays == 3
    assert first.serving_builds == second.serving_builds == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real capture needs CUDA")
def test_two_backends_capture_at_once_on_a_gpu(model: janus_rt.Janus) -> None:
    """Two backends of one process build their buckets from two threads at once: no capture error, and each
    bucket's graph replays (each build ends with one replay)."""
    backends = [make_backend("triton", model.model) for _ in range(2)]
    for b in backends:
        b.allocate(4, 64)
    run_threads([lambda b=b: [b.build_bucket(key) for key in b.reachable_buckets()] for b in backends])
    for b in backends:
        assert set(b.steps) == set(triton_step.reachable_buckets(4))
        assert all(step.graph is not None for step in b.steps.values())
    torch.cuda.synchronize()


def test_two_interpreted_models_run_at_once(ckpt: Path) -> None:
    """Without a GPU the kernels run in the Triton interpreter, whose launch state is process-global: two models
    stepping in two threads at once must still answer as each does alone (`interpret.INTERPRETER_LOCK`)."""
    if torch.cuda.is_available():
        pytest.skip("the interpreter path")
    models = [janus_rt.load(ckpt, device="cpu", dtype="float32", backend="triton", engine=EngineConfig(max_rows=2))
              for _ in range(2)]
    try:
        alone = models[0].chat("Say something.", max_new_tokens=6, temperature=0.0)
        answers: list = [None, None]

        def ask(i: int) -> None:
            try:
                answers[i] = models[i].chat("Say something.", max_new_tokens=6, temperature=0.0)
            except Exception as e:  # noqa: BLE001 - compared below
                answers[i] = e

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        assert answers == [alone, alone], answers
    finally:
        for m in models:
            m.close()
