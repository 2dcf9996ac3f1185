"""Measuring `janus-rt bench`'s rows: each on a fresh `Janus` (its own engine, KV rows sized for that row) over
the one random-weight model, closed afterwards, so no row's KV rows or graphs inflate the next one's memory.

`measure_backend_rows` appends a backend's image rows and understanding rows; `measure_arrivals` runs the
arrival workload; `run_transformers` the optional transformers column (failures become notes);
`backend_mode_or_note` says whether a backend runs here at all.
"""

from __future__ import annotations

from collections.abc import Callable

from janus_rt.backends.graph_capture import empty_cuda_cache
from janus_rt.errors import InputError
from janus_rt.model.config import JanusConfig

from janus_rt.bench.arrivals import ArrivalSpec, chat_workload, image_workload, run_arrivals
from janus_rt.bench.engines import backend_variant, make_janus, release_memory
from janus_rt.bench.image_bench import ImageMeasurement, measure_image_row
from janus_rt.bench.options import BenchOptions, image_seq_len, text_seq_len
from janus_rt.bench.rows import image_row, text_row
from janus_rt.bench.text_bench import TextMeasurement, measure_text_row
from janus_rt.bench.workload import SpecialIds, image_prompt_ids, understanding_request
from janus_rt.backends.choice import make_backend
from janus_rt.bench import hf_baseline

Log = Callable[[str], None]
HF_REPEATS = 1  # transformers takes ~30 s per image on an H100: one timed run after its warm-up


def backend_mode_or_note(model, backend: str, notes: list[str], log: Log) -> str | None:
    """The backend's `describe_mode()`, or None with a note when that backend is not available here."""
    try:
        name, fusions = backend_variant(backend)
        return make_backend(name, model, fusions).describe_mode()
    except (InputError, ImportError) as e:
        notes.append(f"backend {backend!r} skipped: {e}")
        log(f"[bench] backend {backend!r} skipped: {e}")
        return None


def measure_images(model, backend: str, n: int, cfg: JanusConfig, opts: BenchOptions, prompt: list[int],
                   special: SpecialIds) -> ImageMeasurement:
    """One image row on a fresh Janus of exactly 2 * n KV rows (the engine is closed afterwards)."""
    m = make_janus(model, backend, 2 * n, image_seq_len(cfg, opts))
    try:
        return measure_image_row(m, prompt, special.pad, n, opts.repeats, opts.cfg_weight, opts.temperature,
                                 opts.seed)
    finally:
        m.close()


def measure_text(model, backend: str, b: int, cfg: JanusConfig, opts: BenchOptions,
                 special: SpecialIds) -> TextMeasurement:
    """One understanding row (b requests together) on a fresh Janus of exactly b KV rows."""
    request = understanding_request(cfg, special, opts.text_prompt_tokens, opts.seed)
    m = make_janus(model, backend, b, text_seq_len(cfg, len(request.ids), opts))
    try:
        return measure_text_row(m, request, special.placeholder, b, opts.text_tokens, opts.repeats)
    finally:
        m.close()


def measure_arrivals(model, backend: str, spec: ArrivalSpec, cfg: JanusConfig, opts: BenchOptions,
                     special: SpecialIds) -> dict:
    """The arrival run on a fresh Janus with rows for every request that may be in flight at once."""
    rows = min(spec.in_flight * spec.rows_per_request, 256)
    if spec.kind == "image":
        prompt_tokens = opts.image_prompt_tokens
        m = make_janus(model, backend, rows, image_seq_len(cfg, opts))
        w = image_workload(m, spec, lambda i: image_prompt_ids(special, prompt_tokens, opts.seed + i), special.pad,
                           opts.cfg_weight, opts.temperature, opts.seed)
    else:
        request = understanding_request(cfg, special, opts.text_prompt_tokens, opts.seed)
        prompt_tokens = len(request.ids)
        m = make_janus(model, backend, rows, text_seq_len(cfg, prompt_tokens, opts))
        w = chat_workload(m, spec, request, special.placeholder)
    try:
        row = run_arrivals(m, w, opts.repeats)
    finally:
        m.close()
    row["prompt_tokens"] = prompt_tokens
    return row


def run_transformers(model, cfg: JanusConfig, card: dict, opts: BenchOptions, special: SpecialIds, elem: int,
                     prompt: list[int], notes: list[str], log: Log) -> tuple[list[dict], list[dict]]:
    """The transformers rows (same random weights); failures become notes, since this column is optional."""
    if not hf_baseline.transformers_version():
        notes.append("transformers column skipped: transformers (with JanusForConditionalGeneration) is not installed")
        return [], []
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # generate() warns about max_length defaults on every call
    image_rows: list[dict] = []
    text_rows: list[dict] = []
    hf = None
    try:
        log("[bench] transformers: building JanusForConditionalGeneration with the same weights")
        hf = hf_baseline.build_hf_twin(model, special)
        ours_gb = card["model_bytes"] / 1e9
        notes.append("transformers rows: same weights (copied through janus-rt's HF key mapping, checked equal); "
                     "image ms/step = whole generate() / 576 (prefill included, no phase marks); text decode step = "
                     "(t(N tokens) - t(1 token)) / (N - 1); one timed run after a warm-up; peak GB excludes the janus-rt "
                     "model sharing the GPU")
        if "image" not in opts.skip:
            for n in opts.hf_images:
                log(f"[bench] transformers: {n} image(s)")
                m = hf_baseline.measure_hf_image_row(hf, prompt, n, HF_REPEATS, opts.cfg_weight, opts.temperature,
                                                     ours_gb)
                image_rows.append(image_row(m, cfg, card, opts, elem))
        if "text" not in opts.skip:
            request = understanding_request(cfg, special, opts.text_prompt_tokens, opts.seed)
            for b in opts.hf_text_batches:
                log(f"[bench] transformers: text batch {b}")
                m = hf_baseline.measure_hf_text_row(hf, request, b, opts.text_tokens, HF_REPEATS, ours_gb)
                text_rows.append(text_row(m, cfg, card, elem))
    except (RuntimeError, ValueError, KeyError, AssertionError, TypeError) as e:  # optional baseline: report, go on
        notes.append(f"transformers column incomplete: {type(e).__name__}: {e}")
        log(f"[bench] transformers failed: {type(e).__name__}: {e}")
    finally:
        transformers.logging.set_verbosity(verbosity)
        del hf
        if model.gen_embed.weight.device.type == "cuda":
            empty_cuda_cache()
    return image_rows, text_rows


def measure_backend_rows(model, backend: str, cfg: JanusConfig, card: dict, opts: BenchOptions, prompt: list[int],
                         special: SpecialIds, elem: int, image_rows: list[dict], text_rows: list[dict], log: Log,
                         step_bytes: dict[str, int] | None = None, weights: str | None = None) -> None:
    """Append `backend`'s image rows (each of opts.images) and understanding rows (each of opts.text_batches) to
    the lists as they are measured (a failure keeps the rows before it). Quantized models pass their step weight
    bytes ({"image", "text"}) and their format."""
    device = model.gen_embed.weight.device
    label = backend if weights is None else f"{backend} {weights}"
    image_bytes, text_bytes = (None, None) if step_bytes is None else (step_bytes["image"], step_bytes["text"])
    if "image" not in opts.skip:
        for n in opts.images:
            log(f"[bench] {label}: {n} image(s)")
            m = measure_images(model, backend, n, cfg, opts, prompt, special)
            image_rows.append(image_row(m, cfg, card, opts, elem, image_bytes, weights))
            release_memory(device)
    if "text" not in opts.skip:
        for b in opts.text_batches:
            log(f"[bench] {label}: text batch {b}")
            m = measure_text(model, backend, b, cfg, opts, special)
            text_rows.append(text_row(m, cfg, card, elem, text_bytes, weights))
            release_memory(device)
