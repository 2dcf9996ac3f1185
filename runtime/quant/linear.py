"""`QuantLinear`: a linear layer whose weight is stored quantized (int8, int4 or fp8; see formats.py).

Its buffers are the stored tensors (`qweight`, `scales`, optional `zeros`, optional `bias`), so a model's
`state_dict` is the quantized checkpoint. `forward` is the torch path: dequantize to float32, cast to the
activation dtype, `F.linear` (the reference every other backend is checked against). The triton backend
calls `kernel_args()` and runs the fused dequant-GEMM instead (`runtime/backends/triton_transformer.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from janus_rt.kernels.reference_dequant import dequantize
from janus_rt.quant.formats import QuantSpec, quantize_weight


class QuantLinear(nn.Module):
    """y = x @ dequantize(qweight)^T (+ bias); `in_features` / `out_features` as nn.Linear's."""

    def __init__(self, in_features: int, out_features: int, spec: QuantSpec, has_bias: bool,
                 bias_dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        super().__init__()
        self.in_features, self.out_features, self.spec = in_features, out_features, spec
        for name, shape, dtype in self.buffer_shapes(in_features, out_features, spec, has_bias, bias_dtype):
            self.register_buffer(name, torch.empty(shape, dtype=dtype, device=device))
        if not has_bias:
            self.bias = None
        if spec.format != "int4" or not spec.zero_point:
            self.zeros = None

    @staticmethod
    def buffer_shapes(k: int, n: int, spec: QuantSpec, has_bias: bool,
                      bias_dtype: torch.dtype) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
        """(name, shape, dtype) of every stored tensor of an `[n, k]` linear in `spec`'s format."""
        if spec.format == "int4":
            groups = -(-k // spec.group_size)
            out = [("qweight", (n, groups * spec.group_size // 2), torch.uint8), ("scales", (n, groups), torch.float16)]
            if spec.zero_point:
                out.append(("zeros", (n, groups), torch.uint8))
        else:
            qdtype = torch.int8 if spec.format == "int8" else torch.float8_e4m3fn
            out = [("qweight", (n, k), qdtype), ("scales", (n,), torch.float32)]
        if has_bias:
            out.append(("bias", (n,), bias_dtype))
        return out

    @classmethod
    def from_linear(cls, linear: nn.Linear, spec: QuantSpec) -> "QuantLinear":
        """Quantize an nn.Linear (on its device); the float weight is not kept."""
        weight = linear.weight.detach()
        has_bias = linear.bias is not None
        layer = cls(linear.in_features, linear.out_features, spec, has_bias,
                    linear.bias.dtype if has_bias else torch.float32, device=weight.device)
        with torch.no_grad():
            for name, tensor in quantize_weight(weight, spec).items():
                getattr(layer, name).copy_(tensor)
            if has_bias:
                layer.bias.copy_(linear.bias.detach())
        return layer

    def kernel_args(self) -> dict:
        """Keyword arguments of `kernels.dequant_gemm.DequantLinear` (and of `kernels.reference_dequant.dequantize`)
        for this layer (x and bias excluded)."""
        return {"qweight": self.qweight, "scales": self.scales, "zeros": self.zeros, "fmt": self.spec.format,
                "group_size": self.spec.group_size, "in_features": self.in_features}

    def dequantized(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight `[out_features, in_features]` in `dtype` (dequantized in float32, then one rounding)."""
        return dequantize(dtype=dtype, **self.kernel_args())

    @property
    def weight_bytes(self) -> int:
        """Bytes of the stored weight (packed values, scales, zero points): what a decode step reads."""
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales, self.zeros) if t is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized(x.dtype), bias)

    def extra_repr(self) -> str:
        detail = f", group_size={self.spec.group_size}" if self.spec.format == "int4" else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.spec.format}"
                f"{detail}, bias={self.bias is not None}")
