"""bench/device_run.sh as it runs on the GPU machine, where janus-rt is not installed: its own import path
(bench/device_env.sh) makes the whole package importable, a failed stage makes it exit non-zero, and its perf
mode finishes on a CPU machine (the triton row is skipped with a note there).

The interpreter is `python -S` with the site packages put back through PYTHONPATH: torch and the rest import,
but no .pth file runs, so the editable install of this checkout cannot fill a gap the script leaves.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from janus_rt.bench.import_check import module_names

pytestmark = pytest.mark.subprocess

REPO = Path(__file__).resolve().parents[1]
ENV_SCRIPT = REPO / "bench" / "device_env.sh"


def bare_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose python finds the site packages but not janus_rt (no .pth files run under -S)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(JANUS_RT_PYTHON=f"{sys.executable} -S", JANUS_RT_PKG=str(tmp_path / "pkg"),
               PYTHONPATH=os.pathsep.join(site.getsitepackages()), OUT=str(tmp_path / "out"), **extra)
    return env


def test_the_bare_interpreter_cannot_import_janus_rt(tmp_path: Path) -> None:
    """The premise: without the script's link tree, `python -S` here does not find janus_rt."""
    proc = subprocess.run([sys.executable, "-S", "-c", "import torch, janus_rt"], cwd=tmp_path,
                          env=bare_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "No module named 'janus_rt'" in proc.stderr, proc.stderr


def test_perf_mode_runs_without_an_install_and_skips_triton_on_a_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "bench/device_run.sh", "perf"], cwd=REPO, env=bare_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    package = tmp_path / "pkg"
    assert "FAILED" not in proc.stdout
    assert "every stage passed" in proc.stdout
    names = module_names(package / "janus_rt")  # every module the link tree holds (what the old shim lacked too)
    assert {"janus_rt.serve.app", "janus_rt.quant.linear", "janus_rt.kernels.skinny_gemm", "janus_rt.engine.core",
            "janus_rt.export.graphs", "janus_rt.bench.harness"} <= set(names)
    extras = next((line for line in proc.stdout.splitlines() if "optional extra not installed" in line), "")
    skipped = extras.count(";") + 1 if extras else 0
    assert f"janus_rt: {len(names) - skipped} modules import from under {package}" in proc.stdout, proc.stdout[:2000]
    result = json.loads((tmp_path / "out" / "bench_perf.json").read_text())
    if result["card"]["gpu"] is None:
        assert any("backend 'triton' skipped" in n for n in result["notes"])
    assert (tmp_path / "out" / "versions.txt").read_text().startswith("gpu=")


def test_a_failed_stage_makes_the_script_fail(tmp_path: Path) -> None:
    proc = subprocess.run(["bash", "bench/device_run.sh", "perf"], cwd=REPO,
                          env=bare_env(tmp_path, ARCH="no-such-arch"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 stage(s) failed" in proc.stdout and "bench bench_perf (exit 2" in proc.stdout
    unknown = subprocess.run(["bash", "bench/device_run.sh", "nonsense"], cwd=REPO, env=bare_env(tmp_path),
                             capture_output=True, text=True, timeout=600)
    assert unknown.returncode == 2 and "unknown mode 'nonsense'" in unknown.stderr


def test_an_incomplete_package_stops_the_script_before_any_stage(tmp_path: Path) -> None:
    """A checkout whose janus_rt imports a module the link tree lacks: the import check names it, exit 1."""
    checkout = tmp_path / "checkout"
    for folder in ("runtime", "export", "bench"):
        (checkout / folder).mkdir(parents=True)
        (checkout / folder / "__init__.py").write_text("")
    (checkout / "runtime" / "engine.py").write_text("import janus_rt.serve  # not in this checkout\n")
    (checkout / "bench" / "import_check.py").write_text((REPO / "bench" / "import_check.py").read_text())
    proc = subprocess.run(["bash", "-c", f"source {ENV_SCRIPT}"], cwd=checkout, env=bare_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED janus_rt.engine: ModuleNotFoundError" in proc.stdout and "janus_rt.serve" in proc.stdout
    assert "does not import whole" in proc.stderr
