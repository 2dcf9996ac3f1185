"""The test suite cleans up after itself: a passing run leaves no temp folders, the large fixtures go even when a
run fails (the tiny checkpoints of a whole run added up to ~900 MB in the temp dir), and nothing lands in the
user's home or temp dir (tile choices, Triton / inductor caches, onnxruntime's files: `session_env.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from session_env import REDIRECTED

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20

WRITES_TEMP_FILES = '''
def test_writes(tmp_path, tmp_path_factory):
    (tmp_path / "a.bin").write_bytes(bytes(2 << 20))
    (tmp_path_factory.mktemp("shared") / "b.bin").write_bytes(bytes(2 << 20))
'''


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def run_pytest(args: list[str], temp_root: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(temp_root)}  # pytest puts its base temp folder under TMPDIR
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_passing_run_leaves_no_temp_folders(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text((REPO / "pytest.ini").read_text())  # the project's own settings
    (project / "tests" / "test_writes.py").write_text(WRITES_TEMP_FILES)
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    proc = run_pytest([], temp_root, project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert folder_bytes(temp_root) < MiB, sorted(temp_root.rglob("*"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the memory test needs Linux /proc")
@pytest.mark.slow
def test_the_largest_fixture_is_removed_even_when_folders_are_kept(tmp_path: Path) -> None:
    base = tmp_path / "base"  # a given --basetemp is never removed by pytest: only the fixture's own cleanup acts
    proc = run_pytest([str(REPO / "tests" / "test_memory.py"), "-k", "float32", "--basetemp", str(base)],
                      tmp_path, REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert folder_bytes(base) < 5 * MiB, folder_bytes(base)


# tests that write outside their tmp_path unless the conftest redirects them (session_env.py)
WRITES_TO_USER_FOLDERS = [
    "tests/test_kernel_skinny_gemm.py::test_split_k",  # a tuner with the default store: tile choices in the cache dir
    "tests/test_packaging.py::test_transformers_janus_imports_from_the_repo_root",  # transformers: torchinductor_<user>
    "tests/test_export_errors.py::test_missing_export_dir",  # onnxruntime: ~/.cache/Microsoft, $TMPDIR/.ses
]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def run_in_fresh_home(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    home, temp = tmp_path / name / "home", tmp_path / name / "tmp"
    home.mkdir(parents=True)
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in REDIRECTED}  # as a user's shell has them: unset
    env.update(HOME=str(home), TMPDIR=str(temp))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra,
                           *WRITES_TO_USER_FOLDERS], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return proc, home, temp


@pytest.mark.slow
def test_a_passing_run_leaves_nothing_in_home_or_temp(tmp_path: Path) -> None:
    # the control: without the conftest the same tests do write into the home and the temp dir
    bare, home, temp = run_in_fresh_home(tmp_path, "bare", "--noconftest", "--basetemp", str(tmp_path / "bare-base"))
    assert bare.returncode == 0, bare.stdout + bare.stderr
    # (ours is asserted; transformers' torchinductor_<user> and onnxruntime's files are theirs to change)
    assert any(f.startswith(".cache/janus-rt/autotune/") for f in files_under(home)), files_under(home)
    # the suite as it runs: every one of those goes to the session folder, which a passing run removes
    proc, home, temp = run_in_fresh_home(tmp_path, "suite")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert files_under(home) == [] and files_under(temp) == [], (files_under(home), files_under(temp))
