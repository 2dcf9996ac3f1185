"""Text rendering of a `run_bench` result: the card, one table per section, speedups, targets, notes."""

from __future__ import annotations

import json


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[str]]) -> str:
    """A pipe table with right-aligned columns (the first left-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def format_card(result: dict) -> str:
    c, v = result["card"], result["versions"]
    gb = 1e9
    lines = [
        f"janus-rt bench  {c['arch']} ({c['variant']}), random weights, {c['dtype']} on {c['device']}",
        f"  GPU            {c['gpu'] or 'none (CPU run: bandwidth, MBU and VRAM not measured)'}"
        + (f", {c['gpu_memory_gb']:.0f} GB" if c.get("gpu_memory_gb") else ""),
        f"  bandwidth      copy {_fmt(c['copy_gbps'], 0)} GB/s measured (MBU uses this); datasheet "
        f"{_fmt(c['datasheet_gbps'], 0)} GB/s",
        f"  weights        {c['parameters'] / 1e9:.3f} B params, {c['model_bytes'] / gb:.2f} GB; read per step: "
        f"image {c['image_step_weight_bytes'] / gb:.3f} GB (gen aligner + layers + norm + gen head), "
        f"text {c['text_step_weight_bytes'] / gb:.3f} GB (layers + norm + lm_head)",
        f"  KV cache       {c['kv_bytes_per_token_row'] / 1024:.0f} KiB per token per row (one image = 2 CFG rows)",
        f"  roofline       one image: {c['one_image_step_bytes'] / gb:.3f} GB per step -> floor "
        f"{_fmt(c['one_image_step_floor_ms'], 3)} ms/step, {_fmt(c['one_image_floor_s'], 2)} s per image "
        f"({c.get('image_tokens_per_image', 576) - 1} steps)",
        f"  versions       torch {v['torch']} (CUDA {v['cuda']}), triton {v['triton']}, transformers {v['transformers']}, "
        f"janus-rt {v['janus_rt']}",
    ]
    for backend, mode in (c.get("modes") or {}).items():
        lines.append(f"  backend        {backend}: {mode}")
    return "\n".join(lines)


def format_image(rows: list[dict], tokens_per_image: int = 576) -> str:
    headers = ["backend", "images", "warm-up s", "prefill ms", "decode ms/step", "img tok/s", "images/s", "MBU %",
               "MBU % (sheet)", "VQ ms/img", "peak GB"]
    body = [[r["backend"], str(r["images"]), _fmt(r["warmup_ms"] / 1e3, 2), _fmt(r["prefill_ms"], 1),
             _fmt(r["decode_ms_per_step"], 3), _fmt(r["image_tokens_per_s"], 0), _fmt(r["images_per_s"], 2),
             _fmt(r["mbu_pct"], 1), _fmt(r["mbu_datasheet_pct"], 1), _fmt(r["vq_ms_per_image"], 1),
             _fmt(r["peak_gb"], 2)] for r in rows]
    return f"image generation ({tokens_per_image} tokens per image, CFG: 2 rows per image)\n" + table(headers, body)


def format_text(rows: list[dict]) -> str:
    headers = ["backend", "batch", "prompt tok", "new tok", "warm-up s", "TTFT ms", "decode ms/step", "decode tok/s",
               "MBU %", "MBU % (sheet)", "peak GB"]
    body = [[r["backend"], str(r["batch"]), str(r["prompt_tokens"]), str(r["new_tokens"]), _fmt(r["warmup_ms"] / 1e3, 2),
             _fmt(r["ttft_ms"], 1), _fmt(r["decode_ms_per_step"], 3), _fmt(r["decode_tokens_per_s"], 0),
             _fmt(r["mbu_pct"], 1), _fmt(r["mbu_datasheet_pct"], 1), _fmt(r["peak_gb"], 2)] for r in rows]
    return "understanding (one image per row, greedy, EOS unreachable)\n" + table(headers, body)


def _pct(stats: dict | None, key: str, scale: float = 1.0, digits: int = 2) -> str:
    return _fmt(None if not stats else stats[key] * scale, digits)


def format_arrivals(rows: list[dict]) -> str:
    """The arrival runs: throughput and latency percentiles under load, then the same request alone."""
    if not rows:
        return ""
    r0 = rows[0]
    what = (f"{r0['requests']} image request(s) of {r0['images_per_request']} image(s)"
            + (", latency includes the VQ decode" if r0["vq_decode_included"] else ", latency to image tokens")
            if r0["kind"] == "image" else f"{r0['requests']} chat request(s) of {r0['new_tokens']} tokens, EOS unreachable")
    how = f"open loop at {r0['rate_rps']:g} req/s" if r0["mode"] == "open" else f"closed loop, {r0['concurrency']} in flight"
    headers = ["backend", "sent", "done", "wall s", "throughput", "req/s", "p50 s", "p95 s", "p99 s", "TTFT p50 ms",
               "decode steps", "alone x N", "peak rows", "alone s", "alone thr.", "x alone"]
    body = []
    for r in rows:
        unit = r["throughput_unit"]
        lat, solo = r["latency_s"], r["solo"]
        body.append([r["backend"], str(r["sent"]), str(r["completed"]), _fmt(r["wall_s"], 2),
                     f"{_fmt(r['throughput'], 2)} {unit}", _fmt(r["requests_per_s"], 2), _pct(lat, "p50"),
                     _pct(lat, "p95"), _pct(lat, "p99"), _pct(r["ttft_s"], "p50", 1e3, 1), str(r["decode_steps"]),
                     _fmt(r["sequential_decode_steps"], 0), str(r["peak_rows"]), _fmt(solo["latency_s"], 2),
                     f"{_fmt(solo['throughput'], 2)} {unit}", _fmt(r["speedup_vs_solo"], 2)])
    lines = [f"arrivals ({what}; {how}; time bound {r0['timeout_s']:g} s; warm-up excluded)", table(headers, body)]
    for r in rows:
        n = f"{r['completed']} {'concurrent' if r['mode'] == 'closed' else 'arriving'}"
        lines.append(f"  {r['backend']}: {n} -> {_fmt(r['throughput'], 2)} {r['throughput_unit']} "
                     f"(p50 {_pct(r['latency_s'], 'p50')} s) vs 1 alone -> {_fmt(r['solo']['latency_s'], 2)} s "
                     f"({_fmt(r['solo']['throughput'], 2)} {r['throughput_unit']}); {r['decode_steps']} decode steps "
                     f"vs {_fmt(r['sequential_decode_steps'], 0)} one after another")
        if r["timed_out"] or r["failed"]:
            lines.append(f"  {r['backend']}: stopped early: {r['cancelled']} cancelled at the time bound, "
                         f"{r['not_sent']} never sent, {r['failed']} failed {r['errors']}")
    return "\n".join(lines)


def format_speedups(rows: list[dict]) -> str:
    lines = ["speedups (same batch; > 1 means the first backend is faster)"]
    for s in rows:
        n = f"{s['images']} image(s)" if s["section"] == "image" else f"text batch {s['batch']}"
        lines.append(f"  {s['fast']} vs {s['baseline']:<12} {n:<14} {s['metric']:<20} {s['speedup']:.2f}x")
    return "\n".join(lines)


def format_targets(rows: list[dict], gpu: str | None) -> str:
    lines = [f"issue-3 targets (stated for an H100, Janus-1.3B shape, bf16; this GPU: {gpu})"]
    for t in rows:
        verdict = "n/a" if t["met"] is None else "MET" if t["met"] else "MISSED"
        lines.append(f"  [{verdict:>6}] {t['backend']}: {t['target']}: {_fmt(t['value'], 1)} {t['unit']} "
                     f"(goal >= {t['goal']:g})")
    return "\n".join(lines)


def render(result: dict) -> str:
    """The whole report; its last line is the result as one JSON object."""
    parts = [format_card(result)]
    if result["image"]:
        parts.append(format_image(result["image"], result["card"].get("image_tokens_per_image", 576)))
    if result["text"]:
        parts.append(format_text(result["text"]))
    if result.get("arrivals"):
        parts.append(format_arrivals(result["arrivals"]))
    if result["speedups"]:
        parts.append(format_speedups(result["speedups"]))
    if result["targets"]:
        parts.append(format_targets(result["targets"], result["card"]["gpu"]))
    if result["notes"]:
        parts.append("notes\n" + "\n".join(f"  - {n}" for n in result["notes"]))
    parts.append(f"command: {result['command']}")
    return "\n\n".join(parts) + "\n" + json.dumps(result, separators=(",", ":"), allow_nan=False)
