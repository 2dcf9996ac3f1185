"""The fused-kernel variants of the triton backend side by side.

`--backends "triton,triton[attn],triton[all]"` times each variant on the same random weights. Here:
    compare_variants(rows, key)   each `triton[...]` row gets `ms_per_step_vs_triton` (its decode ms/step over the
                                  plain triton row of the same batch and weights; < 1: the variant steps faster)
                                  and `throughput_vs_triton`: the number that decides whether a fusion stays
Issue 9's roofline goals, judged on every triton backend and variant, are in `goals.py` (`roofline_targets`).
"""

from __future__ import annotations

PLAIN = "triton"


def is_variant(backend: str) -> bool:
    return backend.startswith(PLAIN + "[")


def compare_variants(rows: list[dict], key: str) -> None:
    """Add the vs-triton ratios to every variant row whose plain triton row (same `key`, same weights) exists."""
    rate = "images_per_s" if key == "images" else "decode_tokens_per_s"
    plain = {(r[key], r.get("weights")): r for r in rows if r["backend"] == PLAIN}
    for r in rows:
        if not is_variant(r["backend"]):
            continue
        base = plain.get((r[key], r.get("weights")))
        r["ms_per_step_vs_triton"] = r["decode_ms_per_step"] / base["decode_ms_per_step"] if base else None
        r["throughput_vs_triton"] = r[rate] / base[rate] if base else None
