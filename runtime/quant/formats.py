"""Weight-only quantization formats and their quantizers: int8 per channel, int4 in groups, fp8 e4m3 per channel.

Storage (what `kernels/dequant_gemm.py` reads and a quantized checkpoint holds, per linear `[N, K]`):
    int8  qweight int8 `[N, K]`, scales float32 `[N]`:         w = q * s[n]   (symmetric, q in [-127, 127])
    int4  qweight uint8 `[N, Kp/2]` (k = 2j low nibble, 2j+1 high), scales float16 `[N, Kp/G]`, zeros uint8
          `[N, Kp/G]` or none (symmetric: zero point 8):    w = (q - z[n, k//G]) * s[n, k//G]; Kp = K padded
          up to a multiple of the group size G (the padding quantizes to exactly 0)
    fp8   qweight float8_e4m3fn `[N, K]`, scales float32 `[N]`:  w = float(q) * s[n]  (s = max|w| / 448)

int4 is round-to-nearest after a clipping search: for each (row, group) a few clip ratios of the group's
range are tried and the one with the smallest output error on random inputs is kept. The error is the
expectation over inputs x ~ N(0, I), computed exactly rather than sampled: E ||(w - w_hat) . x||^2 =
||w - w_hat||^2 (a sampled estimate from a few dozen inputs overfits its samples: measured worse than no
search on fresh inputs). The scales are rounded to float16 first, so the search sees the stored values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from janus_rt.errors import InputError

FORMATS = ("int8", "int4", "fp8")
FP8_MAX = 448.0  # largest finite float8_e4m3fn
INT4_CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)
CHUNK_ELEMENTS = 1 << 24  # weights per chunk of the clipping search (bounds its temporary memory)


@dataclass(frozen=True)
class QuantSpec:
    """What to quantize to: the format, and for int4 the group size, zero points and the clipping search."""

    format: str
    group_size: int = 128  # int4 only: weights per scale along the input dimension
    zero_point: bool = True  # int4 only: asymmetric groups (a uint8 zero point per group)
    clip_search: bool = True  # int4 only: search the clip ratio per group (else plain min/max)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"quantization format must be one of {', '.join(FORMATS)}, got {self.format!r}",
                             param="format")
        g = self.group_size
        if not isinstance(g, int) or g < 16 or g & (g - 1):
            raise InputError(f"int4 group size must be a power of two >= 16, got {g!r}", param="group_size")

    def to_json(self) -> dict:
        out = asdict(self)
        if self.format != "int4":
            for key in ("group_size", "zero_point", "clip_search"):
                out.pop(key)
        return out

    @classmethod
    def from_json(cls, raw: dict) -> "QuantSpec":
        known = {"format", "group_size", "zero_point", "clip_search"}
        return cls(**{k: v for k, v in raw.items() if k in known})


def quantize_int8(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric per-output-channel int8: scale = max|w| / 127 per row."""
    w = weight.float()
    amax = w.abs().amax(dim=1)  # [N]
    scales = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return {"qweight": q, "scales": scales}


def quantize_fp8(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """float8 e4m3 with a per-output-channel scale: scale = max|w| / 448 per row (round to nearest even)."""
    w = weight.float()
    amax = w.abs().amax(dim=1)  # [N]
    scales = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax))
    q = (w / scales[:, None]).clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return {"qweight": q, "scales": scales}


def _int4_groups(w: torch.Tensor, group: int, zero_point: bool, ratio: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Round-to-nearest of groups `w [N, Gn, G]` clipped by `ratio [N, Gn]` -> q, scales (fp16-rounded), zeros."""
    if zero_point:
        wmax = w.amax(dim=2).clamp(min=0) * ratio  # [N, Gn] the range always holds 0
        wmin = w.amin(dim=2).clamp(max=0) * ratio
        scales = ((wmax - wmin) / 15.0).clamp(min=1e-6).half().float()
        zeros = torch.round(-wmin / scales).clamp(0, 15)
    else:
        scales = (w.abs().amax(dim=2) * ratio / 7.0).clamp(min=1e-6).half().float()
        zeros = torch.full_like(scales, 8.0)
    q = (torch.round(w / scales[..., None]) + zeros[..., None]).clamp_(0, 15)  # [N, Gn, G]
    return q, scales, zeros


def quantize_int4(weight: torch.Tensor, group_size: int = 128, zero_point: bool = True,
                  clip_search: bool = True) -> dict[str, torch.Tensor]:
    """int4 groups of `group_size` along K with float16 scales (+ uint8 zero points), packed two per byte."""
    n, k = weight.shape
    groups = -(-k // group_size)
    padded = torch.zeros(n, groups * group_size, dtype=torch.float32, device=weight.device)
    padded[:, :k] = weight.float()
    w = padded.view(n, groups, group_size)  # [N, Gn, G]
    q = torch.empty_like(w)
    scales = torch.empty(n, groups, dtype=torch.float32, device=weight.device)
    zeros = torch.empty_like(scales)
    ratios = INT4_CLIP_RATIOS if clip_search else (1.0,)
    rows = max(1, CHUNK_ELEMENTS // (groups * group_size))
    for start in range(0, n, rows):
        chunk = w[start:start + rows]  # [n', Gn, G]
        best_err = None
        for r in ratios:
            ratio = torch.full(chunk.shape[:2], r, device=weight.device)
            cq, cs, cz = _int4_groups(chunk, group_size, zero_point, ratio)
            err = ((cq - cz[..., None]) * cs[..., None] - chunk).pow(2).sum(-1)  # [n', Gn] E||dw . x||^2
            if best_err is None:
                best_err, bq, bs, bz = err, cq, cs, cz
            else:
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                bq = torch.where(better[..., None], cq, bq)
                bs, bz = torch.where(better, cs, bs), torch.where(better, cz, bz)
        q[start:start + rows], scales[start:start + rows], zeros[start:start + rows] = bq, bs, bz
    q = q.view(n, groups * group_size).to(torch.uint8)  # [N, Kp]
    packed = q[:, 0::2] | (q[:, 1::2] << 4)  # [N, Kp/2]: even k low nibble, odd k high nibble
    out = {"qweight": packed.contiguous(), "scales": scales.half()}
    if zero_point:
        out["zeros"] = zeros.to(torch.uint8)
    return out


def quantize_weight(weight: torch.Tensor, spec: QuantSpec) -> dict[str, torch.Tensor]:
    """`weight [N, K]` -> the tensors of `spec.format` (see module docstring)."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_weight: a linear's weight is 2-D, got shape {list(weight.shape)}")
    if spec.format == "int8":
        return quantize_int8(weight)
    if spec.format == "fp8":
        return quantize_fp8(weight)
    return quantize_int4(weight, spec.group_size, spec.zero_point, spec.clip_search)
