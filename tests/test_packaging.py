"""A regular (non-editable) install ships every subpackage: `janus_rt.engine`, `janus_rt.serve`, ... included."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"runtime": "janus_rt", "kernels": "janus_rt/kernels", "export": "janus_rt/export", "bench": "janus_rt/bench"}


def test_wheel_holds_every_package(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), "-q"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("janus_rt-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, package in ROOTS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            expected.add(f"{package}/{init.parent.relative_to(REPO / folder).as_posix()}/__init__.py".replace("/./", "/"))
    assert "janus_rt/engine/__init__.py" in expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
