"""Residual add + RMSNorm in one pass, and SiLU(gate) * up: the decode step's elementwise glue, fused.

add_rmsnorm: h = x + delta (rounded to the activation dtype, as the torch path's add), then
    out = weight * (h_fp32 * rsqrt(mean(h_fp32^2) + eps)).to(dtype)  (Hugging Face Llama's RMSNorm numerics)
    one program per row; returns (out, h). Without delta it is the plain RMSNorm of x.
silu_mul: gate_up `[..., 2I]` (gate | up halves) -> silu(gate) * up `[..., I]`, computed in fp32, rounded once.

Each replaces 5-8 small torch kernels per call in a launch-bound decode step.
Versions: v1 one program per row (this file).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_rmsnorm_kernel(x_ptr, delta_ptr, weight_ptr, out_ptr, h_ptr, dim, eps,
                        HAS_DELTA: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    ok = cols < dim
    h = tl.load(x_ptr + row * dim + cols, mask=ok, other=0.0)
    if HAS_DELTA:
        d = tl.load(delta_ptr + row * dim + cols, mask=ok, other=0.0)
        h = (h.to(tl.float32) + d.to(tl.float32)).to(h_ptr.dtype.element_ty)
        tl.store(h_ptr + row * dim + cols, h, mask=ok)
    h32 = h.to(tl.float32)
    inv_rms = 1.0 / tl.sqrt(tl.sum(h32 * h32, axis=0) / dim + eps)
    normed = (h32 * inv_rms).to(out_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(weight_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * dim + cols, (w * normed).to(out_ptr.dtype.element_ty), mask=ok)


def add_rmsnorm(*, x: torch.Tensor, weight: torch.Tensor, eps: float,
                delta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm(x + delta), x + delta) for contiguous `[..., D]` tensors; delta None -> (RMSNorm(x), x)."""
    dim = x.shape[-1]
    if weight.shape != (dim,) or not x.is_contiguous() or (delta is not None and
                                                          (delta.shape != x.shape or not delta.is_contiguous())):
        raise ValueError(f"add_rmsnorm: x {list(x.shape)}, delta and weight [{dim}] must match and be contiguous")
    out = torch.empty_like(x)
    h = torch.empty_like(x) if delta is not None else x
    _add_rmsnorm_kernel[(x.numel() // dim,)](
        x, delta if delta is not None else x, weight, out, h, dim, eps,
        HAS_DELTA=delta is not None, BLOCK=triton.next_power_of_2(dim), num_warps=8,
    )
    return out, h


def add_rmsnorm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                    delta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The torch backend's arithmetic (llm.RMSNorm after a residual add) in the inputs' dtype."""
    h = x + delta if delta is not None else x
    h32 = h.float()
    return weight * (h32 * torch.rsqrt(h32.pow(2).mean(-1, keepdim=True) + eps)).to(h.dtype), h


@triton.jit
def _silu_mul_kernel(gate_up_ptr, out_ptr, inner, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = cols < inner
    gate = tl.load(gate_up_ptr + row * 2 * inner + cols, mask=ok, other=0.0).to(tl.float32)
    up = tl.load(gate_up_ptr + row * 2 * inner + inner + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * inner + cols, (gate / (1.0 + tl.exp(-gate)) * up).to(out_ptr.dtype.element_ty), mask=ok)


def silu_mul(*, gate_up: torch.Tensor) -> torch.Tensor:
    """`[..., 2I]` contiguous (gate | up) -> `[..., I]`."""
    if not gate_up.is_contiguous() or gate_up.shape[-1] % 2:
        raise ValueError(f"silu_mul: gate_up must be contiguous with an even last dimension, got {list(gate_up.shape)}")
    inner = gate_up.shape[-1] // 2
    out = gate_up.new_empty(*gate_up.shape[:-1], inner)
    rows = gate_up.numel() // (2 * inner)
    block = min(1024, triton.next_power_of_2(inner))
    _silu_mul_kernel[(rows, triton.cdiv(inner, block))](gate_up, out, inner, BLOCK=block, num_warps=4)
    return out


def silu_mul_ref(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up
