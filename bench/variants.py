"""The fused-kernel variants of the triton backend side by side, and issue 9's roofline goals.

`--backends "triton,triton[attn],triton[all]"` times each variant on the same random weights. Here:
    compare_variants(rows, key)   each `triton[...]` row gets `ms_per_step_vs_triton` (its decode ms/step over the
                                  plain triton row of the same batch and weights; < 1: the variant steps faster)
                                  and `throughput_vs_triton`: the number that decides whether a fusion stays
    roofline_targets(...)         issue 9's goals (H100, bf16, random weights), checked on every triton variant
                                  present: Janus-1.3B one image >= 80 % MBU and <= 0.70 s end to end, chat batch 1
                                  >= 78 % MBU, 16 images >= 12 img/s; Janus-Pro-7B one image >= 88 % MBU
Goals apply only to a full-size bf16 run on a GPU (no smoke grid); elsewhere the list is empty.
"""

from __future__ import annotations

from typing import Any

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


# (arch, section, key value, field, goal, "min" | "max", description)
GOALS: tuple[tuple[str, str, int, str, float, str, str], ...] = (
    ("janus-1.3b", "image", 1, "mbu_pct", 80.0, "min", "one image: MBU per decode step"),
    ("janus-1.3b", "image", 1, "end_to_end_s", 0.70, "max", "one image: end to end (prefill + steps + VQ)"),
    ("janus-1.3b", "text", 1, "mbu_pct", 78.0, "min", "chat batch 1: decode MBU"),
    ("janus-1.3b", "image", 16, "images_per_s", 12.0, "min", "16 images: images/s"),
    ("janus-pro-7b", "image", 1, "mbu_pct", 88.0, "min", "one image: MBU per decode step"),
)
UNITS = {"mbu_pct": "%", "end_to_end_s": "s", "images_per_s": "img/s"}


def roofline_targets(arch: str, card: dict, image_rows: list[dict], text_rows: list[dict],
                     image_grid: int | None) -> list[dict[str, Any]]:
    """Issue 9's goals for each triton backend or variant in the rows (float rows only); [] off the stated setup."""
    if image_grid or card.get("dtype") != "bfloat16" or card.get("gpu") is None:
        return []
    sections = {"image": ("images", image_rows), "text": ("batch", text_rows)}
    backends = list(dict.fromkeys(r["backend"] for r in image_rows + text_rows
                                  if r["backend"] == PLAIN or is_variant(r["backend"])))
    out = []
    for backend in backends:
        for goal_arch, section, n, field, goal, sense, what in GOALS:
            if goal_arch != arch:
                continue
            key, rows = sections[section]
            row = next((r for r in rows if r["backend"] == backend and r[key] == n
                        and r.get("weights") in (None, card["dtype"])), None)
            if row is None:
                continue
            value = row.get(field)
            met = None if value is None else (value >= goal if sense == "min" else value <= goal)
            out.append({"backend": backend, "target": what, "value": value, "goal": goal, "sense": sense,
                        "unit": UNITS[field], "met": met})
    return out
