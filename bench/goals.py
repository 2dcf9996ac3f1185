"""Every goal `janus-rt bench` judges, in one place, and the verdicts on a run's rows.

`GOALS` is the one table of speed goals per architecture (the README's numbers): each row's metric, its goal and
whether the value must reach it ("min") or stay under it ("max"). Stated for an H100 in bf16 at the full image
grid, so every verdict below is given only for a full-size bf16 run on a GPU (no smoke grid); elsewhere the lists
are empty. A verdict's `met` is None when the row or its value is missing.

    targets(...)             issue 3's list on the fastest janus-rt backend present (triton, else torch): one image
                             MBU, 16 images/s, chat batch 1 MBU (goals from `GOALS`), and >= 20x transformers
    roofline_targets(...)    issue 9: every goal of the architecture on every triton backend and fused variant
    quant_targets(...)       `QUANT_GOALS`: quantized decode ms/step over the float one, one image
    cold_start_targets(...)  `COLD_START_GOAL_S`: warm-disk first image minus a warm image, new process
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from janus_rt.bench.options import BenchOptions
from janus_rt.bench.variants import PLAIN, is_variant


@dataclass(frozen=True)
class Goal:
    arch: str  # the architecture it is stated for
    section: str  # "image" (rows keyed by images per call) or "text" (rows keyed by chat batch)
    n: int  # images per call, or chat rows
    field: str  # the row's metric
    goal: float
    sense: str  # "min": met when value >= goal; "max": met when value <= goal
    what: str  # the goal in words, as the report prints it


GOALS: tuple[Goal, ...] = (
    Goal("janus-1.3b", "image", 1, "mbu_pct", 80.0, "min", "one image: MBU per decode step"),
    Goal("janus-1.3b", "image", 1, "end_to_end_s", 0.70, "max", "one image: end to end (prefill + steps + VQ)"),
    Goal("janus-1.3b", "text", 1, "mbu_pct", 78.0, "min", "chat batch 1: decode MBU"),
    Goal("janus-1.3b", "image", 16, "images_per_s", 12.0, "min", "16 images: images/s"),
    Goal("janus-pro-7b", "image", 1, "mbu_pct", 88.0, "min", "one image: MBU per decode step"),
)
UNITS = {"mbu_pct": "%", "end_to_end_s": "s", "images_per_s": "img/s"}
SPEEDUP_VS_TRANSFORMERS = 20.0  # issue 3: images/s of janus-rt's fastest backend over transformers', per batch
# Goals of the quantization work, as decode ms/step quantized / float (lower is better), for the fastest janus-rt
# backend on one image, at the architecture's full grid in bf16 on a GPU.
QUANT_GOALS: dict[tuple[str, str], float] = {
    ("janus-pro-7b", "int8"): 0.58, ("janus-pro-7b", "int4"): 0.36, ("janus-pro-7b", "fp8"): 0.58,
    ("janus-1.3b", "int8"): 0.65,
}
COLD_START_GOAL_S = 2.0  # warm-disk first image <= 2 s more than a warm image (Janus-1.3B, bf16, GPU)


def goal_of(arch: str, section: str, n: int, field: str) -> float:
    """The goal of `GOALS` for this architecture, section, batch and metric."""
    return next(g.goal for g in GOALS if (g.arch, g.section, g.n, g.field) == (arch, section, n, field))


def _judged(card: dict, image_grid: int | None) -> bool:
    """Goals apply to a full-size bf16 run on a GPU only."""
    return not image_grid and card.get("dtype") == "bfloat16" and card.get("gpu") is not None


def _fastest(backends: set[str] | dict) -> str | None:
    return next((b for b in ("triton", "torch") if b in backends), None)


def targets(opts: BenchOptions, card: dict, image_rows: list[dict], text_rows: list[dict],
            speedup_rows: list[dict]) -> list[dict]:
    """Issue 3's targets (H100, Janus-1.3B shape, bf16), checked on the fastest janus-rt backend present."""
    if opts.arch != "janus-1.3b" or not _judged(card, opts.image_grid):
        return []
    b = _fastest({r["backend"] for r in image_rows + text_rows})
    if b is None:
        return []
    img = {r["images"]: r for r in image_rows if r["backend"] == b}
    txt = {r["batch"]: r for r in text_rows if r["backend"] == b}
    hf = {s["images"]: s["speedup"] for s in speedup_rows
          if s["section"] == "image" and s["fast"] == b and s["baseline"] == "transformers"}
    arch = opts.arch
    checks = [("one image: MBU per decode step (copy bandwidth)", img.get(1, {}).get("mbu_pct"),
               goal_of(arch, "image", 1, "mbu_pct"), "%"),
              ("16 images: images/s", img.get(16, {}).get("images_per_s"), goal_of(arch, "image", 16, "images_per_s"),
               "img/s"),
              ("text batch 1: decode MBU (copy bandwidth)", txt.get(1, {}).get("mbu_pct"),
               goal_of(arch, "text", 1, "mbu_pct"), "%")]
    checks += [(f"{n} image(s): speedup vs transformers", s, SPEEDUP_VS_TRANSFORMERS, "x")
               for n, s in sorted(hf.items())]
    return [{"backend": b, "target": name, "value": value, "goal": goal, "unit": unit,
             "met": None if value is None else value >= goal} for name, value, goal, unit in checks]


def roofline_targets(arch: str, card: dict, image_rows: list[dict], text_rows: list[dict],
                     image_grid: int | None) -> list[dict[str, Any]]:
    """Issue 9's goals for each triton backend or variant in the rows (float rows only); [] off the stated setup."""
    if not _judged(card, image_grid):
        return []
    sections = {"image": ("images", image_rows), "text": ("batch", text_rows)}
    backends = list(dict.fromkeys(r["backend"] for r in image_rows + text_rows
                                  if r["backend"] == PLAIN or is_variant(r["backend"])))
    out = []
    for backend in backends:
        for g in GOALS:
            if g.arch != arch:
                continue
            key, rows = sections[g.section]
            row = next((r for r in rows if r["backend"] == backend and r[key] == g.n
                        and r.get("weights") in (None, card["dtype"])), None)
            if row is None:
                continue
            value = row.get(g.field)
            met = None if value is None else (value >= g.goal if g.sense == "min" else value <= g.goal)
            out.append({"backend": backend, "target": g.what, "value": value, "goal": g.goal, "sense": g.sense,
                        "unit": UNITS[g.field], "met": met})
    return out


def quant_targets(opts: BenchOptions, card: dict, image_rows: list[dict]) -> list[dict]:
    """`QUANT_GOALS` that apply to this run, checked on the fastest janus-rt backend's one-image rows."""
    if not _judged(card, opts.image_grid):
        return []
    out = []
    for fmt in opts.quant:
        goal = QUANT_GOALS.get((opts.arch, fmt))
        rows = {r["backend"]: r for r in image_rows if r.get("weights") == fmt and r["images"] == 1}
        backend = _fastest(rows)
        if goal is None or backend is None:
            continue
        value = rows[backend].get("ms_per_step_vs_float")
        out.append({"backend": backend, "weights": fmt,
                    "target": f"{fmt}, one image: decode ms/step vs {card['dtype']}",
                    "value": value, "goal": goal, "unit": "x", "met": None if value is None else value <= goal})
    return out


def cold_start_targets(opts: BenchOptions, card: dict, rows: list[dict]) -> list[dict]:
    """The cold-start goal (warm-disk first image <= 2 s over a warm image, Janus-1.3B, bf16, GPU) on the fastest
    janus-rt backend that has a warm-disk row (else the fastest asked for: its value is then missing)."""
    if opts.arch != "janus-1.3b" or not _judged(card, opts.image_grid):
        return []
    warm = {r["backend"]: r for r in rows if r["cache"] == "warm disk"}
    backend = _fastest(warm) or _fastest(set(opts.backends))
    if backend is None:
        return []
    value = warm.get(backend, {}).get("first_minus_warm_s")
    return [{"backend": backend, "target": "warm-disk cold start: first image - warm image", "value": value,
             "goal": COLD_START_GOAL_S, "unit": "s", "met": None if value is None else value <= COLD_START_GOAL_S}]
