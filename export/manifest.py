"""The export manifest (`manifest.json`): what an export directory holds and where it came from.

It lists every file with its size and sha256, every graph with its inputs / outputs (names, dtypes, axes),
the opset and exporter, the export dtype, the source checkpoint's hash and the janus-rt version. Loaders
check it before opening any graph, and every error names the file at fault and what to do.

The source hash is the sha256 over (name, size, content) of the checkpoint's config.json, tokenizer.json and
weight files: the same checkpoint copied elsewhere has the same hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm

from janus_rt.checkpoint.files import find_weight_files
from janus_rt.errors import CheckpointError
from janus_rt.files import atomic_write_json

MANIFEST = "manifest.json"
FORMAT = "janus-rt-export"
FORMAT_VERSION = 1
# checkpoint files an export carries so that it loads without the checkpoint (config, tokenizer, processor)
SUPPORT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "preprocessor_config.json", "processor_config.json")
REEXPORT = "run `janus-rt export --model CHECKPOINT --out DIR` again into an empty or new folder"


def sha256_file(path: Path, bar: tqdm | None = None, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            if bar is not None:
                bar.update(len(block))
    return h.hexdigest()


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The files that define a checkpoint: config.json, tokenizer.json, the weight index and weight files."""
    weights = find_weight_files(model_dir)
    files = [model_dir / "config.json", model_dir / "tokenizer.json", *weights.files]
    if weights.index is not None:
        files.append(weights.index)
    return [f for f in files if f.is_file()]


def checkpoint_hash(model_dir: str | Path, progress: bool = False) -> str:
    """sha256 over (name, size, content) of the checkpoint's defining files (reads every weight byte)."""
    files = checkpoint_files(Path(model_dir))
    h = hashlib.sha256()
    with tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="hashing checkpoint",
              disable=not progress, leave=False) as bar:
        for f in sorted(files, key=lambda p: p.name):
            h.update(f"{f.name}\0{f.stat().st_size}\0".encode())
            h.update(bytes.fromhex(sha256_file(f, bar)))
    return h.hexdigest()


def file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def write_manifest(directory: Path, manifest: dict) -> Path:
    return atomic_write_json(directory / MANIFEST, manifest, ensure_ascii=False)


def read_manifest(directory: str | Path) -> dict:
    """The manifest of an export directory, with its format checked; CheckpointError says what to do."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such export directory; create it with "
                              f"`janus-rt export --model CHECKPOINT --out {directory}`")
    if not path.is_file():
        raise CheckpointError(f"{path}: not found, so {directory} is not a janus-rt export (or its export did not "
                              f"finish); create one with `janus-rt export --model CHECKPOINT --out DIR`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); {REEXPORT}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a janus-rt export manifest (no \"format\": \"{FORMAT}\"); {REEXPORT}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: export format version {manifest.get('format_version')!r}, this janus-rt reads "
                              f"version {FORMAT_VERSION}; {REEXPORT}")
    for key in ("graphs", "files", "source", "dtype"):
        if key not in manifest:
            raise CheckpointError(f"{path}: has no '{key}' entry; {REEXPORT}")
    return manifest


def verify_files(directory: Path, manifest: dict, full_hash: bool = False) -> None:
    """Every listed file exists with its size (and sha256 when `full_hash`), and the support files match.

    The copied config / tokenizer files are always hashed, first (they are small): a manifest copied from an
    export of another checkpoint fails here instead of running graphs against the wrong tokenizer or config.
    """
    for name in SUPPORT_FILES:  # first: a manifest copied from another export is the likelier story
        record, path = manifest["files"].get(name), directory / name
        if record is not None and path.is_file() and (path.stat().st_size != record["bytes"]
                                                      or sha256_file(path) != record["sha256"]):
            raise CheckpointError(f"{path}: differs from the one {directory / MANIFEST} lists: the manifest was written "
                                  f"for another checkpoint (or the file was edited); {REEXPORT}")
    for name, record in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: listed in {directory / MANIFEST} but missing; the export is incomplete: "
                                  f"{REEXPORT}")
        if path.stat().st_size != record["bytes"]:
            raise CheckpointError(f"{path}: {path.stat().st_size} bytes, the manifest says {record['bytes']}; the file "
                                  f"was changed or truncated after export: {REEXPORT}")
        if full_hash and sha256_file(path) != record["sha256"]:
            raise CheckpointError(f"{path}: sha256 differs from {directory / MANIFEST} (the file was changed after "
                                  f"export); {REEXPORT}")


def check_graph_io(path: Path, expected_inputs: list[dict], expected_outputs: list[dict],
                   inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> None:
    """Compare a graph's (name, dtype) inputs / outputs with the manifest's; raise naming the graph file."""
    for kind, want, got in (("inputs", expected_inputs, inputs), ("outputs", expected_outputs, outputs)):
        want_pairs = [(t["name"], t["dtype"]) for t in want]
        if list(got) != want_pairs:
            raise CheckpointError(
                f"{path}: graph {kind} {[f'{n}:{d}' for n, d in got]} differ from the manifest's "
                f"{[f'{n}:{d}' for n, d in want_pairs]}; the graph was replaced or exported by another version: {REEXPORT}"
            )
