"""Simulated faults for engine and server tests."""

from __future__ import annotations

import pytest


def fail_decode_at(m, monkeypatch: pytest.MonkeyPatch, call: int, message: str = "simulated device fault") -> None:
    """Make `m`'s backend decode step raise RuntimeError(message) on its `call`-th call; every other call runs."""
    original = m.step_backend.decode
    calls = {"n": 0}

    def flaky(groups):
        calls["n"] += 1
        if calls["n"] == call:
            raise RuntimeError(message)
        return original(groups)

    monkeypatch.setattr(m.step_backend, "decode", flaky)
