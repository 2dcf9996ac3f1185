"""Text rendering of a `run_bench` result: the card, one table per section, speedups, targets, notes.

With quantized rows (`--quant`), the image and understanding tables gain a `weights` column (the float dtype
or the format) and a `vs float` column (decode ms/step over the float row's), rows of one backend and batch
sit together, and a section compares each format with the float weights. With `--cold-start`, a cold-start
table (a new process per row, cold and warm disk cache) and its goal follow the arrival runs."""

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
    for fmt, q in (c.get("quant") or {}).items():
        lines.append(f"  {fmt + ' weights':<14} {q['model_bytes'] / gb:.2f} GB; read per step: image "
                     f"{q['image_step_weight_bytes'] / gb:.3f} GB, text {q['text_step_weight_bytes'] / gb:.3f} GB; "
                     f"one image {q['one_image_step_bytes'] / gb:.3f} GB per step -> floor "
                     f"{_fmt(q['one_image_step_floor_ms'], 3)} ms/step")
    for backend, mode in (c.get("modes") or {}).items():
        lines.append(f"  backend        {backend}: {mode}")
    return "\n".join(lines)


def _quantized(rows: list[dict]) -> bool:
    return any("weights" in r for r in rows)


def _grouped(rows: list[dict], key: str) -> list[dict]:
    """Rows of one backend and batch together (backends and weights in their order of appearance)."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    weights = list(dict.fromkeys(r.get("weights") for r in rows))
    return sorted(rows, key=lambda r: (backends.index(r["backend"]), r[key], weights.index(r.get("weights"))))


def _with_weights(headers: list[str], body: list[list[str]], rows: list[dict],
                  after: str) -> tuple[list[str], list[list[str]]]:
    """Insert the `weights` column after the backend and `vs float` after the column `after`."""
    at = headers.index(after) + 1
    headers = [headers[0], "weights", *headers[1:at], "vs float", *headers[at:]]
    vs = [f"{r['ms_per_step_vs_float']:.2f}x" if r.get("ms_per_step_vs_float") is not None else "-" for r in rows]
    body = [[b[0], r.get("weights", "-"), *b[1:at], v, *b[at:]] for b, r, v in zip(body, rows, vs)]
    return headers, body


def format_image(rows: list[dict], tokens_per_image: int = 576) -> str:
    quantized = _quantized(rows)
    if quantized:
        rows = _grouped(rows, "images")
    headers = ["backend", "images", "warm-up s", "prefill ms", "decode ms/step", "img tok/s", "images/s", "MBU %",
               "MBU % (sheet)", "VQ ms/img", "end-to-end s", "prefill %", "VQ %", "peak GB"]
    body = [[r["backend"], str(r["images"]), _fmt(r["warmup_ms"] / 1e3, 2), _fmt(r["prefill_ms"], 1),
             _fmt(r["decode_ms_per_step"], 3), _fmt(r["image_tokens_per_s"], 0), _fmt(r["images_per_s"], 2),
             _fmt(r["mbu_pct"], 1), _fmt(r["mbu_datasheet_pct"], 1), _fmt(r["vq_ms_per_image"], 1),
             _fmt(r.get("end_to_end_s"), 3), _fmt(r.get("prefill_pct"), 1), _fmt(r.get("vq_pct"), 1),
             _fmt(r["peak_gb"], 2)] for r in rows]
    if quantized:
        headers, body = _with_weights(headers, body, rows, "decode ms/step")
    return f"image generation ({tokens_per_image} tokens per image, CFG: 2 rows per image)\n" + table(headers, body)


def format_text(rows: list[dict]) -> str:
    quantized = _quantized(rows)
    if quantized:
        rows = _grouped(rows, "batch")
    headers = ["backend", "batch", "prompt tok", "new tok", "warm-up s", "TTFT ms", "decode ms/step", "decode tok/s",
               "MBU %", "MBU % (sheet)", "peak GB"]
    body = [[r["backend"], str(r["batch"]), str(r["prompt_tokens"]), str(r["new_tokens"]), _fmt(r["warmup_ms"] / 1e3, 2),
             _fmt(r["ttft_ms"], 1), _fmt(r["decode_ms_per_step"], 3), _fmt(r["decode_tokens_per_s"], 0),
             _fmt(r["mbu_pct"], 1), _fmt(r["mbu_datasheet_pct"], 1), _fmt(r["peak_gb"], 2)] for r in rows]
    if quantized:
        headers, body = _with_weights(headers, body, rows, "decode ms/step")
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


def format_cold_start(rows: list[dict], goals: list[dict] | None = None) -> str:
    """The cold-start rows (a new process per row) and the issue's goal when it applies."""
    lines = ["cold start (a new process per row: import, load = random weights + backend + engine, first image = "
             "tokens + VQ decode, then a warm image in the same process; total = process start -> first image; "
             "cold disk: empty janus-rt and Triton caches, warm disk: what the cold run left)"]
    if rows:
        headers = ["backend", "cache", "import s", "load s", "first image s", "warm image s", "first - warm s",
                   "total s", "process s", "cache files"]
        body = [[r["backend"], r["cache"], _fmt(r["import_s"], 2), _fmt(r["load_s"], 2), _fmt(r["first_image_s"], 2),
                 _fmt(r["warm_image_s"], 2), _fmt(r["first_minus_warm_s"], 2), _fmt(r["total_s"], 2),
                 _fmt(r["process_s"], 2), _fmt(r["cache_files_after"])] for r in rows]
        lines.append(table(headers, body))
    else:
        lines.append("  no cold-start run succeeded (see the notes)")
    for t in goals or []:
        verdict = "n/a" if t["met"] is None else "MET" if t["met"] else "MISSED"
        lines.append(f"  [{verdict:>6}] {t['backend']}: {t['target']}: {_fmt(t['value'], 2)} {t['unit']} "
                     f"(goal <= {t['goal']:g} {t['unit']})")
    return "\n".join(lines)


def format_speedups(rows: list[dict]) -> str:
    lines = ["speedups (same batch; > 1 means the first backend is faster)"]
    for s in rows:
        n = f"{s['images']} image(s)" if s["section"] == "image" else f"text batch {s['batch']}"
        lines.append(f"  {s['fast']} vs {s['baseline']:<12} {n:<14} {s['metric']:<20} {s['speedup']:.2f}x")
    return "\n".join(lines)


def format_quant(result: dict) -> str:
    """Each quantized row against the float row of the same backend and batch: the ms/step ratio (the goal
    metric), the throughput ratio and the bytes per step; then the quantization goals that apply."""
    float_label = result["card"]["dtype"]
    lines = [f"quantized vs {float_label} weights (decode ms/step ratio: < 1 means the quantized model steps "
             "faster; MBU counts the quantized bytes)"]
    for section, key, rate, what in (("image", "images", "images/s", "{} image(s)"),
                                     ("text", "batch", "tok/s", "text batch {}")):
        floats = {(r["backend"], r[key]): r for r in result[section] if r.get("weights") == float_label}
        for r in result[section]:
            if r.get("weights") in (None, float_label):
                continue
            base = floats.get((r["backend"], r[key]))
            ratio = "-" if r.get("ms_per_step_vs_float") is None else f"{r['ms_per_step_vs_float']:.2f}x"
            thr = "-" if r.get("throughput_vs_float") is None else f"{r['throughput_vs_float']:.2f}x"
            base_bytes = f" vs {base['step_bytes'] / 1e9:.4f}" if base else ""
            lines.append(f"  {r['backend']:<7} {r['weights']:<5} {what.format(r[key]):<14} ms/step {ratio:>6}  "
                         f"{rate:<8} {thr:>6}  bytes/step {r['step_bytes'] / 1e9:.4f}{base_bytes} GB")
    for t in result.get("quant_targets") or []:
        verdict = "n/a" if t["met"] is None else "MET" if t["met"] else "MISSED"
        lines.append(f"  [{verdict:>6}] {t['backend']}: {t['target']}: {_fmt(t['value'], 2)} {t['unit']} "
                     f"(goal <= {t['goal']:g})")
    return "\n".join(lines)


def format_variants(result: dict) -> str:
    """The fused-kernel variants vs plain triton (decode ms/step and throughput ratios; < 1 ms/step: faster), then
    issue 9's roofline goals on every triton backend present."""
    lines = []
    for section, key, rate, what in (("image", "images", "images/s", "{} image(s)"),
                                     ("text", "batch", "tok/s", "text batch {}")):
        for r in result[section]:
            if "ms_per_step_vs_triton" not in r:
                continue
            ratio = "-" if r["ms_per_step_vs_triton"] is None else f"{r['ms_per_step_vs_triton']:.3f}x"
            thr = "-" if r["throughput_vs_triton"] is None else f"{r['throughput_vs_triton']:.3f}x"
            weights = f" {r['weights']}" if r.get("weights") else ""
            lines.append(f"  {r['backend'] + weights:<22} {what.format(r[key]):<14} ms/step {ratio:>7}  "
                         f"{rate:<8} {thr:>7}")
    if lines:
        lines.insert(0, "fused-kernel variants vs triton (decode ms/step ratio: < 1 means the variant steps faster)")
    goals = result.get("roofline_targets") or []
    if goals:
        lines.append(f"issue-9 roofline goals (stated for an H100, bf16; this GPU: {result['card']['gpu']})")
    for t in goals:
        verdict = "n/a" if t["met"] is None else "MET" if t["met"] else "MISSED"
        sense = ">=" if t["sense"] == "min" else "<="
        lines.append(f"  [{verdict:>6}] {t['backend']}: {t['target']}: {_fmt(t['value'], 2)} {t['unit']} "
                     f"(goal {sense} {t['goal']:g})")
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
    if "cold_start" in result:
        parts.append(format_cold_start(result["cold_start"], result.get("cold_start_targets")))
    if result["speedups"]:
        parts.append(format_speedups(result["speedups"]))
    if _quantized(result["image"] + result["text"]):
        parts.append(format_quant(result))
    if result["targets"]:
        parts.append(format_targets(result["targets"], result["card"]["gpu"]))
    variants = format_variants(result)
    if variants:
        parts.append(variants)
    if result["notes"]:
        parts.append("notes\n" + "\n".join(f"  - {n}" for n in result["notes"]))
    parts.append(f"command: {result['command']}")
    return "\n\n".join(parts) + "\n" + json.dumps(result, separators=(",", ":"), allow_nan=False)
