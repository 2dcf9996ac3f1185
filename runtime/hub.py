"""Resolve `--model`: a local checkpoint directory, or a Hugging Face hub id fetched when that is possible."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import CheckpointError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_path(model: str) -> Path:
    """Return a local directory for `model`; download a hub id with huggingface_hub when installed and online."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    if not HUB_ID.match(model):
        raise CheckpointError(f"{model}: no such directory; pass the folder holding config.json and the weights")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{model}: not a local directory, and huggingface_hub is not installed to fetch it. Either "
            f"`pip install huggingface_hub` or download it first (`hf download {model} --local-dir DIR`) "
            "and pass --model DIR"
        ) from None
    try:
        return Path(snapshot_download(repo_id=model))
    except Exception as e:  # offline, unknown repo, gated repo, ...
        raise CheckpointError(
            f"{model}: could not fetch from the Hugging Face hub ({type(e).__name__}: {e}). Download it on a "
            f"machine with network access (`hf download {model} --local-dir DIR`) and pass --model DIR"
        ) from None
