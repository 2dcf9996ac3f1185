"""Which layers of a Janus model are quantized, and swapping them for `QuantLinear`s.

Quantized: every linear of the transformer (qkv, o, gate|up, down of each layer) and the two heads
(`lm_head`, `gen_head.proj` / `gen_head.out`): the weights a decode step reads, ~all of its bytes.
Kept in the model's dtype: the embeddings (a step reads one row each), the norms, the aligners (a few MB),
the SigLIP encoder and the VQ decoder (run once per image: compute-bound, not bandwidth-bound, and the
VQ decoder's convolutions are where pixel quality is made).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from janus_rt.model.config import JanusConfig
from janus_rt.model.janus import JanusModel
from janus_rt.quant.formats import QuantSpec
from janus_rt.quant.linear import QuantLinear

HEADS = ("lm_head", "gen_head.proj", "gen_head.out")
LAYER_LINEARS = ("attn.qkv_proj", "attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj")


def quantized_module_names(cfg: JanusConfig) -> list[str]:
    """Names (as in `named_modules`) of the linears a quantized model stores quantized."""
    layers = [f"llm.layers.{i}.{name}" for i in range(cfg.llm.num_layers) for name in LAYER_LINEARS]
    return layers + list(HEADS)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def quantized_weight_names(cfg: JanusConfig) -> frozenset[str]:
    """Parameter names of the float weights that a quantized model stores quantized."""
    return frozenset(f"{name}.weight" for name in quantized_module_names(cfg))


def quantize_on_complete(model: nn.Module, spec: QuantSpec) -> Callable[[str], None]:
    """The callback for `load_weights(on_complete=...)` that quantizes each target linear as soon as its weight is
    complete, so only a few float layers exist at a time."""
    weights = quantized_weight_names(model.cfg)

    def on_complete(param: str) -> None:
        if param not in weights:
            return
        module_name = param.removesuffix(".weight")
        replace_module(model, module_name, QuantLinear.from_linear(model.get_submodule(module_name), spec))

    return on_complete


def quantize_model(model: nn.Module, spec: QuantSpec, progress: bool = False) -> nn.Module:
    """Replace every target linear of a loaded model by its quantized version, in place; returns the model."""
    from tqdm.auto import tqdm

    for name in tqdm(quantized_module_names(model.cfg), desc=f"quantizing to {spec.format}", disable=not progress):
        layer = model.get_submodule(name)
        if not isinstance(layer, QuantLinear):
            replace_module(model, name, QuantLinear.from_linear(layer, spec))
    return model


def install_empty_quant_linears(model: nn.Module, spec: QuantSpec, device: torch.device,
                                bias_dtype: torch.dtype) -> None:
    """Put uninitialised QuantLinears (right shapes, on `device`) where a quantized checkpoint's tensors go."""
    for name in quantized_module_names(model.cfg):
        layer = model.get_submodule(name)
        replace_module(model, name, QuantLinear(layer.in_features, layer.out_features, spec, layer.bias is not None,
                                                bias_dtype, device=device))


def weight_format(model: nn.Module) -> str | None:
    """The quantization format of a model's linears ("int4 (groups of 128)", ...), None for a float model."""
    for module in model.modules():
        if isinstance(module, QuantLinear):
            spec = module.spec
            return f"{spec.format} (groups of {spec.group_size})" if spec.format == "int4" else spec.format
    return None


def quantized_weight_bytes(model: nn.Module) -> dict[str, int]:
    """{"quantized": bytes of the QuantLinears' stored weights, "float": bytes of every other parameter}."""
    quant = sum(m.weight_bytes + (m.bias.numel() * m.bias.element_size() if m.bias is not None else 0)
                for m in model.modules() if isinstance(m, QuantLinear))
    float_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    return {"quantized": quant, "float": float_bytes}


IMAGE_STEP_MODULES = ("gen_aligner", "llm.layers", "llm.norm", "gen_head")  # what one image decode step reads
TEXT_STEP_MODULES = ("llm.layers", "llm.norm", "lm_head")  # one text decode step (+ one embedding row)


def step_weight_bytes(cfg: JanusConfig, dtype: torch.dtype, spec: QuantSpec | None = None) -> dict[str, int]:
    """Weight bytes one decode step reads ({"image", "text"}), float in `dtype` or quantized to `spec`."""
    with torch.device("meta"):
        model = JanusModel(cfg).to(dtype)
    if spec is not None:
        install_empty_quant_linears(model, spec, torch.device("meta"), dtype)

    def size(names: tuple[str, ...]) -> int:
        tensors = {id(t): t for n in names for t in [*model.get_submodule(n).parameters(),
                                                      *model.get_submodule(n).buffers()]}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    return {"image": size(IMAGE_STEP_MODULES), "text": size(TEXT_STEP_MODULES)}
