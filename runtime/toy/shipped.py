"""Where the shipped toy checkpoint lives: package data (`janus_rt/toy/checkpoint/`), named `toy` on the command line.

`--model toy` (and `janus_rt.load("toy")`) loads it, unless a folder named `toy` exists where the command runs
(a folder always wins). It is the only set of weights janus-rt ships: a ~3 M parameter model trained here on
procedural scenes (`janus_rt.toy.train`), not Janus.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from janus_rt.files import staged_folder

TOY_NAME = "toy"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "preprocessor_config.json", "toy.json")


def toy_checkpoint() -> Path:
    """The shipped toy's folder; FileNotFoundError naming what is missing when the install lacks it."""
    folder = Path(str(resources.files("janus_rt.toy").joinpath("checkpoint")))
    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the toy checkpoint is incomplete in {folder} (missing {', '.join(missing)}): "
                                "reinstall janus-rt, or train one with `python -m janus_rt.toy.train --out DIR`")
    return folder


def copy_toy(out: Path) -> Path:
    """A copy of the shipped toy in `out`, written whole or not at all (an earlier complete copy is kept)."""
    if all((out / name).is_file() for name in CHECKPOINT_FILES):
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a copy of the toy checkpoint; pass another --out folder")
    source = toy_checkpoint()
    with staged_folder(out) as staging:
        for name in CHECKPOINT_FILES:
            shutil.copyfile(source / name, staging / name)
    return out
