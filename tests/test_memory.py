"""Host memory while loading: about one copy of the weights in the target dtype (plus one tensor in flight).

Measured in a fresh process by sampling anonymous resident memory (`RssAnon`, Linux) during `janus_rt.load`.
Pages of the memory-mapped weight file are clean page cache and are not counted. A staging copy (e.g.
building the model in fp32 before casting, or materialising a whole state dict) would show as a second copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from janus_rt.checkpoint.tiny import TinySpec, write_tiny_checkpoint

pytestmark = pytest.mark.subprocess

PROBE = r"""
import json, sys, threading, time
def anon_mib():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
import torch, janus_rt
base, peak, done = anon_mib(), [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], anon_mib())
        time.sleep(0.002)
thread = threading.Thread(target=sample)
thread.start()
m = janus_rt.load(sys.argv[1], device="cpu", dtype=sys.argv[2])
done.set()
thread.join()
peak[0] = max(peak[0], anon_mib())
weights = sum(p.numel() * p.element_size() for p in m.model.parameters()) / 2**20
largest = max(p.numel() * 4 for p in m.model.parameters()) / 2**20
print(json.dumps({"growth": peak[0] - base, "weights": weights, "largest_fp32": largest}))
"""


@pytest.fixture(scope="module")
def medium_checkpoint(tmp_path_factory) -> Iterator[Path]:
    """A ~385 MB checkpoint, removed after the module whatever the outcome (pytest would keep it on a failure)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to read RssAnon")
    spec = TinySpec(hidden=768, layers=12, heads=12, kv_heads=12, intermediate=2048)
    folder = tmp_path_factory.mktemp("mem")
    yield write_tiny_checkpoint(folder / "ckpt", spec, weights_format="bin")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_load_holds_about_one_copy_of_the_weights(medium_checkpoint: Path, dtype: str):
    out = subprocess.run([sys.executable, "-c", PROBE, str(medium_checkpoint), dtype], capture_output=True, text=True,
                         check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["weights"] > 150  # big enough that a second copy could not hide in the slack below
    assert r["growth"] <= 1.25 * r["weights"] + r["largest_fp32"] + 32, r
