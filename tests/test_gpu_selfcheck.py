"""The GPU self-check's parts that a CPU can run: the repeatability checks count mismatches (and find one when
the bits do move), pass on the interpreter's kernels, and the report names each check (bench/gpu_selfcheck.py;
its engine checks are dry-run by `ARCH=tiny SMOKE="--image-grid 4" bash bench/device_run.sh selfcheck`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kernel_utils import DEVICE  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

from janus_rt.bench.gpu_selfcheck import Check, Shapes, attention_check, gemm_checks, render, same_bits

pytestmark = pytest.mark.interpreter


def test_same_bits_counts_launches_that_differ() -> None:
    calls = iter(range(100))

    def drifting() -> torch.Tensor:
        return torch.tensor([1.0, 2.0 + (next(calls) % 3 == 2) * 1e-6])  # every third launch moves a bit

    first, eager_bad, replay_bad = same_bits(drifting, launches=6, graphs=False)
    assert torch.equal(first, torch.tensor([1.0, 2.0])) and eager_bad == 2 and replay_bad == 0
    assert same_bits(lambda: torch.ones(3), launches=4, graphs=False)[1:] == (0, 0)


def test_kernel_checks_pass_in_the_interpreter(tmp_path: Path) -> None:
    shapes = Shapes.for_device(torch.device("cpu"))
    checks = gemm_checks(torch.device("cpu"), torch.float32, shapes, 1, tmp_path)
    checks.append(attention_check(torch.device("cpu"), torch.float32, shapes, 1))
    assert len(checks) == 5 and all(c.passed for c in checks), render(checks)
    assert all(c.figures["eager_mismatches"] == 0 and c.figures["max_abs_err_vs_fp64"] < 1e-5 for c in checks)
    assert checks[-1].figures["equals_two_launch_merge"] is True


def test_render_names_each_check_and_its_result() -> None:
    table = render([Check("a", True, {"x": 1.5}), Check("b", False, {}, "why")])
    assert "| a | pass | x=1.5 |" in table and "| b | FAIL |  why |" in table
