"""Building a quantized model: from a quantized folder as stored, or from a float checkpoint at load time.

At load time (`janus_rt.load(DIR, quantize="int8")`) each target linear is quantized as soon as its weight
is read completely and its float copy is dropped, so peak memory stays near the quantized model plus a few
float layers (checkpoint keys come layer by layer), not the float model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from janus_rt.checkpoint.weights import load_weights
from janus_rt.model.config import JanusConfig
from janus_rt.errors import InputError
from janus_rt.model.janus import JanusModel, build_empty_model
from janus_rt.quant.checkpoint import load_quantized_weights, read_quant_block, spec_of
from janus_rt.quant.formats import QuantSpec
from janus_rt.quant.model import install_empty_quant_linears, quantize_on_complete, quantized_weight_names


def as_spec(quantize: str | QuantSpec) -> QuantSpec:
    """`quantize=` as given by a caller ("int8" | "int4" | "fp8" or a QuantSpec) -> QuantSpec."""
    if isinstance(quantize, QuantSpec):
        return quantize
    if not isinstance(quantize, str):
        raise InputError(f"quantize must be 'int8', 'int4', 'fp8' or a QuantSpec, got {quantize!r}", param="quantize")
    return QuantSpec(quantize)


def check_format_supported(spec: QuantSpec, device: torch.device) -> None:
    """fp8 weights need fp8 hardware on a GPU: Ada or Hopper (compute capability 8.9+); refuse elsewhere."""
    if spec.format != "fp8" or device.type != "cuda":
        return
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        name = torch.cuda.get_device_name(device)
        raise InputError(f"fp8 weights need an Ada or Hopper GPU (compute capability 8.9+); {name} is sm_{major}{minor}: "
                         "use int8 (same bytes per weight, runs on every GPU) or int4", param="quantize")


def build_quantized_from_folder(path: Path, cfg: JanusConfig, device: torch.device, dtype: torch.dtype,
                                progress: bool) -> JanusModel:
    """The model of a quantized checkpoint folder, as stored."""
    spec = spec_of(read_quant_block(path))
    check_format_supported(spec, device)
    model = build_empty_model(cfg, device, dtype, skip=quantized_weight_names(cfg))
    install_empty_quant_linears(model, spec, device, dtype)
    load_quantized_weights(model, path, progress=progress)
    return model


def build_quantized_at_load(weights, cfg: JanusConfig, spec: QuantSpec, device: torch.device, dtype: torch.dtype,
                            progress: bool) -> JanusModel:
    """A float checkpoint's model, each target linear quantized as soon as it is read (see module docstring)."""
    check_format_supported(spec, device)
    model = build_empty_model(cfg, device, dtype, skip=quantized_weight_names(cfg))
    load_weights(model, weights, progress=progress, on_complete=quantize_on_complete(model, spec))
    return model
