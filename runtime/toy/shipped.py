"""The shipped toy checkpoint: package data (`janus_rt/toy/checkpoint/`), named `toy` on the command line.

`--model toy` (and `janus_rt.load("toy")`) loads it, unless a folder named `toy` exists where the command runs
(a folder always wins). It is the only set of weights janus-rt ships: a ~3 M parameter model trained here on
procedural scenes (`janus_rt.toy.train`), not Janus.

The package holds its weights xz-compressed (`model.safetensors.xz`, 1.5 MB instead of 6.1: most of the file is the
written-down decoder and the per-code rows of the generation head, which compress well). The first use unpacks the
checkpoint into janus-rt's cache folder (`$JANUS_RT_CACHE_DIR`, default ~/.cache/janus-rt), as `toy-<sha256 prefix>/`,
written whole or not at all and checked against the sha256 that `toy.json` records; later uses load that folder.
To ship a newly trained toy: `python -m janus_rt.toy.train --out DIR --ship` (then pin its sha256 in tests/test_toy.py).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import shutil
from importlib import resources
from pathlib import Path

from janus_rt.errors import CheckpointError
from janus_rt.files import staged_folder
from janus_rt.kernels.tuning import cache_dir

TOY_NAME = "toy"
WEIGHTS = "model.safetensors"
PACKED_WEIGHTS = WEIGHTS + ".xz"
SMALL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "toy.json")
CHECKPOINT_FILES = (*SMALL_FILES, WEIGHTS)  # an unpacked checkpoint folder


def shipped_folder() -> Path:
    """The package data folder; FileNotFoundError naming what is missing when the install lacks it."""
    folder = Path(str(resources.files("janus_rt.toy").joinpath("checkpoint")))
    missing = [name for name in (*SMALL_FILES, PACKED_WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the toy checkpoint is incomplete in {folder} (missing {', '.join(missing)}): "
                                "reinstall janus-rt, or train one with `python -m janus_rt.toy.train --out DIR`")
    return folder


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CHECKPOINT_FILES)


def toy_checkpoint(cache: Path | None = None, source: Path | None = None) -> Path:
    """The toy's checkpoint folder (official layout), unpacked from the package (or a folder `pack` wrote) into
    `cache` (default: janus-rt's cache folder) on first use; CheckpointError if the unpacked weights do not match
    the recorded sha256 (and nothing is left behind)."""
    source = source or shipped_folder()
    digest = json.loads((source / "toy.json").read_text())["weights_sha256"]
    target = (cache or cache_dir()) / f"toy-{digest[:16]}"
    if _complete(target):
        return target
    try:
        with staged_folder(target, replace=True) as staging:
            for name in SMALL_FILES:
                shutil.copyfile(source / name, staging / name)
            with lzma.open(source / PACKED_WEIGHTS) as packed, open(staging / WEIGHTS, "wb") as weights:
                shutil.copyfileobj(packed, weights, 1 << 20)
            got = hashlib.sha256((staging / WEIGHTS).read_bytes()).hexdigest()
            if got != digest:
                raise CheckpointError(f"{source / PACKED_WEIGHTS} unpacks to weights with sha256 {got}, not the "
                                      f"recorded {digest} (toy.json): reinstall janus-rt")
    except FileExistsError:  # another process unpacked it at the same time
        if not _complete(target):
            raise
    return target


def copy_toy(out: Path) -> Path:
    """A copy of the shipped toy in `out`, written whole or not at all (an earlier complete copy is kept)."""
    if _complete(out):
        return out
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a copy of the toy checkpoint; pass another --out folder")
    source = toy_checkpoint()
    with staged_folder(out) as staging:
        for name in CHECKPOINT_FILES:
            shutil.copyfile(source / name, staging / name)
    return out


def pack(trained: Path, package_folder: Path | None = None) -> Path:
    """Write a trained checkpoint (`janus_rt.toy.train`'s output) into `package_folder` (default: the package's own
    checkpoint folder) as shipped: the small files as they are, the weights xz-compressed."""
    package_folder = package_folder or Path(str(resources.files("janus_rt.toy").joinpath("checkpoint")))
    with staged_folder(package_folder, replace=True) as staging:
        for name in SMALL_FILES:
            shutil.copyfile(trained / name, staging / name)
        with open(trained / WEIGHTS, "rb") as weights, \
                lzma.open(staging / PACKED_WEIGHTS, "wb", preset=9 | lzma.PRESET_EXTREME) as packed:
            shutil.copyfileobj(weights, packed, 1 << 20)
    return package_folder
