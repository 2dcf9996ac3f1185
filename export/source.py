"""What the export stage reads from a loaded model: its torch modules, config, checkpoint folder and backend.

`janus_rt.Janus` (a model loaded with `backend="torch"`) is one; the export stage names only this protocol, so it
never imports the facade that loads models (the facade imports the export stage, never the reverse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.model.janus import JanusModel


class ExportSource(Protocol):
    """A loaded model whose torch modules can be traced (`model` is None for a backend that has none)."""

    @property
    def model(self) -> JanusModel | None: ...  # the torch modules (backend "torch" or "triton")

    @property
    def config(self) -> JanusConfig: ...

    @property
    def path(self) -> Path: ...  # the checkpoint folder it was loaded from

    @property
    def backend(self) -> str: ...  # "torch", "triton", "onnxruntime", "tensorrt"

    @property
    def dtype(self) -> torch.dtype: ...


LoadCheckpoint = Callable[[Path], ExportSource]
"""Loads a checkpoint folder on the CPU in float32 with the torch backend: how the caller (`janus_rt.load`) lets
the export stage export a checkpoint it was given instead of an export folder."""
