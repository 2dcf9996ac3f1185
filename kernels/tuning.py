"""Tile choices that outlive the process: the decode GEMMs' autotuning, remembered per GPU and version.

`triton.autotune` re-times every config for every weight shape in every new process (seconds before the first
image). Here a launcher owns a `PersistentTuner` per kernel (`tile_tuner.py`), which asks a `TileChoices` store
(this file) first and times the configs only for a shape nobody has tuned yet on this GPU with these versions,
then writes the winner down. This file: where the caches live, the GPU and version identity, `Tile`, the
tuning keys, and the store.

Where things live (`cache_dir()`): `$JANUS_RT_CACHE_DIR` if set, else `$XDG_CACHE_HOME/janus-rt`, else
`~/.cache/janus-rt`.
- `<cache>/autotune/<slug>.json`: the chosen tiles. The slug names the GPU (name + compute capability), the
  janus-rt version and the Triton version, so another GPU or a new release never reuses a stale choice. Inside,
  an entry per "kernel|shape and dtypes|config list" key holds BLOCK_N, BLOCK_K, num_warps and num_stages (and
  SPLIT_K for a kernel that splits K).
- `<cache>/triton`: Triton's compiled kernels, once `configure_triton_cache()` has pointed `TRITON_CACHE_DIR`
  there (only when that variable is unset). Triton reads the variable whenever it compiles, so the call must
  come before the first compile whose result should land there (the runtime calls it when it sets up its Triton
  backend); the same `JANUS_RT_CACHE_DIR` then moves both caches.

The file is shared by processes: a write re-reads it and merges under an advisory lock (POSIX), then replaces it
atomically (temp file in the same folder + os.replace), so concurrent tuners keep each other's entries and a
reader never sees half a file. A corrupt or unreadable file is ignored with a warning naming it (and replaced on
the next write); a read-only cache folder degrades to choices kept in memory, with one warning, never an error.

Batch invariance (see skinny_gemm.py): a tuning key must never contain M, so a tile (hence each row's reduction
order) depends on the weight shape and dtypes only; `PersistentTuner.choose` refuses an "M" key. Every config
is correct, the choice only moves speed: with the choice persisted, all processes on one GPU + versions run the
same tile, hence the same bits.

No module-level mutable state: stores and tuners are objects the launchers own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, NamedTuple

from janus_rt import version

try:  # advisory file lock around read-merge-replace (POSIX; elsewhere the merge alone narrows the race)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

ENV_CACHE_DIR = "JANUS_RT_CACHE_DIR"
FILE_FORMAT = 1  # the JSON layout below; a file with another format is ignored (and replaced on the next write)
FIELDS = ("BLOCK_N", "BLOCK_K", "num_warps", "num_stages")


# ---------------------------------------------------------------------------------------------- locations


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """janus-rt's cache folder: $JANUS_RT_CACHE_DIR, else $XDG_CACHE_HOME/janus-rt, else ~/.cache/janus-rt
    (not created here)."""
    if env.get(ENV_CACHE_DIR):
        return Path(env[ENV_CACHE_DIR]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "janus-rt"
    return Path.home() / ".cache" / "janus-rt"


def configure_triton_cache(env: MutableMapping[str, str] = os.environ) -> Path:
    """Point Triton's compile cache at `cache_dir()/triton` unless TRITON_CACHE_DIR is already set; returns the
    folder Triton will use. Call it before the first Triton compile (Triton reads TRITON_CACHE_DIR when it
    compiles; kernels compiled earlier stay where they went). If that folder cannot be created, TRITON_CACHE_DIR
    is left unset (Triton keeps its default, ~/.triton/cache) with a warning."""
    if env.get("TRITON_CACHE_DIR"):
        return Path(env["TRITON_CACHE_DIR"])
    folder = cache_dir(env) / "triton"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        warnings.warn(f"janus-rt: cannot create Triton's cache folder {folder} ({e}); Triton keeps its default",
                      RuntimeWarning, stacklevel=2)
        return Path(env.get("TRITON_HOME", str(Path.home()))) / ".triton" / "cache"
    env["TRITON_CACHE_DIR"] = str(folder)
    return folder


def gpu_identity(device: Any = None) -> tuple[str, tuple[int, int] | None]:
    """(name, compute capability) of a CUDA device (the current one by default); ("cpu", None) without CUDA or
    for a non-CUDA device (the interpreter)."""
    import torch

    dev = torch.device(device) if device is not None else None
    if (dev is not None and dev.type != "cuda") or not torch.cuda.is_available():
        return "cpu", None
    props = torch.cuda.get_device_properties(dev if dev is not None and dev.index is not None
                                             else torch.cuda.current_device())
    return props.name, (props.major, props.minor)


def janus_rt_version() -> str:
    """janus-rt's version, read at each call from its home (`janus_rt.version`, a module that imports nothing)."""
    return str(version.__version__)


def triton_version() -> str:
    import triton

    return str(triton.__version__)


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def device_slug(device: Any = None) -> str:
    """File-name-safe identity of (GPU name, compute capability, janus-rt version, Triton version), e.g.
    "nvidia-h200-sm90-janus-rt-0.1.0-triton-3.6.0"."""
    name, capability = gpu_identity(device)
    parts = [name]
    if capability is not None:
        parts.append(f"sm{capability[0]}{capability[1]}")
    parts += [f"janus-rt-{janus_rt_version()}", f"triton-{triton_version()}"]
    return "-".join(_slugify(p) for p in parts)


# ---------------------------------------------------------------------------------------------- configs


class Tile(NamedTuple):
    """One launch config of a tiled GEMM kernel. SPLIT_K (optional: kernels that split K take it): the number of
    K ranges reduced by separate programs, a per-shape choice like the others (never a function of M)."""

    BLOCK_N: int
    BLOCK_K: int
    num_warps: int
    num_stages: int
    SPLIT_K: int | None = None

    def kwargs(self) -> dict[str, int]:
        """The launch keyword arguments (constexpr tile sizes + Triton's launch options); also the stored JSON form
        (no SPLIT_K field for kernels that do not split K)."""
        return {k: v for k, v in self._asdict().items() if v is not None}

    @classmethod
    def parse(cls, value: Any) -> Tile:
        """A Tile from a tuple (BLOCK_N, BLOCK_K, num_warps, num_stages[, SPLIT_K]), a Tile or a dict with those
        fields."""
        if isinstance(value, Mapping):
            if set(value) not in (set(FIELDS), set(FIELDS) | {"SPLIT_K"}):
                raise ValueError(f"a tile needs exactly the fields {FIELDS} (+ SPLIT_K), got {sorted(value)}")
            value = tuple(value[f] for f in FIELDS) + ((value["SPLIT_K"],) if "SPLIT_K" in value else ())
        value = tuple(value)
        if len(value) == len(FIELDS) + 1 and value[-1] is None:
            value = value[:-1]
        if len(value) not in (len(FIELDS), len(FIELDS) + 1) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise ValueError(f"a tile is 4 positive ints {FIELDS} (+ SPLIT_K), got {value!r}")
        return cls(*value)


def config_digest(configs: Iterable[Tile]) -> str:
    """A short hash of a config list (part of every key: editing a kernel's configs re-tunes)."""
    return hashlib.sha1(repr([tuple(v for v in c if v is not None) for c in configs]).encode()).hexdigest()[:10]


def tuning_key(kernel_name: str, key_values: Mapping[str, Any], configs: Iterable[Tile] = (),
               digest: str | None = None) -> str:
    """The store key: "kernel|K=..,N=..,..|configs=<hash of the config list>". The config list is part of the key
    so that editing a kernel's configs re-tunes instead of reusing a choice made among other candidates
    (`digest`: that hash computed once by the caller)."""
    if "M" in key_values or "m" in key_values:
        raise ValueError(f"{kernel_name}: a tuning key must not contain M (the tile must not depend on the batch: "
                         f"batch invariance), got {dict(key_values)}")
    shape = ",".join(f"{k}={key_values[k]}" for k in sorted(key_values))
    return f"{kernel_name}|{shape}|configs={digest if digest is not None else config_digest(configs)}"


# ---------------------------------------------------------------------------------------------- the store


class TileChoices:
    """Chosen tiles, persisted as JSON at `directory/<slug>.json` (directory: `cache_dir()/autotune`; slug:
    `device_slug(device)`), both resolved at first use. Loaded lazily, once; `put` merges with the file's current
    contents and replaces it atomically. Never raises for I/O: a bad file is ignored with a warning, a read-only
    folder keeps the choices in memory (one warning)."""

    def __init__(self, directory: str | os.PathLike | None = None, slug: str | None = None,
                 device: Any = None) -> None:
        self._directory = Path(directory) if directory is not None else None
        self._slug = slug
        self._device = device
        self._path: Path | None = None
        self._entries: dict[str, dict[str, int]] | None = None
        self._writable = True
        self._warned_bad_file = False

    @property
    def path(self) -> Path:
        """The JSON file (resolved once: cache folder from the environment, slug from the GPU and versions)."""
        if self._path is None:
            directory = self._directory if self._directory is not None else cache_dir() / "autotune"
            self._path = directory / f"{self._slug or device_slug(self._device)}.json"
        return self._path

    @property
    def persistent(self) -> bool:
        """False once a write failed (read-only folder): choices then live in memory only."""
        return self._writable

    def get(self, key: str) -> dict[str, int] | None:
        """The stored choice {BLOCK_N, BLOCK_K, num_warps, num_stages[, SPLIT_K]} for `key`, or None."""
        entries = self._load()
        choice = entries.get(key)
        return dict(choice) if choice is not None else None

    def put(self, key: str, choice: Mapping[str, int] | Tile) -> None:
        """Remember `choice` for `key`, in memory and (merged with what other processes wrote) in the file."""
        value = Tile.parse(choice).kwargs()
        entries = self._load()
        entries[key] = dict(value)
        if not self._writable:
            return
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                on_disk = self._read(path)
                merged = {**on_disk, **entries}
                self._write(path, merged)
            self._entries = merged
        except OSError as e:
            self._writable = False
            warnings.warn(f"janus-rt: cannot write autotune choices to {path} ({e}); keeping them in memory for "
                          f"this process", RuntimeWarning, stacklevel=2)

    # -- file handling

    def _load(self) -> dict[str, dict[str, int]]:
        if self._entries is None:
            self._entries = self._read(self.path)
        return self._entries

    def _read(self, path: Path) -> dict[str, dict[str, int]]:
        """The file's valid entries; {} when it is missing, and (with a warning) when it is unreadable or corrupt."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as e:
            self._bad_file(path, f"unreadable: {e}")
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or not isinstance(data.get("entries"),
                                                                                                  dict):
                raise ValueError(f"not a format-{FILE_FORMAT} tile file")
            return {str(k): Tile.parse(v).kwargs() for k, v in data["entries"].items()}
        except (ValueError, TypeError) as e:
            self._bad_file(path, f"corrupt: {e}")
            return {}

    def _bad_file(self, path: Path, why: str) -> None:
        if not self._warned_bad_file:
            self._warned_bad_file = True
            warnings.warn(f"janus-rt: ignoring the autotune cache file {path} ({why}); it will be rewritten",
                          RuntimeWarning, stacklevel=4)

    def _write(self, path: Path, entries: Mapping[str, Mapping[str, int]]) -> None:
        data = {"format": FILE_FORMAT, "slug": path.stem, "entries": {k: dict(entries[k]) for k in sorted(entries)}}
        # temp file + os.replace by hand, not janus_rt.files: janus_rt.kernels imports nothing else of janus_rt
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @staticmethod
    @contextlib.contextmanager
    def _locked(path: Path):
        """Hold an exclusive advisory lock on `<file>.lock` (no-op without fcntl)."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
