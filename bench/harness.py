"""`janus-rt bench`: build a real Janus architecture with random weights, time every backend, report.

`run_bench(options)` returns one JSON-ready dict: the card (GPU, bandwidth, bytes per step, roofline), the
image rows (per backend and batch of images), the understanding rows (per backend and batch), speedups,
the issue-3 targets where they apply, notes on what was skipped, and the environment (versions, date, the
exact command). `report.py` turns it into text.
"""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch

from janus_rt import __version__ as janus_rt_version
from janus_rt.api import make_runner, resolve_device, resolve_dtype
from janus_rt.backend import Runner
from janus_rt.config import JanusConfig
from janus_rt.errors import InputError
from janus_rt.info import count_parameters

from . import roofline
from .architectures import architecture_config
from .image_bench import ImageMeasurement, measure_image_row
from .random_weights import build_random_model
from .text_bench import TextMeasurement, measure_text_row
from .workload import SpecialIds, image_prompt_ids, understanding_request

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
        parts += ["--hf-images", ints(self.hf_images), "--hf-text-batches", ints(self.hf_text_batches)] if self.hf else ["--no-hf"]
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
                  "dtype": str(dtype).removeprefix("torch."), "parameters": count_parameters(model)}
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


def image_row(m: ImageMeasurement, cfg: JanusConfig, card: dict, opts: BenchOptions, elem: int) -> dict:
    step = roofline.image_decode_bytes(cfg, m.images, opts.image_prompt_tokens, elem)
    return {"backend": m.backend, "images": m.images, "rows": 2 * m.images, "prompt_tokens": opts.image_prompt_tokens,
            "steps": m.steps, "warmup_ms": m.warmup_ms, "prefill_ms": m.prefill_ms,
            "decode_ms_per_step": m.decode_ms_per_step, "total_ms": m.total_ms,
            "image_tokens_per_s": m.image_tokens_per_s, "images_per_s": m.images_per_s,
            "step_bytes": step.total, "floor_ms_per_step": roofline.floor_ms(step, card["copy_gbps"] * 1e9) if card["copy_gbps"] else None,
            "mbu_pct": _mbu(step, card["copy_gbps"], m.decode_ms_per_step),
            "mbu_datasheet_pct": _mbu(step, card["datasheet_gbps"], m.decode_ms_per_step),
            "vq_ms_per_image": m.vq_ms_per_image, "peak_gb": m.peak_gb}


def text_row(m: TextMeasurement, cfg: JanusConfig, card: dict, elem: int) -> dict:
    step = roofline.text_decode_bytes(cfg, m.batch, m.prompt_tokens, m.new_tokens, elem)
    return {"backend": m.backend, "batch": m.batch, "prompt_tokens": m.prompt_tokens, "new_tokens": m.new_tokens,
            "warmup_ms": m.warmup_ms, "ttft_ms": m.ttft_ms, "decode_ms_per_step": m.decode_ms_per_step,
            "decode_tokens_per_s": m.decode_tokens_per_s, "step_bytes": step.total,
            "mbu_pct": _mbu(step, card["copy_gbps"], m.decode_ms_per_step),
            "mbu_datasheet_pct": _mbu(step, card["datasheet_gbps"], m.decode_ms_per_step), "peak_gb": m.peak_gb}


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
    if opts.arch != "janus-1.3b" or card["dtype"] != "bfloat16" or card["gpu"] is None:
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


def runner_or_note(model, backend: str, notes: list[str], log: Log) -> Runner | None:
    """`make_runner(backend, model)`, or None with a note when that backend is not available here."""
    try:
        return make_runner(backend, model)
    except (InputError, ImportError) as e:
        notes.append(f"backend {backend!r} skipped: {e}")
        log(f"[bench] backend {backend!r} skipped: {e}")
        return None


def run_transformers(model, cfg: JanusConfig, card: dict, opts: BenchOptions, special: SpecialIds, elem: int,
                     prompt: list[int], notes: list[str], log: Log) -> tuple[list[dict], list[dict]]:
    """The transformers rows (same random weights); failures become notes, since this column is optional."""
    from . import hf_baseline

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
            torch.cuda.empty_cache()
    return image_rows, text_rows


def run_bench(opts: BenchOptions, log: Log = _stderr, argv: list[str] | None = None) -> dict:
    """Run the whole benchmark described by `opts`; progress lines go to `log`. Returns the result dict."""
    device = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, device)
    elem = torch.empty((), dtype=dtype).element_size()
    notes: list[str] = []
    if device.type != "cuda":
        notes.append("no GPU: bandwidth, MBU and peak VRAM are not measured (GPU-only); times are CPU times")
    else:
        notes.append("peak GB = torch.cuda.max_memory_allocated during the row (model weights included); MBU % = "
                     "roofline step time at the measured copy bandwidth / measured step time, weights + KV reads")
    cfg = architecture_config(opts.arch)
    log(f"[bench] building {opts.arch} with random weights on {device} ({dtype})")
    model = build_random_model(cfg, device, dtype, opts.seed)
    card = make_card(cfg, model, device, dtype, opts)
    special = SpecialIds.for_vocab(cfg.llm.vocab_size)
    prompt = image_prompt_ids(special, opts.image_prompt_tokens, opts.seed)
    image_rows: list[dict] = []
    text_rows: list[dict] = []
    for backend in opts.backends:  # one runner alive at a time: its buffers / graph pools do not inflate the next
        runner = runner_or_note(model, backend, notes, log)
        if runner is None:
            continue
        card.setdefault("modes", {})[runner.name] = runner.describe_mode()
        if "image" not in opts.skip:
            for n in opts.images:
                log(f"[bench] {runner.name}: {n} image(s)")
                m = measure_image_row(runner, prompt, special.pad, n, opts.repeats, opts.cfg_weight, opts.temperature,
                                      opts.seed)
                image_rows.append(image_row(m, cfg, card, opts, elem))
        if "text" not in opts.skip:
            request = understanding_request(cfg, special, opts.text_prompt_tokens, opts.seed)
            for b in opts.text_batches:
                log(f"[bench] {runner.name}: text batch {b}")
                m = measure_text_row(runner, request, special.pad, special.placeholder, b, opts.text_tokens,
                                     opts.repeats)
                text_rows.append(text_row(m, cfg, card, elem))
        del runner
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if opts.hf:
        hf_image, hf_text = run_transformers(model, cfg, card, opts, special, elem, prompt, notes, log)
        image_rows += hf_image
        text_rows += hf_text
    else:
        notes.append("transformers column skipped (--no-hf)")
    speed = speedups(image_rows, text_rows)
    return {
        "schema": "janus-rt-bench/1",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": opts.command(),
        "argv": shlex.join(argv) if argv is not None else None,
        "versions": versions(),
        "card": card,
        "image": image_rows,
        "text": text_rows,
        "speedups": speed,
        "targets": targets(opts, card, image_rows, text_rows, speed),
        "notes": notes,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.__dict__.items()},
    }
