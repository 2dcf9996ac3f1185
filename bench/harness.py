"""`janus-rt bench`: build a real Janus architecture with random weights, time every backend, report.

`run_bench(options)` returns one JSON-ready dict: the card (GPU, bandwidth, bytes per step, roofline), the
image rows (per backend and batch of images), the understanding rows (per backend and batch), the arrival
runs (per backend: N requests arriving over time, throughput and latency percentiles, vs the same request
alone), speedups, the goals where they apply, notes on what was skipped, and the environment
(versions, date, the exact command). `report.py` turns it into text.

This file is the run's order and glue. The parts: `options.py` (BenchOptions, the config, KV lengths),
`measure.py` (one fresh Janus per row), `rows.py` (card, rows, MBU, speedups), `quant_rows.py` (--quant),
`cold_start.py` (--cold-start, new processes), `goals.py` (every goal, one table, and the verdicts).

With `quant=("int8", ...)` (`--quant`), the image and understanding rows run again, per format and backend, on
the SAME random weights quantized to that format (`run_quantized`): those rows carry `weights` (the format;
the float rows then carry the float dtype), their step bytes and MBU count the quantized weight bytes
(`janus_rt.quant.model.step_weight_bytes`), and `ms_per_step_vs_float` is their decode ms/step over the float
row's of the same backend and batch (the quantization goal metric).

With `cold_start=True` (`--cold-start`), before anything else (while this process holds nothing on the
device), each backend's cold start runs in new processes (`cold_start.py`: import, load, first image and a warm
image, with empty then warm disk caches): `cold_start` rows and `cold_start_targets` (the issue's <= 2 s goal).

Every measurement builds its own `Janus` (its own engine, KV rows sized for that measurement) over the one
random-weight model, so all backends share the weights and one measurement's rows or graphs never inflate
the next one's memory; the engine is closed after it (`engines.py`).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
import sys
from datetime import datetime, timezone

import torch

from janus_rt import __version__ as janus_rt_version
from janus_rt.backends.choice import resolve_device, resolve_dtype
from janus_rt.engine import EngineError
from janus_rt.model.janus import JanusModel

from janus_rt.bench.cold_start import cold_start_notes, run_cold_start
from janus_rt.bench.engines import release_memory
from janus_rt.bench.feasibility import backends_for_device, check_host_memory, host_bytes_available, parameter_count
from janus_rt.bench.goals import cold_start_targets, quant_targets, roofline_targets, targets
from janus_rt.bench.measure import Log, backend_mode_or_note, measure_arrivals, measure_backend_rows, run_transformers
from janus_rt.bench.options import BenchOptions, bench_config
from janus_rt.bench.quant_rows import compare_to_float, run_quantized
from janus_rt.bench.random_weights import build_random_model
from janus_rt.bench.rows import make_card, speedups
from janus_rt.bench.variants import compare_variants
from janus_rt.bench.workload import SpecialIds, image_prompt_ids


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def versions() -> dict[str, str | None]:
    """torch / CUDA / triton / transformers / janus-rt / python versions (None: not installed)."""
    out: dict[str, str | None] = {"janus_rt": janus_rt_version, "torch": torch.__version__, "cuda": torch.version.cuda,
                                  "python": platform.python_version()}
    for name in ("triton", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def run_bench(opts: BenchOptions, log: Log = _stderr, argv: list[str] | None = None) -> dict:
    """Run the whole benchmark described by `opts`; progress lines go to `log`. Returns the result dict."""
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    elem = torch.empty((), dtype=dtype).element_size()
    notes: list[str] = []
    backends, device_notes = backends_for_device(opts.backends, device, opts.device is not None, opts.arch)
    arrival_backends = opts.arrival_backends
    if arrival_backends is not None:
        arrival_backends, arrival_notes = backends_for_device(arrival_backends, device, opts.device is not None,
                                                              opts.arch)
        device_notes += [n for n in arrival_notes if n not in device_notes]
    for note in device_notes:
        log(f"[bench] {note}")
    notes += device_notes
    asked = opts  # the command and options as given; `opts` holds what runs here
    opts = dataclasses.replace(opts, backends=backends, arrival_backends=arrival_backends)
    spec = opts.arrival_spec()
    if device.type != "cuda":
        notes.append("no GPU: bandwidth, MBU and peak VRAM are not measured (GPU-only); times are CPU times")
        if torch.get_num_threads() > 1 and "OMP_WAIT_POLICY" not in os.environ:
            notes.append("CPU times: the engine steps on its own thread, and OpenMP threads of this one that "
                         "spin-wait can slow it many-fold (seen: 40 ms instead of 2 ms per tiny step, at random); "
                         "run with OMP_WAIT_POLICY=passive (or OMP_NUM_THREADS=1) for stable CPU numbers")
    else:
        notes.append("peak GB = torch.cuda.max_memory_allocated during the row (model weights and the row's KV "
                     "rows included); MBU % = roofline step time at the measured copy bandwidth / measured step "
                     "time, weights + KV reads")
    if opts.image_grid:
        notes.append(f"smoke run: image-token grid {opts.image_grid}x{opts.image_grid} "
                     f"({opts.image_grid ** 2} tokens per image instead of 576)")
    cold: dict = {}
    if opts.cold_start:  # first, in new processes, while this one holds nothing on the device
        notes += cold_start_notes(device)
        cold["cold_start"] = run_cold_start(opts, device, dtype, notes, log, threads=torch.get_num_threads())
    cfg = bench_config(opts)
    if not opts.backends and not opts.hf:  # nothing left to run here: the card alone, from a model on meta
        notes.append("nothing was run: no backend left to run on this machine (see the notes above)")
        log("[bench] nothing to run on this machine: no backend left (the notes say why)")
        with torch.device("meta"):
            model = JanusModel(cfg)
    else:
        if device.type == "cpu":
            check_host_memory(opts.arch, parameter_count(cfg), dtype, 2 if opts.hf else 1, host_bytes_available())
        log(f"[bench] building {opts.arch} with random weights on {device} ({dtype})")
        model = build_random_model(cfg, device, dtype, opts.seed)
    card = make_card(cfg, model, device, dtype, opts)
    special = SpecialIds.for_vocab(cfg.llm.vocab_size)
    prompt = image_prompt_ids(special, opts.image_prompt_tokens, opts.seed)
    image_rows: list[dict] = []
    text_rows: list[dict] = []
    arrival_rows: list[dict] = []
    available: list[str] = []
    for backend in opts.backends:  # one Janus alive at a time: its KV rows / graph pools do not inflate the next
        mode = backend_mode_or_note(model, backend, notes, log)
        if mode is None:
            continue
        available.append(backend)
        card.setdefault("modes", {})[backend] = mode
        try:
            measure_backend_rows(model, backend, cfg, card, opts, prompt, special, elem, image_rows, text_rows, log)
        except EngineError as e:  # a backend that fails here (e.g. a kernel mid-change) does not stop the others
            notes.append(f"backend {backend!r} failed: {e} (cause: {e.__cause__!r})")
            log(f"[bench] backend {backend!r} failed: {e}")
            release_memory(device)
    if spec is not None:
        wanted = opts.arrival_backends if opts.arrival_backends is not None else tuple(available[:1])
        for backend in wanted:
            if backend not in card.get("modes", {}):
                mode = backend_mode_or_note(model, backend, notes, log)
                if mode is None:
                    continue
                card.setdefault("modes", {})[backend] = mode
            log(f"[bench] {backend}: arrivals: {spec.describe()}")
            try:
                arrival_rows.append(measure_arrivals(model, backend, spec, cfg, opts, special))
            except (EngineError, RuntimeError) as e:
                notes.append(f"arrival run on {backend!r} failed: {type(e).__name__}: {e}")
                log(f"[bench] arrival run on {backend!r} failed: {e}")
            release_memory(device)
        if not wanted:
            notes.append("arrival run skipped: no janus-rt backend available")
    if opts.hf:
        hf_image, hf_text = run_transformers(model, cfg, card, opts, special, elem, prompt, notes, log)
        image_rows += hf_image
        text_rows += hf_text
    else:
        notes.append("transformers column skipped (--no-hf)")
    speed = speedups(image_rows, text_rows)
    goals = targets(opts, card, image_rows, text_rows, speed)
    quant: dict = {}
    if opts.quant:
        label = card["dtype"]  # the float rows' weights
        image_rows = [{"backend": r["backend"], "weights": label, **r} for r in image_rows]
        text_rows = [{"backend": r["backend"], "weights": label, **r} for r in text_rows]
        del model  # one variant on the device at a time: each format rebuilds the same weights
        release_memory(device)
        if not available:
            notes.append("--quant skipped: no janus-rt backend available")
        for fmt in opts.quant if available else ():
            q_image, q_text = run_quantized(fmt, cfg, device, dtype, elem, card, opts, prompt, special, available,
                                            notes, log)
            image_rows += q_image
            text_rows += q_text
        compare_to_float(image_rows, "images", label)
        compare_to_float(text_rows, "batch", label)
        quant["quant_targets"] = quant_targets(opts, card, image_rows)
    if opts.cold_start:
        cold["cold_start_targets"] = cold_start_targets(opts, card, cold["cold_start"])
    compare_variants(image_rows, "images")  # triton[...] rows vs plain triton (same batch and weights)
    compare_variants(text_rows, "batch")
    return {
        "schema": "janus-rt-bench/2",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": asked.command(),
        "argv": shlex.join(argv) if argv is not None else None,
        "versions": versions(),
        "card": card,
        "image": image_rows,
        "text": text_rows,
        "arrivals": arrival_rows,
        "speedups": speed,
        "targets": goals,
        "roofline_targets": roofline_targets(opts.arch, card, image_rows, text_rows, opts.image_grid),
        **quant,
        **cold,
        "notes": notes,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asked.__dict__.items()},
    }
