"""The session's setup: the run's own folder for caches and temp files (`session_env`); the dependency versions in
the header and beside failures (`dependency_versions`); the shared fixtures (tiny checkpoints and models written and
loaded once per run, no weights ever downloaded: `fixtures_models`) and the kernels' ahead-of-time compile, started
in the background when the run begins (`fixtures_aot`). Markers: pytest.ini."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from dependency_versions import header_line, installed_versions, moved, read_verified  # noqa: E402
from session_env import PYTEST_TEMP, redirect  # noqa: E402

pytest_plugins = ("fixtures_models", "fixtures_aot")

# One thread by default: the tiny models are dominated by per-op overhead, and extra threads collapse when
# another process shares the 2 cores. JANUS_RT_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("JANUS_RT_TEST_THREADS", "1")))

SESSION_FOLDER = pytest.StashKey[Path]()
MOVED_PACKAGES = pytest.StashKey[list]()
SESSION_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    root = Path(tempfile.mkdtemp(prefix="janus-rt-tests-"))
    config.stash[SESSION_FOLDER] = root
    redirect(root, os.environ)
    if config.option.basetemp is None:
        config.option.basetemp = str(root / PYTEST_TEMP)
    config.stash[MOVED_PACKAGES] = moved(installed_versions(), read_verified())


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"dependencies: {header_line(installed_versions(), read_verified())}",
             f"caches and temp files of this run: {config.stash[SESSION_FOLDER]} (removed if it passes)"]
    changed = config.stash[MOVED_PACKAGES]
    if changed:
        lines.append(f"{len(changed)} packages differ from .ci/verified-versions.txt (the last verified green run)")
    return lines


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    changed = item.config.stash[MOVED_PACKAGES]
    if report.failed and changed:
        report.sections.append(("dependencies moved since the last verified green run", "\n".join(changed)))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[SESSION_FAILED] = exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    changed = config.stash[MOVED_PACKAGES]
    if exitstatus != pytest.ExitCode.OK and changed:
        terminalreporter.section("dependencies moved since the last verified green run (.ci/verified-versions.txt)")
        for line in changed:
            terminalreporter.line(line)
        terminalreporter.line('to test against the verified set: pip install -c .ci/verified-versions.txt '
                              '"torch==2.13.0" -e ".[dev]"')
    if exitstatus != pytest.ExitCode.OK:
        terminalreporter.line(f"kept for inspection: {config.stash[SESSION_FOLDER]}")


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(SESSION_FOLDER, None)
    if root is not None and not config.stash.get(SESSION_FAILED, True):
        shutil.rmtree(root, ignore_errors=True)
