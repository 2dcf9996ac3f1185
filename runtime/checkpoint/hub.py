"""Resolve `--model`: a local checkpoint directory, or a Hugging Face hub id fetched when that is possible."""

from __future__ import annotations

import os
import re
from pathlib import Path

from janus_rt.errors import CheckpointError
from janus_rt.toy.shipped import TOY_NAME, toy_checkpoint

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # as huggingface_hub parses HF_HUB_OFFLINE


def hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as set now (huggingface_hub reads them only once, at import)."""
    return any(os.environ.get(name, "").upper() in TRUE_VALUES for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_path(model: str) -> bool:
    """True when `model` can only be meant as a local path: it starts with '.', '~' or '/', uses a backslash or
    more than one '/', or its first part is an existing local folder (`exports/pro-1b` with `exports/` here)."""
    if model.startswith((".", "~", "/")) or "\\" in model or model.count("/") > 1:
        return True
    first = model.split("/", 1)[0]
    return "/" in model and Path(first).is_dir()


def _first_line(error: Exception, limit: int = 160) -> str:
    """`error` in one short line: its type and the first line of its text (huggingface_hub's messages run to
    several lines of request ids and URLs)."""
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def resolve_model_path(model: str) -> Path:
    """Return a local directory for `model`; download a hub id with huggingface_hub when installed and online;
    `toy` is the shipped toy checkpoint (`janus_rt.toy.shipped`) unless a folder of that name is here.
    A name that is neither a folder here nor fetchable says so in that order: first that no such folder exists
    (relative to where the command runs), then the hub attempt, in one line."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    if model == TOY_NAME:  # the shipped toy (no folder of that name here)
        return toy_checkpoint()
    if not HUB_ID.match(model) or looks_like_path(model):
        raise CheckpointError(f"{model}: no such directory; pass the folder holding config.json and the weights")
    not_here = f"{model}: no such folder here ({Path.cwd()})"
    download = (f"download it first (`hf download {model} --local-dir DIR`, where the network is reachable) and pass "
                "--model DIR")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{not_here}; as a hub id it cannot be fetched: huggingface_hub is not installed "
                              f"(`pip install huggingface_hub`). Pass the checkpoint folder, or {download}") from None
    offline = hub_offline()
    try:
        return Path(snapshot_download(repo_id=model, local_files_only=offline))
    except Exception as e:  # offline, unknown repo, gated repo, ...
        if offline:
            raise CheckpointError(
                f"{not_here}; as a hub id: the Hugging Face hub is in offline mode (HF_HUB_OFFLINE) with no cached "
                f"copy of it. Pass the checkpoint folder, or {download}") from None
        raise CheckpointError(
            f"{not_here}; as a hub id it could not be fetched from the Hugging Face hub ({_first_line(e)}). Pass the "
            f"checkpoint folder, or {download}") from None
