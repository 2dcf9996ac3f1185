"""The test oracle, `transformers`: imported once per use through `transformers_oracle()`, which never lets the
parity tests stop silently.

- transformers not installed: the test is skipped, except under CI (`CI` set), where the dev extra installs it and
  a missing oracle is an error;
- installed but its Janus classes do not import (a dependency moved, a package shadowed): an error that names
  transformers' version, the versions of the packages it imported through, and the import error.
"""

from __future__ import annotations

import importlib
import os
from importlib import metadata
from types import ModuleType

import pytest

# packages transformers' Janus import goes through; named with their versions when it fails
IMPORTED_THROUGH = ("transformers", "kernels", "huggingface-hub", "tokenizers", "safetensors", "torch")


def installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def transformers_oracle() -> ModuleType:
    """The `transformers` module, with `JanusForConditionalGeneration` importable (see the module docstring)."""
    try:
        transformers = importlib.import_module("transformers")
    except ModuleNotFoundError as exc:
        if exc.name != "transformers":
            raise
        if os.environ.get("CI"):
            pytest.fail("transformers (the parity oracle) is not installed: the README's install command installs it")
        pytest.skip("transformers (the parity oracle) is not installed")
    try:
        transformers.JanusForConditionalGeneration  # noqa: B018 (the lazy import happens here)
    except Exception as exc:  # noqa: BLE001 (any failure of the oracle's import is reported the same way)
        versions = ", ".join(f"{name} {installed(name)}" for name in IMPORTED_THROUGH)
        pytest.fail(f"the oracle does not import: transformers.JanusForConditionalGeneration raised "
                    f"{type(exc).__name__}: {exc} ({versions})", pytrace=False)
    return transformers
