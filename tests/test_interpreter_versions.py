"""The Triton interpreter and numpy: Triton 3.6's interpreter breaks with numpy >= 2.4, so the triton backend on a
CPU refuses that pair with what to do instead of failing inside its first kernel (kernels/interpret.py)."""

from __future__ import annotations

import numpy
import pytest
import triton

from janus_rt.kernels.interpret import interpreter_problem


@pytest.mark.parametrize("triton_version, numpy_version, refused", [
    ("3.6.0", "2.4.6", True), ("3.6.0", "2.4.0rc1", True), ("3.5.1", "2.5.0", True),
    ("3.6.0", "2.3.5", False), ("3.9.0", "2.4.6", False), ("3.10.1+git", "2.4.6", False), ("3.7.0", "2.4.0", False),
])
def test_the_breaking_pair_is_refused_with_what_to_do(triton_version: str, numpy_version: str, refused: bool) -> None:
    problem = interpreter_problem(triton_version, numpy_version)
    assert (problem is not None) == refused
    if refused:
        assert f"Triton {triton_version}" in problem and f"numpy {numpy_version}" in problem
        assert "pip install 'numpy<2.4'" in problem


def test_this_environment_passes() -> None:
    """The suite's own pair runs the interpreter (else every interpreter test below would fail first)."""
    assert interpreter_problem(triton.__version__, numpy.__version__) is None
