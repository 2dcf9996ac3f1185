"""The triton backend's options, importable without triton: `Fusions`, the decode step's optional fused kernels.

`janus_rt.load(fusions=...)` checks them on every load, whatever the backend, so this module imports neither
triton nor the kernels; the kernels' use lives in `triton_transformer.py`, which the triton backend imports.
"""

from __future__ import annotations

from dataclasses import dataclass

FUSION_NAMES = ("norm", "silu", "attn")


@dataclass(frozen=True)
class Fusions:
    """Which optional fused kernels the decode step runs (bench/NOTES.md, v4). Each removes launches from the
    launch-bound step; each becomes a default only once a GPU profile says it pays, so all are off by default and
    `janus-rt bench --backends "triton,triton[all]"` measures them side by side.

    norm: the residual add + RMSNorm folded into the next GEMM's prologue (qkv, gate|up): 2 launches fewer per
          layer; rounds once where the unfused pair rounds twice (as close to float64, not the same bits).
    silu: SiLU(gate) * up folded into the down projection's prologue: 1 launch fewer per layer, the same bits.
    attn: split-K attention's merge folded into its split kernel (last program merges): 1 launch fewer per
          layer, the same bits.
    Quantized layers take the same prologues in their dequant-GEMMs (`kernels/gemm_prologue.py`)."""

    norm: bool = False
    silu: bool = False
    attn: bool = False

    @classmethod
    def parse(cls, text: str) -> "Fusions":
        """"none", "all", or a list of FUSION_NAMES joined by "," or "+" ("norm,attn", "norm+silu")."""
        text = text.strip().lower()
        if text in ("", "none"):
            return cls()
        if text == "all":
            return cls(True, True, True)
        names = [t.strip() for t in text.replace("+", ",").split(",") if t.strip()]
        unknown = [n for n in names if n not in FUSION_NAMES]
        if unknown:
            raise ValueError(f"unknown fusion {', '.join(map(repr, unknown))}: choose none, all, or a list of "
                             f"{', '.join(FUSION_NAMES)} joined by ',' or '+'")
        return cls(**{n: True for n in names})

    @property
    def label(self) -> str:
        on = [n for n in FUSION_NAMES if getattr(self, n)]
        return "none" if not on else "all" if len(on) == len(FUSION_NAMES) else "+".join(on)
