"""Session fixtures for the models the tests share (a plugin that tests/conftest.py loads).

Checkpoints are written once per run, each through its `TinySpec` (a small image-token grid is a checkpoint of its
own, never a loaded model's frozen config changed afterwards); models are loaded once per run where tests only read
them. A test that closes a model, changes its engine config or patches it loads its own, or builds a fresh `Janus`
(own engine) over shared weights (`serve_utils.with_image_grid`).

- `tiny_checkpoint(spec, weights_format, seed)`: that checkpoint's folder, written at its first request;
- `tiny_official`: the default tiny checkpoint (24 x 24 image tokens, as `janus-rt demo` builds);
- `tiny_small_grid`: the same weights with a 6 x 6 grid and a 1024-position context (36 decode steps an image);
- `torch_model` / `small_grid_model`: those two loaded on the CPU in fp32 with the torch backend;
- `hf_checkpoint`, `official_from_hf`: a random HF-layout Janus (with transformers' model) and its weights in the
  official layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from oracle import transformers_oracle

if TYPE_CHECKING:  # janus_rt itself is imported by the fixtures, when a test asks for one
    from janus_rt.checkpoint.tiny import TinySpec, WeightsFormat

SMALL_GRID = 6  # image tokens per side of `tiny_small_grid`: 36 decode steps an image, 12 x 12 px
SMALL_GRID_CONTEXT = 1024  # positions of `tiny_small_grid` (the engine and server tests' context)

TinyCheckpoint = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> TinyCheckpoint:
    """tiny_checkpoint(spec=TinySpec(), weights_format="safetensors", seed=0) -> its folder, written once per run.
    Tests must not change the folder (copy it first)."""
    from janus_rt.checkpoint.tiny import TinySpec, write_tiny_checkpoint

    written: dict[str, Path] = {}

    def get(spec: TinySpec | None = None, weights_format: WeightsFormat = "safetensors", seed: int = 0) -> Path:
        spec = spec or TinySpec()
        key = repr((spec, weights_format, seed))  # TinySpec holds a dict: not hashable
        if key not in written:
            written[key] = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", spec, weights_format, seed)
        return written[key]

    return get


@pytest.fixture(scope="session")
def tiny_official(tiny_checkpoint: TinyCheckpoint) -> Path:
    """A tiny random official-layout checkpoint (safetensors), as `janus-rt demo` builds."""
    return tiny_checkpoint()


@pytest.fixture(scope="session")
def tiny_small_grid(tiny_checkpoint: TinyCheckpoint) -> Path:
    """`tiny_official`'s weights with a 6 x 6 image-token grid and a 1024-position context."""
    from janus_rt.checkpoint.tiny import TinySpec

    return tiny_checkpoint(TinySpec(max_positions=SMALL_GRID_CONTEXT, image_token_grid=SMALL_GRID))


@pytest.fixture(scope="session")
def torch_model(tiny_official: Path) -> Iterator:
    """The tiny checkpoint loaded with the torch backend in fp32 on the CPU (read-only: do not close or patch)."""
    import janus_rt

    m = janus_rt.load(tiny_official, device="cpu", dtype="float32")
    yield m
    m.close()


@pytest.fixture(scope="session")
def small_grid_model(tiny_small_grid: Path) -> Iterator:
    """`tiny_small_grid` loaded like `torch_model`; tests that run requests build their own engine over its weights."""
    import janus_rt

    m = janus_rt.load(tiny_small_grid, device="cpu", dtype="float32")
    yield m
    m.close()


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """(dir, transformers model, tokenizers.Tokenizer) of a random HF-layout Janus."""
    transformers_oracle()
    from hf_fixtures import make_hf_checkpoint

    out = tmp_path_factory.mktemp("hf")
    model, tok = make_hf_checkpoint(out)
    return out, model, tok


@pytest.fixture(scope="session")
def official_from_hf(hf_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HF checkpoint's weights rewritten in the official layout (sharded .bin + index)."""
    from hf_fixtures import write_official_from_hf

    hf_dir, model, _ = hf_checkpoint
    return write_official_from_hf(hf_dir, model, tmp_path_factory.mktemp("official") / "ckpt", "sharded-bin")
