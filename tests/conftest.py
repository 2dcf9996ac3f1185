"""Shared fixtures: tiny checkpoints built once per session (no weights are ever downloaded)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# One thread by default: the tiny models are dominated by per-op overhead, and extra threads collapse when
# another process shares the 2 cores. JANUS_RT_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("JANUS_RT_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory):
    """(dir, transformers model, tokenizers.Tokenizer) of a random HF-layout Janus."""
    pytest.importorskip("transformers")
    from hf_fixtures import make_hf_checkpoint

    out = tmp_path_factory.mktemp("hf")
    model, tok = make_hf_checkpoint(out)
    return out, model, tok


@pytest.fixture(scope="session")
def official_from_hf(hf_checkpoint, tmp_path_factory):
    """The HF checkpoint's weights rewritten in the official layout (sharded .bin + index)."""
    from hf_fixtures import write_official_from_hf

    hf_dir, model, _ = hf_checkpoint
    return write_official_from_hf(hf_dir, model, tmp_path_factory.mktemp("official") / "ckpt", "sharded-bin")


@pytest.fixture(scope="session")
def tiny_official(tmp_path_factory):
    """A tiny random official-layout checkpoint (safetensors), as `janus-rt demo` builds."""
    from janus_rt.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt")


@pytest.fixture(scope="session")
def torch_model(tiny_official):
    """The tiny checkpoint loaded with the torch backend in fp32 (the export tests' source model)."""
    import janus_rt

    return janus_rt.load(tiny_official, device="cpu", dtype="float32")
