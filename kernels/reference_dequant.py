"""The dequant GEMMs' storage formats in plain torch: the checks of a stored weight, dequantization, and the reference.

The formats (`dequant_gemm.py`'s docstring has the layouts): int8 and fp8 with one float32 scale per output row;
int4 in groups of G along K, two nibbles per byte, float16 scales and optional uint8 zero points. `dequantize` is
the torch path of a quantized linear (prefill, and `QuantLinear.forward`: dequantize once, then a regular GEMM);
`dequant_gemm_ref` is the kernels' reference ("dequantize in fp32, matmul in fp32 or wider"). Imports torch only
(no triton): the torch backend runs quantized models without the kernels.
"""

from __future__ import annotations

import torch

FORMATS = ("int8", "int4", "fp8")


def dequantize_int8(qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """int8 `[N, K]`, float32 scale `[N]` -> fp32 `[N, K]`."""
    return qweight.float() * scale.float()[:, None]


def unpack_int4(qweight: torch.Tensor) -> torch.Tensor:
    """uint8 `[N, K_pad / 2]` -> the nibbles as int32 `[N, K_pad]` in k order (k = 2j low, k = 2j + 1 high)."""
    q = qweight.to(torch.int32)
    return torch.stack([q & 15, q >> 4], dim=-1).reshape(qweight.shape[0], 2 * qweight.shape[1])


def dequantize_int4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group_size: int,
                    in_features: int) -> torch.Tensor:
    """Packed int4 `[N, K_pad / 2]`, fp16 scales and uint8 zeros (or None: 8) `[N, K_pad / G]` -> fp32
    `[N, in_features]` (padding columns dropped)."""
    q = unpack_int4(qweight)  # [N, K_pad]
    z = zeros.to(torch.int32) if zeros is not None else torch.full_like(scales, 8, dtype=torch.int32)
    w = (q - z.repeat_interleave(group_size, dim=1)).float() * scales.float().repeat_interleave(group_size, dim=1)
    return w[:, :in_features]


def dequantize_fp8(qweight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """float8_e4m3fn `[N, K]`, float32 scale `[N]` -> fp32 `[N, K]`."""
    return qweight.float() * scale.float()[:, None]


def dequant_gemm_ref(x: torch.Tensor, w_fp32: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x.float() @ w^T (+ bias): "dequantize, matmul in fp32" (pass float64 tensors for a wider reference)."""
    x = x.float() if x.dtype != torch.float64 else x
    w = w_fp32.to(x.dtype)
    y = x @ w.T
    return y + bias.to(y.dtype) if bias is not None else y


def weight_error(fmt: str, msg: str) -> ValueError:
    """The error of a bad quantized operand, named after the kernel family."""
    return ValueError(f"dequant_gemm[{fmt}]: {msg}")


def describe_tensor(t: torch.Tensor | None) -> str:
    """`dtype [shape]` of a tensor (or None), for error messages."""
    return "None" if t is None else f"{t.dtype} {list(t.shape)}"


def check_weight(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, fmt: str,
                 group_size: int, in_features: int | None) -> tuple[int, int]:
    """Validate a quantized weight; returns (N, K) with K the logical in_features."""
    if fmt not in FORMATS:
        raise ValueError(f"dequant_gemm: fmt must be one of {FORMATS}, got {fmt!r}")
    if not isinstance(qweight, torch.Tensor) or qweight.dim() != 2:
        got = describe_tensor(qweight) if isinstance(qweight, torch.Tensor) else type(qweight).__name__
        raise weight_error(fmt, f"qweight must be a 2-D tensor, got {got}")
    if qweight.stride(1) != 1 and qweight.numel() > 0:
        raise weight_error(fmt, f"qweight rows must be contiguous (stride(1) == 1), got strides {list(qweight.stride())}")
    n = qweight.shape[0]
    if not isinstance(scales, torch.Tensor):
        raise weight_error(fmt, f"scales must be a tensor, got {type(scales).__name__}")
    if fmt in ("int8", "fp8"):
        want = torch.int8 if fmt == "int8" else torch.float8_e4m3fn
        if qweight.dtype != want:
            raise weight_error(fmt, f"qweight must be {want} [N, K], got {describe_tensor(qweight)}")
        if scales.dtype != torch.float32 or scales.shape != (n,) or not scales.is_contiguous():
            raise weight_error(fmt, f"scale must be a contiguous float32 tensor [{n}] (one per output row), got "
                             f"{describe_tensor(scales)}")
        if zeros is not None:
            raise weight_error(fmt, f"zeros are for int4 only, got {describe_tensor(zeros)}")
        k = qweight.shape[1]
        if in_features is not None and in_features != k:
            raise weight_error(fmt, f"in_features {in_features} != qweight's K {k}")
        return n, k
    # int4
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 16 \
            or group_size & (group_size - 1):
        raise weight_error(fmt, f"group_size must be a power of two >= 16, got {group_size!r}")
    if qweight.dtype != torch.uint8:
        raise weight_error(fmt, f"qweight must be uint8 [N, K_pad / 2] (two nibbles per byte), got {describe_tensor(qweight)}")
    k_pad = 2 * qweight.shape[1]
    if k_pad % group_size:
        raise weight_error(fmt, f"qweight holds {k_pad} columns, not a multiple of group_size {group_size}")
    if in_features is None:
        in_features = k_pad
    if in_features <= k_pad - group_size or in_features > k_pad:
        raise weight_error(fmt, f"in_features {in_features} does not pad to qweight's {k_pad} columns "
                         f"(expected ceil(K / {group_size}) * {group_size} == {k_pad})")
    groups = k_pad // group_size
    if scales.dtype != torch.float16 or scales.shape != (n, groups) or (scales.stride(1) != 1 and n * groups):
        raise weight_error(fmt, f"scales must be float16 [{n}, {groups}] (N, K_pad / group_size) with contiguous rows, "
                         f"got {describe_tensor(scales)}")
    if zeros is not None and (zeros.dtype != torch.uint8 or zeros.shape != (n, groups)
                              or zeros.stride() != scales.stride()):
        raise weight_error(fmt, f"zeros must be None or uint8 [{n}, {groups}] laid out like scales, got {describe_tensor(zeros)}")
    return n, in_features


def dequantize(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None = None, fmt: str = "int8",
               group_size: int = 128, in_features: int | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The full weight `[N, K]` in `dtype` (torch; for prefill: dequantize once, then a regular GEMM)."""
    n, k = check_weight(qweight, scales, zeros, fmt, group_size, in_features)
    if fmt == "int8":
        w = dequantize_int8(qweight, scales)
    elif fmt == "fp8":
        w = dequantize_fp8(qweight, scales)
    else:
        w = dequantize_int4(qweight, scales, zeros, group_size, k)
    return w.to(dtype)
