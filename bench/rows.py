"""A benchmark result's card and rows: the measurements of `image_bench` / `text_bench` (and the transformers
baseline) turned into JSON-ready dicts, with their step bytes, roofline floor and MBU (`roofline.py`), and the
speedups between backends measured on the same batch.
"""

from __future__ import annotations

import torch

from janus_rt.checkpoint.info import count_parameters
from janus_rt.model.config import JanusConfig

from janus_rt.bench import roofline
from janus_rt.bench.image_bench import ImageMeasurement
from janus_rt.bench.options import BenchOptions
from janus_rt.bench.text_bench import TextMeasurement


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
