"""The engine bounds the decode steps in flight: a lagging device never has more than MAX_STEPS_IN_FLIGHT queued.

On a GPU a step is enqueued asynchronously, so an image-only batch (nothing read back until the image ends)
would let the host run hundreds of steps ahead of the device. Here a backend double simulates such a device on
the CPU with a clock counted in ticks: the host spends one tick launching a step, the device runs one step every
STEP_TICKS ticks, in order, and a step's marker (`mark_step`) or a token read waits by moving the clock to the
moment that work has run. Everything happens on the engine thread in a fixed order, so each run is the same.
What is proven, in steps (never in seconds):
- steps enqueued but not yet run never exceed MAX_STEPS_IN_FLIGHT (and reach it: the host still runs ahead);
- a request arriving mid-image shares steps with that image, its first one at most MAX_STEPS_IN_FLIGHT device
  steps after its arrival; a cancellation stops the request's steps within as many;
- the double really lags: with the bound lifted the same runs break both (so the checks above can fail).
"""

from __future__ import annotations

from concurrent.futures import CancelledError
from types import SimpleNamespace
from typing import Callable

import pytest
import torch

from janus_rt.bench.architectures import architecture_config
from janus_rt.engine import EngineConfig, SamplingParams
from janus_rt.engine import core
from janus_rt.engine.core import Engine
from janus_rt.engine.primitives import step_marker_source
from janus_rt.engine.request import Group, Request

PROMPT = list(range(1, 33))  # 32 prompt ids
STEP_TICKS = 4  # the device runs a step in 4 ticks; the host launches one in 1: the host would run ahead 4x
ARRIVAL_STEP = 100  # the device step whose completion sets off the event under test (a new request, a cancel)
PARAMS = SamplingParams(temperature=1.0, seed=0)
BOUND = core.MAX_STEPS_IN_FLIGHT  # as shipped (a test below lifts the module's value)


class SimulatedDevice:
    """An in-order device queue on a tick clock; `on_step_done[n]` runs when the device finishes step n (1-based)."""

    def __init__(self, step_ticks: int):
        self.step_ticks = step_ticks
        self.now = 0  # ticks
        self.finish_at: list[int] = []  # tick at which each enqueued step has run, in enqueue order
        self.done = 0  # steps run so far
        self.most_in_flight = 0  # most steps enqueued and not yet run, seen at an enqueue
        self.on_step_done: dict[int, Callable[[], None]] = {}

    @property
    def in_flight(self) -> int:
        return len(self.finish_at) - self.done

    def enqueue(self) -> None:
        """The host launches one step: it queues behind the last one, and the launch costs the host one tick."""
        start = max(self.now, self.finish_at[-1] if self.finish_at else 0)
        self.finish_at.append(start + self.step_ticks)
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.advance(self.now + 1)

    def wait_for(self, step: int) -> None:
        """The host blocks until step `step` has run."""
        self.advance(self.finish_at[step - 1])

    def drain(self) -> None:
        """The host blocks until every enqueued step has run (what a token read does)."""
        if self.finish_at:
            self.advance(self.finish_at[-1])

    def advance(self, tick: int) -> None:
        self.now = max(self.now, tick)
        while self.done < len(self.finish_at) and self.finish_at[self.done] <= self.now:
            self.done += 1
            hook = self.on_step_done.pop(self.done, None)
            if hook is not None:
                hook()


class SimulatedMarker:
    """The marker of step `step` on a `SimulatedDevice`."""

    def __init__(self, device: SimulatedDevice, step: int):
        self.device, self.step = device, step

    def synchronize(self) -> None:
        self.device.wait_for(self.step)


class LaggingBackend:
    """A `StepBackend` whose steps run later on a `SimulatedDevice`; it records which requests each step carried.

    Prefill costs no device time (only decode steps are bounded); a token read drains the device, as a copy to
    the host does on a GPU. Tokens stay 0.
    """

    name = "lagging"
    device = torch.device("cpu")
    dtype = torch.float32
    model = None
    sync_every = 16  # as the triton backend

    def __init__(self, cfg, step_ticks: int = STEP_TICKS):
        self.cfg = cfg
        self.gpu = SimulatedDevice(step_ticks)
        self.steps: list[set[int]] = []  # request ids in each decode step, in order (step n is steps[n - 1])
        self.tokens = torch.zeros(0, 0, dtype=torch.long)

    def allocate(self, rows: int, max_seq_len: int) -> None:
        self.tokens = torch.zeros(rows + 1, max_seq_len, dtype=torch.long)

    def prefill(self, group: Group) -> None:
        pass

    def decode(self, groups: list[Group]) -> None:
        self.steps.append({g.request.id for g in groups})
        self.gpu.enqueue()

    def mark_step(self) -> SimulatedMarker:
        return SimulatedMarker(self.gpu, len(self.gpu.finish_at))

    def read_tokens(self, group: Group, start: int, stop: int) -> torch.Tensor:
        self.gpu.drain()
        return self.tokens[group.first_row:group.first_row + group.images, start:stop]

    def release(self, group: Group) -> None:
        pass

    def decode_pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens

    def describe_mode(self) -> str:
        return f"simulated device, {self.gpu.step_ticks} ticks a step"

    def steps_with(self, request: Request) -> list[int]:
        """The (1-based) decode steps that carried `request`."""
        return [n for n, ids in enumerate(self.steps, 1) if request.id in ids]


@pytest.fixture(scope="module")
def cfg():
    return architecture_config("janus-1.3b")  # 576 steps an image; no weights needed


def lagging_engine(cfg) -> tuple[Engine, LaggingBackend]:
    backend = LaggingBackend(cfg)
    engine = Engine(backend, EngineConfig(max_rows=8, max_seq_len=len(PROMPT) + cfg.image_tokens_per_image))
    return engine, backend


def image(engine: Engine, num_images: int = 1) -> Request:
    return engine.submit_images(PROMPT, 0, num_images, PARAMS)


def run_arrival(cfg) -> tuple[LaggingBackend, Request, Request]:
    """Image A runs; request B is submitted the moment the device finishes step ARRIVAL_STEP of A."""
    engine, backend = lagging_engine(cfg)
    arrived: list[Request] = []
    backend.gpu.on_step_done[ARRIVAL_STEP] = lambda: arrived.append(image(engine, 2))
    try:
        a = image(engine)
        a.result(timeout=60)
        assert arrived, f"step {ARRIVAL_STEP} never ran"
        arrived[0].result(timeout=60)
    finally:
        engine.close()
    return backend, a, arrived[0]


def run_cancel(cfg) -> tuple[LaggingBackend, Request, dict]:
    """Image A runs; it is cancelled the moment the device finishes step ARRIVAL_STEP. Returns the engine's stats."""
    engine, backend = lagging_engine(cfg)
    running: list[Request] = []
    backend.gpu.on_step_done[ARRIVAL_STEP] = lambda: running[0].cancel()
    try:
        with engine.admit_together():  # the engine steps A only once it is in `running`
            running.append(image(engine, 2))
        with pytest.raises(CancelledError):
            running[0].result(timeout=60)
        stats = engine.stats()
    finally:
        engine.close()
    return backend, running[0], stats


def test_steps_in_flight_never_exceed_the_bound(cfg) -> None:
    engine, backend = lagging_engine(cfg)
    try:
        tokens = image(engine, 3).result(timeout=60)
        stats = engine.stats()
    finally:
        engine.close()
    assert tokens.shape == (3, cfg.image_tokens_per_image)
    assert stats["decode_steps"] == cfg.image_tokens_per_image - 1
    # bounded, and the bound is reached: the host still keeps the device fed, it does not step in lockstep
    assert backend.gpu.most_in_flight == BOUND


def test_request_arriving_mid_image_joins_within_the_bound(cfg) -> None:
    backend, a, b = run_arrival(cfg)
    first_b = backend.steps_with(b)[0]
    # the device runs at most MAX_STEPS_IN_FLIGHT steps between B's arrival and B's first step
    assert first_b - 1 - ARRIVAL_STEP <= BOUND
    assert first_b in backend.steps_with(a)  # it shares steps with the running image, not after it
    assert backend.gpu.most_in_flight <= BOUND
    assert len(backend.steps_with(b)) == backend.cfg.image_tokens_per_image - 1


def test_cancel_takes_effect_within_the_bound(cfg) -> None:
    backend, a, stats = run_cancel(cfg)
    # steps already enqueued when the cancel arrives still run; the engine enqueues none after them
    assert backend.steps_with(a)[-1] - ARRIVAL_STEP <= BOUND
    assert stats["cancelled_requests"] == 1 and stats["active_rows"] == 0
    assert backend.gpu.most_in_flight <= BOUND


def test_the_double_lags_without_the_bound(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the bound lifted, the same runs miss every bound above: the checks there can fail."""
    monkeypatch.setattr(core, "MAX_STEPS_IN_FLIGHT", 10**9)
    backend, a, b = run_arrival(cfg)
    assert backend.gpu.most_in_flight > 10 * BOUND
    assert backend.steps_with(b)[0] - 1 - ARRIVAL_STEP > 10 * BOUND
    backend, a, _ = run_cancel(cfg)
    assert backend.steps_with(a)[-1] - ARRIVAL_STEP > 10 * BOUND


def test_markers_come_from_the_backend_or_the_device() -> None:
    cpu = SimpleNamespace(device=torch.device("cpu"))
    assert step_marker_source(cpu) is None  # CPU steps are synchronous: nothing is marked, nothing waits
    own = SimpleNamespace(device=torch.device("cpu"), mark_step=lambda: None)
    assert step_marker_source(own) is own.mark_step
    assert step_marker_source(SimpleNamespace(device=torch.device("cuda", 0))) is not None
