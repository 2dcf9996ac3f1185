"""`janus-rt bench`: build a real Janus architecture with random weights, time every backend, report.

`run_bench(options)` returns one JSON-ready dict: the card (GPU, bandwidth, bytes per step, roofline), the
image rows (per backend and batch of images), the understanding rows (per backend and batch), the arrival
runs (per backend: N requests arriving over time, throughput and latency percentiles, vs the same request
alone), speedups, the issue-3 targets where they apply, notes on what was skipped, and the environment
(versions, date, the exact command). `report.py` turns it into text.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch

from janus_rt import __version__ as janus_rt_version
from janus_rt.api import resolve_device, resolve_dtype
from janus_rt.model.config import JanusConfig
from janus_rt.engine import EngineError
from janus_rt.errors import InputError
from janus_rt.checkpoint.info import count_parameters
from janus_rt.model.janus import JanusModel
from janus_rt.backends.triton_step import empty_cuda_cache

from janus_rt.bench import roofline
from janus_rt.bench.architectures import architecture_config
from janus_rt.bench.arrivals import ArrivalSpec, chat_workload, image_workload, run_arrivals
from janus_rt.bench.engines import backend_variant, make_janus, release_memory, seq_len_for
from janus_rt.bench.feasibility import backends_for_device, check_host_memory, host_bytes_available, parameter_count
from janus_rt.bench.variants import compare_variants, roofline_targets
from janus_rt.bench.image_bench import ImageMeasurement, measure_image_row
from janus_rt.bench.random_weights import build_random_model
from janus_rt.bench.text_bench import TextMeasurement, measure_text_row
from janus_rt.bench.workload import SpecialIds, image_prompt_ids, understanding_request

Log = Callable[[str], None]
HF_REPEATS = 1  # transformers takes ~30 s per image on an H100: one timed run after its warm-up


@dataclass(frozen=True)
class BenchOptions:
    """Everything a benchmark run depends on (the CLI builds it from its flags)."""

    arch: str = "janus-1.3b"  # janus-1.3b (= Janus-Pro-1B shape), janus-pro-7b, tiny
    device: str | None = None  # default: cuda when available
    dtype: str | None = None  # bf16 / fp16 / fp32; default bf16 on CUDA, fp32 on CPU
    images: tuple[int, ...] = (1, 4, 16)  # images per generate call (2 CFG rows each)
    backends: tuple[str, ...] = ("triton", "torch")
    text_batches: tuple[int, ...] = (1, 8)  # chat rows per call, one image each
    text_tokens: int = 128  # new tokens per chat row (EOS unreachable)
    image_prompt_tokens: int = 32
    text_prompt_tokens: int = 64  # text around the image; the image adds 578 ids
    repeats: int = 2  # timed runs per row after the warm-up (the median is reported)
    hf: bool = True  # the transformers column, when transformers is installed
    hf_images: tuple[int, ...] = (1,)
    hf_text_batches: tuple[int, ...] = (1,)
    cfg_weight: float = 5.0
    temperature: float = 1.0  # image sampling (the work per step does not depend on it)
    seed: int = 0
    skip: tuple[str, ...] = field(default=())  # sections to skip: "image", "text"
    image_grid: int | None = None  # smoke runs: an image-token grid of this side instead of the arch's 24
    arrivals: int = 0  # arrival run: requests sent (0 = no arrival run)
    rate: float | None = None  # arrival run, open loop: requests per second
    concurrency: int | None = None  # arrival run, closed loop: requests in flight (default: all at once)
    arrival_kind: str = "image"  # "image" (arrival_images images each) or "chat" (text_tokens tokens each)
    arrival_images: int = 1
    arrival_timeout: float = 600.0  # seconds: the arrival run's time bound
    arrival_decode: bool = False  # image latency includes the VQ decode
    arrival_backends: tuple[str, ...] | None = None  # default: the first backend of `backends` that is available
    quant: tuple[str, ...] = ()  # weight formats (int8, int4, fp8) whose image/text rows run after the float ones
    cold_start: bool = False  # new process -> load -> first image, cold and warm disk cache (`cold_start.py`)
    cold_start_timeout: float = 900.0  # seconds: the bound of each cold-start process

    def arrival_spec(self) -> ArrivalSpec | None:
        if not self.arrivals:
            return None
        return ArrivalSpec(requests=self.arrivals, kind=self.arrival_kind, rate=self.rate,
                           concurrency=self.concurrency, images=self.arrival_images, new_tokens=self.text_tokens,
                           timeout_s=self.arrival_timeout, decode=self.arrival_decode)

    def command(self) -> str:
        """The explicit `janus-rt bench` command that reproduces this run."""
        def ints(xs: tuple[int, ...]) -> str:
            return ",".join(str(x) for x in xs) or "none"

        parts = ["janus-rt", "bench", "--arch", self.arch, "--images", ints(self.images),
                 "--backends", ",".join(self.backends), "--text-batches", ints(self.text_batches),
                 "--text-tokens", str(self.text_tokens), "--repeats", str(self.repeats), "--seed", str(self.seed)]
        if self.device:
            parts += ["--device", self.device]
        if self.dtype:
            parts += ["--dtype", self.dtype]
        if self.image_grid:
            parts += ["--image-grid", str(self.image_grid)]
        parts += ["--hf-images", ints(self.hf_images), "--hf-text-batches", ints(self.hf_text_batches)] if self.hf else ["--no-hf"]
        if self.arrivals:
            parts += ["--arrivals", str(self.arrivals)]
            parts += ["--rate", f"{self.rate:g}"] if self.rate is not None else (
                ["--concurrency", str(self.concurrency)] if self.concurrency is not None else [])
            parts += ["--arrival-kind", self.arrival_kind, "--arrival-timeout", f"{self.arrival_timeout:g}"]
            if self.arrival_kind == "image":
                parts += ["--arrival-images", str(self.arrival_images)] + (["--arrival-decode"] if self.arrival_decode else [])
            if self.arrival_backends is not None:
                parts += ["--arrival-backends", ",".join(self.arrival_backends)]
        if self.quant:
            parts += ["--quant", ",".join(self.quant)]
        if self.cold_start:
            parts += ["--cold-start", "--cold-start-timeout", f"{self.cold_start_timeout:g}"]
        return shlex.join(parts)


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


def make_card(cfg: JanusConfig, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
              opts: BenchOptions) -> dict:
    """GPU, bandwidth (measured copy and datasheet), bytes per step and the roofline of the first rows."""
    elem = torch.empty((), dtype=dtype).element_size()
    card: dict = {"arch": opts.arch, "variant": cfg.variant_name(), "device": str(device),
                  "dtype": str(dtype).removeprefix("torch."), "parameters": count_parameters(model),
                  "image_tokens_per_image": cfg.image_tokens_per_image}
    card["model_bytes"] = card["parameters"] * elem
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        card["gpu"] = props.name
        card["gpu_memory_gb"] = props.total_memory / 1e9
        card["copy_gbps"] = roofline.measure_copy_bandwidth(device) / 1e9
        card["datasheet_gbps"] = roofline.datasheet_gbps(props.name)
    else:
        card["gpu"] = None
        card["copy_gbps"] = card["datasheet_gbps"] = None
    card["image_step_weight_bytes"] = roofline.image_step_params(cfg) * elem
    card["text_step_weight_bytes"] = roofline.text_step_params(cfg) * elem
    card["kv_bytes_per_token_row"] = roofline.kv_bytes_per_token(cfg.llm, elem)
    one_image = roofline.image_decode_bytes(cfg, 1, opts.image_prompt_tokens, elem)
    card["one_image_step_bytes"] = one_image.total
    bw = card["copy_gbps"]
    card["one_image_step_floor_ms"] = roofline.floor_ms(one_image, bw * 1e9) if bw else None
    card["one_image_floor_s"] = card["one_image_step_floor_ms"] * (cfg.image_tokens_per_image - 1) / 1e3 if bw else None
    return card


def _mbu(step: roofline.StepBytes, gbps: float | None, ms: float) -> float | None:
    return roofline.mbu(step, gbps * 1e9, ms) if gbps else None


def image_row(m: ImageMeasurement, cfg: JanusConfig, card: dict, opts: BenchOptions, elem: int,
              weight_bytes: int | None = None, weights: str | None = None) -> dict:
    """One image row. Quantized rows pass `weight_bytes` (the step's stored weight bytes) and `weights` (the
    format); the row then has a `weights` key and its step bytes, floor and MBU count those bytes."""
    step = roofline.image_decode_bytes(cfg, m.images, opts.image_prompt_tokens, elem, weight_bytes)
    return {"backend": m.backend, **({"weights": weights} if weights else {}), "images": m.images,
            "rows": 2 * m.images, "prompt_tokens": opts.image_prompt_tokens,
            "steps": m.steps, "warmup_ms": m.warmup_ms, "prefill_ms": m.prefill_ms,
            "decode_ms_per_step": m.decode_ms_per_step, "total_ms": m.total_ms,
            "image_tokens_per_s": m.image_tokens_per_s, "images_per_s": m.images_per_s,
            "step_bytes": step.total, "floor_ms_per_step": roofline.floor_ms(step, card["copy_gbps"] * 1e9) if card["copy_gbps"] else None,
            "mbu_pct": _mbu(step, card["copy_gbps"], m.decode_ms_per_step),
            "mbu_datasheet_pct": _mbu(step, card["datasheet_gbps"], m.decode_ms_per_step),
            "vq_ms_per_image": m.vq_ms_per_image, "peak_gb": m.peak_gb, "decode_steps": m.decode_steps,
            "end_to_end_s": m.end_to_end_s, "prefill_pct": m.share_pct(m.prefill_ms),
            "vq_pct": m.share_pct(None if m.vq_ms_per_image is None else m.vq_ms_per_image * m.images)}


def text_row(m: TextMeasurement, cfg: JanusConfig, card: dict, elem: int, weight_bytes: int | None = None,
             weights: str | None = None) -> dict:
    """One understanding row; `weight_bytes` / `weights` as for `image_row`."""
    step = roofline.text_decode_bytes(cfg, m.batch, m.prompt_tokens, m.new_tokens, elem, weight_bytes)
    return {"backend": m.backend, **({"weights": weights} if weights else {}), "batch": m.batch,
            "prompt_tokens": m.prompt_tokens, "new_tokens": m.new_tokens,
            "warmup_ms": m.warmup_ms, "ttft_ms": m.ttft_ms, "decode_ms_per_step": m.decode_ms_per_step,
            "decode_tokens_per_s": m.decode_tokens_per_s, "step_bytes": step.total,
            "mbu_pct": _mbu(step, card["copy_gbps"], m.decode_ms_per_step),
            "mbu_datasheet_pct": _mbu(step, card["datasheet_gbps"], m.decode_ms_per_step), "peak_gb": m.peak_gb,
            "decode_steps": m.decode_steps}


def speedups(image_rows: list[dict], text_rows: list[dict]) -> list[dict]:
    """Ratios of every pair (faster candidate, baseline) measured on the same batch."""
    pairs = [("triton", "torch"), ("triton", "transformers"), ("torch", "transformers")]
    out = []
    for section, rows, key, metrics in (("image", image_rows, "images", ("images_per_s",)),
                                        ("text", text_rows, "batch", ("decode_tokens_per_s", "ttft_ms"))):
        by = {(r["backend"], r[key]): r for r in rows}
        for fast, slow in pairs:
            for (backend, n), r in sorted(by.items(), key=lambda kv: kv[0][1]):
                if backend != fast or (slow, n) not in by:
                    continue
                base = by[(slow, n)]
                for metric in metrics:
                    # a time is better when lower, a rate when higher: a ratio > 1 always means `fast` wins
                    ratio = base[metric] / r[metric] if metric.endswith("_ms") else r[metric] / base[metric]
                    out.append({"section": section, key: n, "fast": fast, "baseline": slow, "metric": metric,
                                "speedup": ratio})
    return out


def targets(opts: BenchOptions, card: dict, image_rows: list[dict], text_rows: list[dict],
            speedup_rows: list[dict]) -> list[dict]:
    """Issue 3's targets (H100, Janus-1.3B shape, bf16), checked on the fastest janus-rt backend present."""
    if opts.arch != "janus-1.3b" or opts.image_grid or card["dtype"] != "bfloat16" or card["gpu"] is None:
        return []
    ours = [b for b in ("triton", "torch") if any(r["backend"] == b for r in image_rows + text_rows)]
    if not ours:
        return []
    b = ours[0]
    img = {r["images"]: r for r in image_rows if r["backend"] == b}
    txt = {r["batch"]: r for r in text_rows if r["backend"] == b}
    hf = {s["images"]: s["speedup"] for s in speedup_rows
          if s["section"] == "image" and s["fast"] == b and s["baseline"] == "transformers"}
    checks = [("one image: MBU per decode step (copy bandwidth)", img.get(1, {}).get("mbu_pct"), 75.0, "%"),
              ("16 images: images/s", img.get(16, {}).get("images_per_s"), 12.0, "img/s"),
              ("text batch 1: decode MBU (copy bandwidth)", txt.get(1, {}).get("mbu_pct"), 70.0, "%")]
    checks += [(f"{n} image(s): speedup vs transformers", s, 20.0, "x") for n, s in sorted(hf.items())]
    return [{"backend": b, "target": name, "value": value, "goal": goal, "unit": unit,
             "met": None if value is None else value >= goal} for name, value, goal, unit in checks]


def backend_mode_or_note(model, backend: str, notes: list[str], log: Log) -> str | None:
    """The backend's `describe_mode()`, or None with a note when that backend is not available here."""
    from janus_rt.api import make_backend

    try:
        name, fusions = backend_variant(backend)
        return make_backend(name, model, fusions).describe_mode()
    except (InputError, ImportError) as e:
        notes.append(f"backend {backend!r} skipped: {e}")
        log(f"[bench] backend {backend!r} skipped: {e}")
        return None


def bench_config(opts: BenchOptions) -> JanusConfig:
    """The architecture's config, with the image-token grid of `opts.image_grid` when given (smoke runs)."""
    cfg = architecture_config(opts.arch)
    if opts.image_grid:
        cfg = dataclasses.replace(cfg, vq=dataclasses.replace(cfg.vq, image_token_grid=opts.image_grid))
    return cfg


def image_seq_len(cfg: JanusConfig, opts: BenchOptions) -> int:
    return seq_len_for(opts.image_prompt_tokens + cfg.image_tokens_per_image - 1, cfg.llm.max_position_embeddings)


def text_seq_len(cfg: JanusConfig, prompt_len: int, opts: BenchOptions) -> int:
    return seq_len_for(prompt_len + opts.text_tokens - 1, cfg.llm.max_position_embeddings)


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
    from janus_rt.bench import hf_baseline

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


# Goals of the quantization work, as decode ms/step quantized / float (lower is better), for the fastest janus-rt
# backend on one image, at the architecture's full grid in bf16 on a GPU.
QUANT_GOALS: dict[tuple[str, str], float] = {
    ("janus-pro-7b", "int8"): 0.58, ("janus-pro-7b", "int4"): 0.36, ("janus-pro-7b", "fp8"): 0.58,
    ("janus-1.3b", "int8"): 0.65,
}


def run_quantized(fmt: str, cfg: JanusConfig, device: torch.device, dtype: torch.dtype, elem: int, card: dict,
                  opts: BenchOptions, prompt: list[int], special: SpecialIds, backends: list[str], notes: list[str],
                  log: Log) -> tuple[list[dict], list[dict]]:
    """The image and understanding rows of the seed's random weights quantized to `fmt`, on every backend.

    The model is rebuilt from `opts.seed` (the very weights of the float rows) and quantized in place, so one
    variant at a time holds device memory (the caller has freed the float model); it is freed before returning.
    The format's step bytes and model bytes go to `card["quant"][fmt]`. A format this device cannot run (fp8
    below compute capability 8.9), or whose build fails, is skipped with a note; a backend whose quantized rows
    fail gets a note and the other backends go on.
    """
    from janus_rt.quant import QuantSpec
    from janus_rt.quant.loading import check_format_supported
    from janus_rt.quant.model import quantize_model, quantized_weight_bytes, step_weight_bytes

    def skip(why: str) -> tuple[list[dict], list[dict]]:
        notes.append(f"--quant {fmt} skipped: {why}")
        log(f"[bench] --quant {fmt} skipped: {why}")
        return [], []

    spec = QuantSpec(fmt)
    try:
        check_format_supported(spec, device)
    except InputError as e:
        return skip(str(e))
    log(f"[bench] {fmt}: rebuilding the random weights on {device} and quantizing them to {fmt}")
    try:
        model = quantize_model(build_random_model(cfg, device, dtype, opts.seed), spec)
    except (RuntimeError, ValueError, TypeError) as e:  # OOM, a quantizer this device lacks, ...
        release_memory(device)
        return skip(f"building the {fmt} model failed: {type(e).__name__}: {e}")
    steps = step_weight_bytes(cfg, dtype, spec)
    one_image = roofline.image_decode_bytes(cfg, 1, opts.image_prompt_tokens, elem, steps["image"])
    bw = card["copy_gbps"]
    card.setdefault("quant", {})[fmt] = {
        "spec": spec.to_json(), "model_bytes": sum(quantized_weight_bytes(model).values()),
        "image_step_weight_bytes": steps["image"], "text_step_weight_bytes": steps["text"],
        "one_image_step_bytes": one_image.total,
        "one_image_step_floor_ms": roofline.floor_ms(one_image, bw * 1e9) if bw else None}
    image_rows: list[dict] = []
    text_rows: list[dict] = []
    try:
        for backend in backends:
            try:
                measure_backend_rows(model, backend, cfg, card, opts, prompt, special, elem, image_rows, text_rows, log,
                                     steps, fmt)
            except (RuntimeError, ValueError, ImportError) as e:  # EngineError is a RuntimeError
                cause = f" (cause: {e.__cause__!r})" if e.__cause__ is not None else ""
                notes.append(f"--quant {fmt} on backend {backend!r} failed: {type(e).__name__}: {e}{cause}")
                log(f"[bench] --quant {fmt} on backend {backend!r} failed: {type(e).__name__}: {e}")
                release_memory(device)
    finally:
        del model
        release_memory(device)
    return image_rows, text_rows


def compare_to_float(rows: list[dict], key: str, float_label: str) -> None:
    """Give each quantized row `ms_per_step_vs_float` (its decode ms/step / the float row's of the same backend
    and batch; < 1: the quantized model steps faster) and `throughput_vs_float` (its throughput / the float row's)."""
    rate = "images_per_s" if key == "images" else "decode_tokens_per_s"
    floats = {(r["backend"], r[key]): r for r in rows if r.get("weights") == float_label}
    for r in rows:
        base = floats.get((r["backend"], r[key]))
        if r.get("weights") in (None, float_label):
            continue
        r["ms_per_step_vs_float"] = r["decode_ms_per_step"] / base["decode_ms_per_step"] if base else None
        r["throughput_vs_float"] = r[rate] / base[rate] if base else None


def quant_targets(opts: BenchOptions, card: dict, image_rows: list[dict]) -> list[dict]:
    """`QUANT_GOALS` that apply to this run, checked on the fastest janus-rt backend's one-image rows."""
    if opts.image_grid or card["dtype"] != "bfloat16" or card["gpu"] is None:
        return []
    out = []
    for fmt in opts.quant:
        goal = QUANT_GOALS.get((opts.arch, fmt))
        rows = {r["backend"]: r for r in image_rows if r.get("weights") == fmt and r["images"] == 1}
        backend = next((b for b in ("triton", "torch") if b in rows), None)
        if goal is None or backend is None:
            continue
        value = rows[backend].get("ms_per_step_vs_float")
        out.append({"backend": backend, "weights": fmt,
                    "target": f"{fmt}, one image: decode ms/step vs {card['dtype']}",
                    "value": value, "goal": goal, "unit": "x", "met": None if value is None else value <= goal})
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
        from janus_rt.bench.cold_start import cold_start_notes, run_cold_start

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
        from janus_rt.bench.cold_start import cold_start_targets

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
