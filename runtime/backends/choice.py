"""What a model runs on: the backend (torch, triton, or an exported graph), the device and the dtype.

`make_backend` imports the triton backend (and so triton and the kernels) only when it is chosen: start-up time.
"""

from __future__ import annotations

import torch

from janus_rt.engine import StepBackend
from janus_rt.errors import InputError
from janus_rt.model.janus import JanusModel
from janus_rt.spelling import API, Spelling
from janus_rt.backends.eager import TorchBackend
from janus_rt.backends.triton_ops import Fusions


BACKENDS = ("torch", "triton", "onnxruntime", "tensorrt")  # the last two run exported graphs (janus_rt.export)
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:  # bf16 on CUDA like the reference; fp16 on pre-Ampere GPUs, which lack fast bf16
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported; use float32, bfloat16 or float16")
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device | None, spelling: Spelling = API) -> torch.device:
    """The torch device to run on (CUDA when available by default); refuses one this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"{spelling.setting('device', device)}: not a valid torch device ({e}); "
                         f"use e.g. {spelling.setting('device', 'cuda')} or {spelling.setting('device', 'cpu')}",
                         param="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{spelling.setting('device', device)}: CUDA is not available on this machine; "
                         f"use {spelling.setting('device', 'cpu')}", param="device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"{spelling.setting('device', device)}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s), numbered from 0", param="device")
    return dev


def parse_fusions(fusions: "str | Fusions | None", backend: str) -> "Fusions | None":
    """`fusions=` of `load`, checked: a `Fusions`, or None (the backend's default)."""
    if fusions is None or isinstance(fusions, Fusions):
        parsed = fusions
    else:
        try:
            parsed = Fusions.parse(str(fusions))
        except ValueError as e:
            raise InputError(str(e), param="fusions") from None
    if parsed is not None and parsed != Fusions() and backend != "triton":
        raise InputError(f"fused kernels (fusions) are an option of the triton backend; backend {backend!r} has none: "
                         "drop them or use the triton backend", param="fusions")
    return parsed


def make_backend(backend: str, model: JanusModel, fusions: "Fusions | None" = None) -> StepBackend:
    """The step backend of a torch-module backend over a loaded model (`fusions`: the triton backend's optional
    fused kernels, None for its default)."""
    if backend == "torch":
        return TorchBackend(model)
    if backend == "triton":
        from janus_rt.backends.triton import TritonBackend  # start-up time: triton and its kernels, when chosen

        return TritonBackend(model) if fusions is None else TritonBackend(model, fusions=fusions)
    raise InputError(f"backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")
