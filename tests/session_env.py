"""A test run's own folder for every cache and temp tree: nothing in the user's home, nothing left behind.

Left alone, a run would write tile choices into `~/.cache/janus-rt/autotune`, Triton kernels into
`~/.triton/cache`, onnxruntime's device id into `~/.cache/Microsoft`, and leave Ray session folders and
`torchinductor_<user>` and onnxruntime's `.ses` under the temp dir. `redirect(root)` points each of them, and pytest's own base temp folder,
into one session folder; the conftest removes that folder after a passing run and keeps it after a failing one.
Subprocesses started by tests inherit the environment, so they write there too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# variable -> sub-folder of the session folder
REDIRECTED = {
    "JANUS_RT_CACHE_DIR": "janus-rt",      # tile choices (kernels/tuning.py)
    "TRITON_CACHE_DIR": "triton",          # Triton's compiled kernels
    "TORCHINDUCTOR_CACHE_DIR": "inductor",  # torch.compile / inductor (default /tmp/torchinductor_<user>)
    "RAY_TMPDIR": "ray",                    # Ray's session folders and sockets (default /tmp/ray)
    "XDG_CACHE_HOME": "xdg-cache",          # everything else that caches under ~/.cache (onnxruntime, hub clients)
    "TMPDIR": "tmp",                        # every other temp file (onnxruntime leaves $TMPDIR/.ses)
}
PYTEST_TEMP = "pytest"                      # pytest's base temp folder, unless --basetemp names one


def redirect(root: Path, environ: dict[str, str] | os._Environ) -> dict[str, str]:
    """Point every variable of REDIRECTED at its folder under `root` (created); returns {variable: folder}."""
    chosen = {}
    for variable, sub in REDIRECTED.items():
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        environ[variable] = chosen[variable] = str(folder)
    tempfile.tempdir = None  # tempfile re-reads TMPDIR at its next call
    return chosen
