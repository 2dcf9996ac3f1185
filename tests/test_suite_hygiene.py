"""The test suite cleans up after itself: a passing run leaves no temp folders, and the large fixtures go
even when a run fails (the tiny checkpoints of a whole run added up to ~900 MB in the temp dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
def test_the_largest_fixture_is_removed_even_when_folders_are_kept(tmp_path: Path) -> None:
    base = tmp_path / "base"  # a given --basetemp is never removed by pytest: only the fixture's own cleanup acts
    proc = run_pytest([str(REPO / "tests" / "test_memory.py"), "-k", "float32", "--basetemp", str(base)],
                      tmp_path, REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert folder_bytes(base) < 5 * MiB, folder_bytes(base)
