"""Files and folders written whole or not at all, and what an `--out` folder may be: janus-rt's one home for both.

Atomic files: `atomic_write(path, write)` runs `write(tmp)` on a new hidden file beside `path` (same folder, hence
same file system), then `os.replace`s it onto `path`. A reader sees the old file or the new one, never half of
one; when `write` raises (or the process is interrupted) the old file is left as it was and the temp file is
removed. `atomic_write_bytes`, `atomic_write_text` and `atomic_write_json` are the usual cases. This guards
against interruptions, not power loss (no fsync). Missing parent folders are created.

Staged folders: `staged_folder(target)` yields a new hidden folder beside `target` to write everything into;
on success it is renamed into place, on an exception it is removed and `target` is untouched. An existing
non-empty `target` is replaced only when the caller allows it (after `check_out_folder` said it may be).

Temp files and folders are created with the ordinary permissions (0o666 / 0o777 less the umask), not the
private ones of `tempfile.mkstemp` / `mkdtemp`, so what lands in place is an ordinary file or folder. A staged
folder's content gets the same before it moves into place: a file a writer created private (safetensors'
`save_file` creates its file 0600) is widened to the umask's ordinary mode, like every other file.

Out folders (`check_out_folder`), checked before any slow work: an `--out` is never a file, and janus-rt must
be able to write where it goes. A command that adds files into it (images, a report) takes any folder; a
command that writes it whole (a checkpoint, an export) takes a missing or empty folder, or a folder of the
same kind (an earlier output it may replace).

(kernels/tuning.py keeps its own few lines of temp file + os.replace: janus_rt.kernels imports nothing else of
janus_rt.) Imports: the standard library and `janus_rt.errors` (itself standard library only), so an `--out`
refusal is the InputError the CLI reports with exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from janus_rt.errors import InputError

OutFolderState = Literal["missing", "empty", "same kind", "folder"]
NAME_TRIES = 100  # random temp names tried before giving up (a clash is already a 1-in-2^48 event)


# ------------------------------------------------------------------------------------------------- temp names
def _create_beside(target: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """A new hidden path `.<name>.<random><suffix>` beside `target`, created by `create` (which must fail with
    FileExistsError when the path is taken)."""
    for _ in range(NAME_TRIES):
        candidate = target.with_name(f".{target.name}.{secrets.token_hex(6)}{suffix}")
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{target.parent}: no free temporary name beside {target.name} after {NAME_TRIES} tries")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies


def _new_folder(path: Path) -> None:
    path.mkdir(mode=0o777)  # the umask applies


def current_umask() -> int:
    """The process's umask: read from /proc/self/status on Linux (no change to the process); elsewhere set and
    restored at once (os.umask has no read-only form)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_permissions(folder: Path) -> None:
    """Give what lies in `folder` that its writer made private (no group or other bits: mkstemp, safetensors) the
    ordinary mode instead: 0o666 (files) or 0o777 (folders and executables) less the umask."""
    umask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if mode & 0o077 == 0:
            ordinary = (0o777 if path.is_dir() or mode & 0o100 else 0o666) & ~umask  # executables stay so
            if ordinary != mode:
                path.chmod(ordinary)


# ----------------------------------------------------------------------------------------------- atomic files
def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` (it writes the whole content to the path it is given), then move `tmp` onto `path` in one
    step. On any failure `path` keeps its old content (or stays absent) and no temp file is left. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_beside(path, ".tmp", _new_file)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """`data` (any bytes-like object) as the whole content of `path`, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`text` as the whole content of `path` in UTF-8, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | Path, value: Any, *, indent: int | None = 2, ensure_ascii: bool = True,
                      allow_nan: bool = True) -> Path:
    """`value` as JSON (indented, one final newline) in `path`, atomically; the JSON is built before the file is
    touched, so a value JSON cannot hold (or NaN with allow_nan=False) raises and leaves `path` as it was."""
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii, allow_nan=allow_nan) + "\n"
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------------------------- staged folders
def _is_empty_folder(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _move_into_place(staging: Path, target: Path, replace: bool) -> None:
    """Rename the finished `staging` folder to `target`; an existing `target` is removed only after the new
    folder is in place (renamed aside first, put back if the move fails)."""
    if not os.path.lexists(target):
        os.replace(staging, target)
        return
    if not target.is_dir() or target.is_symlink():
        raise FileExistsError(f"{target} exists and is not a folder; it was not replaced")
    if _is_empty_folder(target):
        target.rmdir()
        os.replace(staging, target)
        return
    if not replace:
        raise FileExistsError(f"{target} exists and is not empty; it was not replaced")
    aside = _create_beside(target, ".old", _new_folder)
    aside.rmdir()  # a free name to rename the old folder to
    os.replace(target, aside)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a new, empty hidden folder beside `target`; write the whole folder there. When the block ends
    normally the folder becomes `target` (which may be missing or an empty folder; an existing non-empty folder
    is replaced only if `replace`, else FileExistsError); when it raises, the folder is removed and `target` is
    left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _create_beside(target, ".staging", _new_folder)
    try:
        yield staging
        _ordinary_permissions(staging)
        _move_into_place(staging, target, replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------------ out folders
def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_out_folder(out: str | Path, *, replaces: str | None = None, same_kind: Callable[[Path], bool] | None = None,
                     flag: str = "--out") -> OutFolderState:
    """What `out` may be, checked before any slow work; InputError (naming `flag`) otherwise.

    Always: `out` is not a file, and the nearest folder that exists on its way (itself, else a parent) can be
    written in.
    - `replaces=None`: the command adds files into `out` and keeps what is there (images, a report): any folder.
    - `replaces="<what the command writes, in words>"`: the command writes `out` whole (`staged_folder`): it must
      be missing, an empty folder, or a folder `same_kind` accepts (an earlier output of the same kind, which the
      command may replace or reuse).
    Returns "missing", "empty", "same kind" (non-empty, `same_kind` accepted it) or "folder" (non-empty, files
    are added into it)."""
    out = Path(out).expanduser()
    if os.path.lexists(out) and not out.is_dir():
        raise InputError(f"{flag} {out} exists and is a file, not a folder; pass a folder "
                         f"({'new or empty' if replaces else 'new or existing'})", flag)
    ancestor = _nearest_existing(out)
    if not ancestor.is_dir():
        raise InputError(f"{flag} {out}: {ancestor} is a file, not a folder", flag)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {out}: no permission to write in {ancestor}", flag)
    if not out.is_dir():
        return "missing"
    if not any(out.iterdir()):
        return "empty"
    if replaces is None:
        return "folder"
    if same_kind is not None and same_kind(out):
        return "same kind"
    raise InputError(f"{flag} {out}: not empty and not {replaces}; refusing to replace what is there: choose a new "
                     "or empty folder", flag)
