"""`janus-rt bench --quant`: the image and understanding rows again on the same random weights quantized to each
format (`run_quantized`), and each quantized row's ratio to the float row of the same backend and batch
(`compare_to_float`: `ms_per_step_vs_float`, the quantization goal metric; `goals.QUANT_GOALS` judges it).
Quantized rows carry `weights` (the format); their step bytes and MBU count the quantized weight bytes.
"""

from __future__ import annotations

import torch

from janus_rt.errors import InputError
from janus_rt.model.config import JanusConfig

from janus_rt.bench import roofline
from janus_rt.bench.engines import release_memory
from janus_rt.bench.measure import Log, measure_backend_rows
from janus_rt.bench.options import BenchOptions
from janus_rt.bench.random_weights import build_random_model
from janus_rt.bench.workload import SpecialIds
from janus_rt.quant import QuantSpec
from janus_rt.quant.loading import check_format_supported
from janus_rt.quant.model import quantize_model, quantized_weight_bytes, step_weight_bytes


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
