"""What quantization does to a model's outputs: `janus-rt eval-quant`'s whole run (`run_eval`).

The parts: `eval_inputs.py` (the prompt set and settings), `eval_measure.py` (the reference kept, the
comparison measured), `eval_report.py` (the PNGs, report.json, the printed table).

On a fixed prompt set (a few text-to-image prompts and a few text-only chat questions, or `--prompts FILE`),
the quantized model is measured against the float model ("the reference": the same checkpoint in the float
dtype it is loaded in, bfloat16 on CUDA / float32 on CPU by default):

1. logits error, teacher-forced. The reference's own greedy sequence (its answer to each question; the first
   `image_tokens` image tokens of each prompt) is fed to both models in one forward over prompt + sequence,
   and the logits the sampler sees at each position are compared in fp32: text the `lm_head` logits, images
   the CFG mix `uncond + w * (cond - uncond)` of the `gen_head` logits (the library's default `cfg_weight`).
   Per position the relative error is `||l_q - l_f|| / ||l_f||` over the vocabulary; the report gives its
   mean and max over positions and prompts, per kind, plus how often the two argmaxes agree there.
2. greedy token agreement. Each model generates greedily (temperature 0) on its own: all image tokens of
   each prompt, and each answer (up to `max_new_tokens`, EOS included as a token). Reported: the fraction of
   positions where the tokens are equal (positions past the shorter answer count as different) and the
   index of the first divergence (None when the sequences are equal).
3. images. Each image prompt is sampled with the same seed (default sampling) by both models; the two
   images are put side by side (reference left, quantized right) in `side_by_side_K.png`.

The float model is measured first and closed (what the comparison needs is kept on the CPU: its greedy
sequences, the logits at the measured positions, its images), then the quantized model is loaded, so peak
memory is one model at a time. `measure_reference` and `compare` take loaded `janus_rt.Janus` objects, so any
two models can be compared (a model against itself gives error 0 and agreement 1).

On random weights (`janus-rt demo`) the numbers only show that the machinery runs; they say nothing about
the quality of a quantized real model.
"""

from __future__ import annotations

import gc
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from janus_rt.backends.graph_capture import empty_cuda_cache
from janus_rt.quant.eval_inputs import EvalSettings, PromptSet
from janus_rt.quant.eval_measure import PROMPTS_PER_CALL, compare, measure_reference
from janus_rt.quant.eval_report import REPORT_FILE, write_report, write_side_by_sides
from janus_rt.api import load
from janus_rt.backends.choice import resolve_device, resolve_dtype
from janus_rt.engine import EngineConfig


def run_eval(
    model_dir: str | Path,
    fmt: str,
    out: str | Path,
    quantized: str | Path | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    prompts: PromptSet | None = None,
    settings: EvalSettings | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict:
    """Load the float model, measure it, free it; load the quantized one (`quantize=fmt` while loading, or the
    folder `quantized`), compare; write `out/side_by_side_K.png` and `out/report.json`. Returns the report."""
    prompts, settings = prompts or PromptSet(), settings or EvalSettings()
    out = Path(out)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    # KV rows for the work at hand (one call's CFG pairs, or every answer at once) and no more, so the engine
    # leaves room for the teacher-forced forwards; on CUDA the memory budget can still lower it
    rows = max(2, 2 * min(len(prompts.image_prompts), PROMPTS_PER_CALL), min(len(prompts.chat_questions), 64))
    engine = EngineConfig(row_limit=rows, cpu_max_rows=rows)

    t0 = time.perf_counter()
    reference_model = load(model_dir, device=dev, dtype=dt, progress=progress, engine=engine)
    try:
        log(f"reference    {reference_model.path}: float model, {reference_model.step_backend.describe_mode()}")
        reference = measure_reference(reference_model, prompts, settings, progress=progress)
    finally:
        reference_model.close()  # its engine stops; dropping the last reference frees weights and KV rows
    del reference_model
    gc.collect()
    if dev.type == "cuda":
        empty_cuda_cache()
    log(f"             measured in {time.perf_counter() - t0:.1f}s")

    t1 = time.perf_counter()
    if quantized is not None:
        other = load(quantized, device=dev, dtype=dt, progress=progress, engine=engine)
    else:
        other = load(model_dir, device=dev, dtype=dt, progress=progress, engine=engine, quantize=fmt)
    try:
        log(f"quantized    {fmt} ({'folder ' + str(other.path) if quantized is not None else 'quantized while loading'}), "
            f"{other.step_backend.describe_mode()}")
        comparison = compare(reference, other, progress=progress)
    finally:
        other.close()
    log(f"             compared in {time.perf_counter() - t1:.1f}s")

    files: list[str] = []
    if comparison.images is not None and reference.images is not None:
        files = [p.name for p in write_side_by_sides(reference.images, comparison.images, out)]
    dtype_name = str(dt).removeprefix("torch.")
    report = {
        "model": str(model_dir),
        "quantized": None if quantized is None else str(quantized),
        "format": fmt,
        "device": str(dev),
        "dtype": dtype_name,
        "reference": f"the float model in {dtype_name} on {dev}",
        "settings": {**asdict(settings), "image_tokens": settings.image_positions(reference.image_greedy[0].numel())
                     if reference.image_greedy else settings.image_tokens},
        "prompts": {"image": list(prompts.image_prompts), "chat": list(prompts.chat_questions)},
        **comparison.report,
        "out": str(out),
        "files": files + [REPORT_FILE],
        "note": "relative errors are ||l_q - l_f|| / ||l_f|| per position over the vocabulary; random weights "
                "say nothing about real quality",
    }
    write_report(report, out)
    return report
