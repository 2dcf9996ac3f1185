"""`janus-rt eval-quant`'s outputs: the side-by-side PNGs, report.json, the printed table and summary line.

Files are written atomically (`janus_rt.files`): an interrupted run leaves no half-written PNG or report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from janus_rt.files import atomic_write, atomic_write_json

REPORT_FILE = "report.json"
KINDS = ("image", "text")


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two uint8 `[S, S, 3]` images -> one `[S, 2S, 3]`: `left` | `right`."""
    if left.shape != right.shape:
        raise ValueError(f"images of different shapes: {left.shape} vs {right.shape}")
    return np.concatenate([left, right], axis=1)


def write_side_by_sides(reference: np.ndarray, other: np.ndarray, out: Path) -> list[Path]:
    """`out/side_by_side_K.png` = reference K | other K for every image K; returns the paths."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (left, right) in enumerate(zip(reference, other)):
        path = out / f"side_by_side_{k}.png"
        image = Image.fromarray(side_by_side(left, right))
        atomic_write(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
        paths.append(path)
    return paths


def write_report(report: dict, out: Path) -> Path:
    """`out/report.json`: the whole report, indented."""
    return atomic_write_json(out / REPORT_FILE, report)


TABLE_METRICS = (
    ("logits_rel_error_mean", "logits rel. error, mean (teacher-forced)"),
    ("logits_rel_error_max", "logits rel. error, max (teacher-forced)"),
    ("teacher_forced_top1_agreement", "argmax agreement (teacher-forced)"),
    ("greedy_token_agreement", "greedy token agreement"),
    ("greedy_first_divergence_min", "first greedy divergence (earliest)"),
    ("sampled_pixel_mean_abs_diff", "seeded image pixels, mean |diff| (0-255)"),
)


def table_rows(report: dict) -> list[tuple[str, str, str]]:
    """(kind, metric, value) rows of a report's pooled metrics, as the CLI prints them."""
    rows = []
    for kind in KINDS:
        metrics = report.get(kind)
        if metrics is None:
            continue
        for key, label in TABLE_METRICS:
            if key not in metrics:
                continue
            value = metrics[key]
            if key == "greedy_first_divergence_min":
                text = "none (equal)" if value is None else f"token {value} of {metrics['greedy_positions']}"
            elif isinstance(value, float):
                text = f"{value:.4g}"
            else:
                text = str(value)
            if key.startswith("logits_"):
                text += f"  ({metrics['positions_measured']} positions)"
            rows.append((kind, label, text))
    return rows


def format_table(report: dict) -> str:
    rows = [("kind", "metric", "value"), *table_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{k:<{widths[0]}}  {m:<{widths[1]}}  {v}" for k, m, v in rows)


def summary(report: dict) -> dict:
    """The report without per-prompt details (the CLI's last line)."""
    out = {k: v for k, v in report.items() if k not in KINDS and k != "prompts"}
    for kind in KINDS:
        if kind in report:
            out[kind] = {k: v for k, v in report[kind].items() if k != "per_prompt"}
    return out
