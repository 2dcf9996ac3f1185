"""What this machine can run, decided before anything is built: the triton backend without a GPU, host memory.

Without a GPU the triton backend's kernels run in the Triton interpreter: seconds per image for `--arch tiny`,
hours or days for a real architecture (the 1.3B shape once ran for hours without a word). So on a CPU a triton
backend is skipped with a note unless the architecture is tiny or the user asked for the CPU explicitly
(`--device cpu`), which runs it with a warning. And a model built on the CPU lives in host memory: its weights are
checked against what the machine has before a byte is allocated (Janus-Pro-7B in float32 needs ~29.5 GB; without
the check, a raw allocator traceback after minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from janus_rt.model.config import JanusConfig
from janus_rt.errors import InputError
from janus_rt.checkpoint.info import count_parameters
from janus_rt.model.janus import JanusModel

from janus_rt.bench.engines import backend_variant

INTERPRETER_ARCHS = ("tiny",)  # architectures the Triton interpreter runs in seconds
GB = 1e9


def backends_for_device(backends: Sequence[str], device: torch.device, device_given: bool,
                        arch: str) -> tuple[tuple[str, ...], list[str]]:
    """(the backends to run here, notes on the ones skipped or slow). See the module docstring."""
    if device.type == "cuda" or arch in INTERPRETER_ARCHS:
        return tuple(backends), []
    kept, notes = [], []
    for label in backends:
        if backend_variant(label)[0] != "triton":
            kept.append(label)
        elif device_given:
            kept.append(label)
            notes.append(f"backend {label!r} runs in the Triton interpreter (--device cpu, no GPU): expect hours per "
                         f"image at the {arch} shape; --arch tiny runs it in seconds")
        else:
            notes.append(f"backend {label!r} skipped: no GPU here, and its kernels would run in the Triton interpreter "
                         f"(hours per image at the {arch} shape); --arch tiny runs it in seconds, --device cpu runs it "
                         f"anyway")
    return tuple(kept), notes


def parameter_count(cfg: JanusConfig) -> int:
    """Parameters of the model `cfg` describes, counted on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return count_parameters(JanusModel(cfg))


def host_bytes_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes (Linux), or None where the machine does not say."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_host_memory(arch: str, parameters: int, dtype: torch.dtype, copies: int, available: int | None) -> None:
    """Refuse, with what to do, a CPU model whose weights (`copies` of them) exceed the available host memory."""
    elem = torch.empty((), dtype=dtype).element_size()
    need = parameters * elem * copies
    if available is None or need <= available:
        return
    name = str(dtype).removeprefix("torch.")
    second = " (the transformers column holds a second copy: --no-hf drops it)" if copies > 1 else ""
    smaller = "" if elem <= 2 else f"--dtype bf16 ({parameters * 2 * copies / GB:.1f} GB), "
    raise InputError(f"--arch {arch} in {name} on the CPU needs about {need / GB:.1f} GB of host memory for its weights "
                     f"({parameters / 1e9:.2f} B parameters x {elem} bytes{' x 2' if copies > 1 else ''}){second}, and "
                     f"this machine has {available / GB:.1f} GB available: use {smaller}--arch tiny for a CPU smoke "
                     f"run, or a GPU")
