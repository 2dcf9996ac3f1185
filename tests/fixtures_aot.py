"""The kernels' ahead-of-time compile for tests/test_kernel_compile.py, started in the background when the run begins
(a plugin that tests/conftest.py loads).

Recording the launches (`python tests/test_kernel_compile.py LAUNCHES.json`: the launchers in the interpreter) and
compiling them for each GPU target (`python tests/aot_compile.py LAUNCHES.json TARGET`) takes minutes of CPU, in
child processes. The rest of the suite runs on one core (one torch thread), so the children start as soon as the
tests are collected, on the cores the suite leaves free (one child at a time on a 2-core machine), and the test
module runs last: its `compiled` fixture calls `compiled_launches`, which then lets the children use every core and
waits for what is left. Nothing starts when no selected test needs it (`-m "not slow"`, `-k`, a CUDA machine, where
the module is skipped); the children are killed when the session ends before they do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
MODULE = TESTS / "test_kernel_compile.py"
CHILD_TIMEOUT_S = 1200.0  # one child (the record, or one target's compile)
# below the tests' own processes (servers, CLI runs): the children take the CPU time the tests leave idle
NICE = ["nice", "-n", "10"] if shutil.which("nice") else []
JOB = pytest.StashKey["AotJob"]()


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class AotJob:
    """Record the launches, then compile them for every target, in child processes run by a thread: one at a time
    beside the suite (cores - 1 on larger machines), on every core once `result()` waits for them."""

    def __init__(self, targets: tuple[str, ...]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="aot-"))  # under the session's temp dir (conftest.py)
        self.targets = targets
        self.launches_path = self.folder / "launches.json"
        self.env = dict(os.environ)  # the session's redirected caches and temp dir (conftest.py)
        self.waiting = threading.Event()
        self.stopped = False
        self.error: BaseException | None = None
        self.rows: list[dict] = []
        self.running: dict[str, subprocess.Popen] = {}
        self.started: dict[str, float] = {}  # child name -> time.monotonic() at its start
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="janus-rt-aot-compile", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _start_child(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        with self.lock:
            if self.stopped:
                raise RuntimeError("the session ended before the ahead-of-time compile did")
            with open(self.folder / f"{name}.out", "w") as out, open(self.folder / f"{name}.err", "w") as err:
                proc = subprocess.Popen(NICE + argv, stdout=out, stderr=err, env=env, cwd=TESTS.parent)
            self.running[name], self.started[name] = proc, time.monotonic()
            return proc

    def _finish_child(self, name: str, proc: subprocess.Popen) -> str:
        with self.lock:
            del self.running[name]
        err = (self.folder / f"{name}.err").read_text()
        if proc.returncode != 0:
            raise AssertionError(f"{name} failed (exit {proc.returncode}):\n{err[-3000:]}")
        return (self.folder / f"{name}.out").read_text()

    def _run(self) -> None:
        try:
            record_env = {**self.env, "TRITON_INTERPRET": "1"}  # the launchers run in the interpreter
            self._run_children([("record", [sys.executable, str(MODULE), str(self.launches_path)], record_env)])
            compile_env = {k: v for k, v in self.env.items() if k != "TRITON_INTERPRET"}
            script, launches = str(TESTS / "aot_compile.py"), str(self.launches_path)
            outputs = self._run_children([(f"compile-{target}", [sys.executable, script, launches, target], compile_env)
                                          for target in self.targets])
            self.rows = [json.loads(line) for out in outputs for line in out.splitlines() if line.strip()]
        except BaseException as e:  # noqa: BLE001 - handed to the test that waits for the result
            self.error = e

    def _run_children(self, children: list[tuple[str, list[str], dict[str, str]]]) -> list[str]:
        """Run each (name, argv, env), at most cores - 1 at once beside the suite and one per core once the suite
        waits (polled, so the next one starts at once); their outputs, in the order they finished."""
        pending, running, outputs = list(children), {}, []
        while pending or running:
            cores = usable_cores()
            limit = cores if self.waiting.is_set() else max(1, cores - 1)
            while pending and len(running) < limit:
                name, argv, env = pending.pop(0)
                running[name] = self._start_child(name, argv, env)
            for name, proc in list(running.items()):
                if proc.poll() is not None:
                    outputs.append(self._finish_child(name, running.pop(name)))
                elif time.monotonic() - self.started[name] > CHILD_TIMEOUT_S:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(f"{name} ran over {CHILD_TIMEOUT_S:g} s")
            if self.stopped:
                raise RuntimeError("the session ended before the ahead-of-time compile did")
            time.sleep(0.1)
        return outputs

    def result(self) -> tuple[list[dict], list[dict]]:
        """(the recorded launches, one row per compiled (launch, target)), once every child has finished."""
        self.waiting.set()
        self.thread.join()
        if self.error is not None:
            raise self.error
        return json.loads(self.launches_path.read_text()), self.rows

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for proc in self.running.values():
                proc.kill()
        self.thread.join(60)


def needs_compile(item: pytest.Item) -> bool:
    return item.path == MODULE


def targets_of(module) -> tuple[str, ...]:
    """The GPU targets the test module compiles for: the keys of its per-target shared memory limits."""
    return tuple(module.SHARED_LIMIT)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The compile tests last: the background work then has the whole run to finish behind the other tests."""
    items.sort(key=needs_compile)  # stable: every other test keeps its order


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    selected = [item for item in session.items if needs_compile(item)]
    if config.option.collectonly or torch.cuda.is_available() or not selected:
        return
    job = config.stash[JOB] = AotJob(targets_of(selected[0].module))  # type: ignore[attr-defined]
    job.start()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    job = session.config.stash.get(JOB, None)
    if job is not None:
        job.stop()


def compiled_launches(config: pytest.Config, targets: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """The recorded launches and the rows compiled for `targets` (see AotJob.result), started here if the run did
    not start them."""
    job = config.stash.get(JOB, None)
    if job is None:
        job = config.stash[JOB] = AotJob(targets)
        job.start()
    assert job.targets == targets, (job.targets, targets)
    return job.result()
