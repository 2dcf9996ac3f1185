"""What quantization does to a model's outputs: `janus-rt eval-quant` and the functions behind it.

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
import inspect
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from janus_rt.api import Janus
from janus_rt.errors import InputError
from janus_rt.model.cfg_rows import cfg_prompt_tokens
from janus_rt.model.llm import KVCache
from janus_rt.kernels.reference_sampling import cfg_mix
from janus_rt.backends.triton_step import empty_cuda_cache
from janus_rt.model.prefill import text_embeddings

DEFAULT_IMAGE_PROMPTS: tuple[str, ...] = (
    "a red fox sitting in the snow, golden hour",
    "a bowl of fresh fruit on a wooden kitchen table, studio lighting",
    "a city street at night in the rain with neon signs reflecting on the wet road",
    "an oil painting of an old fisherman with a white beard",
)
DEFAULT_CHAT_QUESTIONS: tuple[str, ...] = (
    "What is the capital of France?",
    "Explain in two sentences why the sky is blue.",
    "Write a Python function that returns the square of a number.",
    "List three uses of a paperclip.",
)
DEFAULT_IMAGE_TOKENS = 64  # teacher-forced image positions measured per prompt (the first ones)
DEFAULT_MAX_NEW_TOKENS = 32  # longest greedy answer per question
DEFAULT_SEED = 0
DEFAULT_CFG_WEIGHT: float = inspect.signature(Janus.generate_images).parameters["cfg_weight"].default
PROMPTS_PER_CALL = 16  # image prompts generated in one call (bounds the images held at once)
REPORT_FILE = "report.json"
KINDS = ("image", "text")


# ------------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class PromptSet:
    """Text-to-image prompts and text-only chat questions (no image files needed)."""

    image_prompts: tuple[str, ...] = DEFAULT_IMAGE_PROMPTS
    chat_questions: tuple[str, ...] = DEFAULT_CHAT_QUESTIONS

    def __post_init__(self) -> None:
        if not self.image_prompts and not self.chat_questions:
            raise InputError("the prompt set is empty: give at least one image prompt or one chat question",
                             param="prompts")
        for text in (*self.image_prompts, *self.chat_questions):
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"every prompt must be a non-empty string, got {text!r}", param="prompts")

    @classmethod
    def from_file(cls, path: str | Path) -> "PromptSet":
        """One prompt a line: `chat: QUESTION` is a chat question, `image: PROMPT` (or a line without a prefix)
        an image prompt; empty lines and lines starting with `#` are skipped."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--prompts {path}: cannot read it ({e})", param="prompts") from None
        images: list[str] = []
        chats: list[str] = []
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            head, sep, rest = line.partition(":")
            kind = head.strip().lower() if sep else ""
            if kind in ("chat", "image"):
                text = rest.strip()
                if not text:
                    raise InputError(f"--prompts {path}, line {number}: '{kind}:' is followed by no text",
                                     param="prompts")
                (chats if kind == "chat" else images).append(text)
            else:
                images.append(line)
        if not images and not chats:
            raise InputError(f"--prompts {path}: no prompts found (one a line: 'image: PROMPT' or 'chat: QUESTION')",
                             param="prompts")
        return cls(tuple(images), tuple(chats))


@dataclass(frozen=True)
class EvalSettings:
    """How much is measured: teacher-forced image positions, answer length, the seed of the sampled images."""

    image_tokens: int | None = DEFAULT_IMAGE_TOKENS  # None: every image token of a prompt
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    seed: int = DEFAULT_SEED
    cfg_weight: float = DEFAULT_CFG_WEIGHT

    def __post_init__(self) -> None:
        it = self.image_tokens
        if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 1):
            raise InputError(f"--image-tokens must be an integer >= 1, got {it!r}", param="image_tokens")
        mnt = self.max_new_tokens
        if not isinstance(mnt, int) or isinstance(mnt, bool) or mnt < 1:
            raise InputError(f"--max-new-tokens must be an integer >= 1, got {mnt!r}", param="max_new_tokens")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InputError(f"--seed must be an integer >= 0, got {self.seed!r}", param="seed")
        if not isinstance(self.cfg_weight, (int, float)) or not math.isfinite(self.cfg_weight) or self.cfg_weight < 0:
            raise InputError(f"cfg_weight must be a finite number >= 0, got {self.cfg_weight!r}", param="cfg_weight")

    def image_positions(self, tokens_per_image: int) -> int:
        """Teacher-forced positions measured per image prompt for a model with `tokens_per_image` tokens."""
        if self.image_tokens is None:
            return tokens_per_image
        if self.image_tokens > tokens_per_image:
            raise InputError(f"--image-tokens {self.image_tokens} is more than the {tokens_per_image} tokens of one "
                             "image; use at most that, or --all-image-tokens", param="image_tokens")
        return self.image_tokens


@dataclass
class Reference:
    """What the comparison keeps of the reference model, all on the CPU (see module docstring)."""

    prompts: PromptSet
    settings: EvalSettings
    image_greedy: list[torch.Tensor] = field(default_factory=list)  # [grid*grid] int64 per image prompt
    image_logits: list[torch.Tensor] = field(default_factory=list)  # [n, V_img] fp32 CFG-mixed, teacher-forced
    chat_greedy: list[list[int]] = field(default_factory=list)  # answer ids (+ EOS when it ended) per question
    chat_logits: list[torch.Tensor] = field(default_factory=list)  # [n, V] fp32 lm_head logits, teacher-forced
    images: np.ndarray | None = None  # uint8 [P, S, S, 3] sampled with settings.seed
    describe: str = ""  # the model's backend / device / dtype in words


@dataclass
class Comparison:
    """The measured metrics per kind (`report`) and the compared model's sampled images."""

    report: dict
    images: np.ndarray | None


# ------------------------------------------------------------------------------------- model passes
def _torch_model(model: Janus):
    if model.model is None:
        raise InputError(f"eval-quant needs a torch-module backend (torch or triton), not {model.backend!r}")
    return model.model


def image_prompt_ids(model: Janus, prompt: str) -> list[int]:
    """Token ids of an image prompt, formatted as `generate_images` formats it."""
    return model.tokenizer.encode(model.image_prompt(prompt))


@torch.inference_mode()
def teacher_forced_image_logits(model: Janus, prompt: str, tokens: torch.Tensor,
                                cfg_weight: float = DEFAULT_CFG_WEIGHT) -> torch.Tensor:
    """fp32 CFG-mixed image logits `[n, V]` at the positions that sample `tokens [n]`, in one forward.

    The rows are the library's CFG pair (conditional, unconditional with the prompt padded); position i's
    logits are the ones the sampler sees before drawing `tokens[i]` when tokens[:i] were drawn before it.
    """
    net = _torch_model(model)
    device = model.device
    ids = image_prompt_ids(model, prompt)
    n, length = int(tokens.shape[0]), len(ids)
    prompt_rows = cfg_prompt_tokens(ids, model.tokenizer.special.pad, 1, device)  # [2, L]
    embeds = net.llm.embed_tokens(prompt_rows)  # [2, L, D]
    if n > 1:
        fed = net.gen_token_embeddings(tokens[: n - 1].to(device))  # [n-1, D]
        embeds = torch.cat([embeds, fed[None].expand(2, -1, -1)], dim=1)  # [2, L+n-1, D]
    total = embeds.shape[1]
    cache = KVCache.allocate(net.cfg.llm, 2, total, device, model.dtype)
    positions = torch.arange(total, device=device).expand(2, total)  # [2, T]
    hidden = net.llm(embeds, positions, cache, 0)[:, length - 1:]  # [2, n, D]
    logits = net.gen_head(hidden).float()  # [2, n, V] in fp32 for the comparison
    return cfg_mix(logits, cfg_weight)[0].cpu()  # [n, V]


@torch.inference_mode()
def teacher_forced_text_logits(model: Janus, question: str, targets: Sequence[int]) -> torch.Tensor:
    """fp32 `lm_head` logits `[n, V]` at the positions that sample `targets` (an answer, EOS included when it
    ended), in one forward over the chat prompt (formatted as `chat` formats it) and targets[:-1]."""
    net = _torch_model(model)
    device = model.device
    request, _ = model.chat_inputs(question)
    ids = request.ids + list(targets[:-1])
    embeds = text_embeddings(net, ids, None, model.tokenizer.special.image_placeholder)  # [1, T, D]
    total = embeds.shape[1]
    cache = KVCache.allocate(net.cfg.llm, 1, total, device, model.dtype)
    positions = torch.arange(total, device=device)[None]  # [1, T]
    hidden = net.llm(embeds, positions, cache, 0)[0, len(request.ids) - 1:]  # [n, D]
    return net.lm_head(hidden).float().cpu()  # [n, V]


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def greedy_image_tokens(model: Janus, prompts: Sequence[str], cfg_weight: float = DEFAULT_CFG_WEIGHT) -> list[torch.Tensor]:
    """Each prompt's image tokens `[grid*grid]` at temperature 0 (argmax of the CFG logits), on the CPU."""
    out: list[torch.Tensor] = []
    for chunk in _chunks(prompts, PROMPTS_PER_CALL):
        result = model.generate_images(chunk, cfg_weight=cfg_weight, temperature=0.0)
        out.extend(row.cpu() for row in result.tokens)
    return out


def greedy_answers(model: Janus, questions: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Each question's greedy answer ids, with EOS appended when the answer ended before `max_new_tokens`."""
    if not questions:
        return []
    results = model.chat(list(questions), max_new_tokens=max_new_tokens, temperature=0.0)
    eos = model.tokenizer.special.eos
    return [list(r.token_ids) + ([eos] if r.finished else []) for r in results]


def sampled_images(model: Janus, prompts: Sequence[str], seed: int,
                   cfg_weight: float = DEFAULT_CFG_WEIGHT) -> np.ndarray | None:
    """One image per prompt with default sampling and `seed`: uint8 `[P, S, S, 3]` (None without prompts)."""
    if not prompts:
        return None
    parts = [model.generate_images(chunk, cfg_weight=cfg_weight, seed=seed).images
             for chunk in _chunks(prompts, PROMPTS_PER_CALL)]
    return np.concatenate(parts)


def measure_reference(model: Janus, prompts: PromptSet, settings: EvalSettings) -> Reference:
    """Everything the comparison needs from the reference model, on the CPU (the model can be closed after)."""
    ref = Reference(prompts, settings, describe=model.step_backend.describe_mode())
    positions = settings.image_positions(model.config.image_tokens_per_image)
    ref.image_greedy = greedy_image_tokens(model, prompts.image_prompts, settings.cfg_weight)
    ref.image_logits = [teacher_forced_image_logits(model, p, tokens[:positions], settings.cfg_weight)
                        for p, tokens in zip(prompts.image_prompts, ref.image_greedy)]
    ref.chat_greedy = greedy_answers(model, prompts.chat_questions, settings.max_new_tokens)
    ref.chat_logits = [teacher_forced_text_logits(model, q, answer)
                       for q, answer in zip(prompts.chat_questions, ref.chat_greedy)]
    ref.images = sampled_images(model, prompts.image_prompts, settings.seed, settings.cfg_weight)
    return ref


# ------------------------------------------------------------------------------------------ metrics
def relative_errors(other: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per position `||other - reference|| / ||reference||` over the last dim, in fp32: `[n, V]` -> `[n]`."""
    other, reference = other.float(), reference.float()
    if other.shape != reference.shape:
        raise ValueError(f"logits of different shapes: {list(other.shape)} vs {list(reference.shape)}")
    tiny = torch.finfo(torch.float32).tiny
    return (other - reference).norm(dim=-1) / reference.norm(dim=-1).clamp_min(tiny)


@dataclass(frozen=True)
class Agreement:
    """Position-wise comparison of two token sequences."""

    equal: int  # positions with the same token
    compared: int  # positions compared: the longer sequence's length
    first_divergence: int | None  # first position that differs (a length difference counts), None if equal

    @property
    def fraction(self) -> float:
        return self.equal / self.compared if self.compared else 1.0


def token_agreement(reference: Sequence[int], other: Sequence[int]) -> Agreement:
    """How far two greedy sequences agree; positions past the shorter one count as different."""
    a, b = [int(t) for t in reference], [int(t) for t in other]
    common = min(len(a), len(b))
    equal = sum(x == y for x, y in zip(a, b))
    first = next((i for i in range(common) if a[i] != b[i]), None)
    if first is None and len(a) != len(b):
        first = common
    return Agreement(equal, max(len(a), len(b)), first)


def _finite(x: float) -> float:
    """JSON has no NaN/inf: an overflowed error is reported as a huge number, never silently as 0."""
    return float(x) if math.isfinite(x) else float(sys.float_info.max)


def kind_metrics(prompts: Sequence[str], errors: list[torch.Tensor], top1: list[torch.Tensor],
                 agreements: list[Agreement]) -> dict:
    """Pooled metrics of one kind (mean / max over every position of every prompt) and per-prompt ones."""
    all_errors = torch.cat(errors) if errors else torch.zeros(0)
    all_top1 = torch.cat(top1) if top1 else torch.zeros(0, dtype=torch.bool)
    firsts = [a.first_divergence for a in agreements if a.first_divergence is not None]
    equal, compared = sum(a.equal for a in agreements), sum(a.compared for a in agreements)
    return {
        "prompts": len(prompts),
        "positions_measured": int(all_errors.numel()),
        "logits_rel_error_mean": _finite(all_errors.mean().item()) if all_errors.numel() else 0.0,
        "logits_rel_error_max": _finite(all_errors.max().item()) if all_errors.numel() else 0.0,
        "teacher_forced_top1_agreement": float(all_top1.float().mean().item()) if all_top1.numel() else 1.0,
        "greedy_token_agreement": equal / compared if compared else 1.0,
        "greedy_positions": compared,
        "greedy_first_divergence_min": min(firsts) if firsts else None,
        "per_prompt": [
            {"prompt": p, "logits_rel_error_mean": _finite(e.mean().item()),
             "logits_rel_error_max": _finite(e.max().item()),
             "teacher_forced_top1_agreement": float(t.float().mean().item()),
             "greedy_token_agreement": a.fraction, "greedy_first_divergence": a.first_divergence,
             "greedy_positions": a.compared}
            for p, e, t, a in zip(prompts, errors, top1, agreements)
        ],
    }


def compare(reference: Reference, model: Janus) -> Comparison:
    """Measure `model` against `reference` (from `measure_reference`) on the same prompts and settings."""
    prompts, settings = reference.prompts, reference.settings
    report: dict = {}
    if prompts.image_prompts:
        errors, top1 = [], []
        for prompt, tokens, ref_logits in zip(prompts.image_prompts, reference.image_greedy, reference.image_logits):
            logits = teacher_forced_image_logits(model, prompt, tokens[: ref_logits.shape[0]], settings.cfg_weight)
            errors.append(relative_errors(logits, ref_logits))
            top1.append(logits.argmax(-1) == ref_logits.argmax(-1))
        greedy = greedy_image_tokens(model, prompts.image_prompts, settings.cfg_weight)
        agreements = [token_agreement(r.tolist(), g.tolist()) for r, g in zip(reference.image_greedy, greedy)]
        report["image"] = kind_metrics(prompts.image_prompts, errors, top1, agreements)
    if prompts.chat_questions:
        errors, top1 = [], []
        for question, answer, ref_logits in zip(prompts.chat_questions, reference.chat_greedy, reference.chat_logits):
            logits = teacher_forced_text_logits(model, question, answer)
            errors.append(relative_errors(logits, ref_logits))
            top1.append(logits.argmax(-1) == ref_logits.argmax(-1))
        answers = greedy_answers(model, prompts.chat_questions, settings.max_new_tokens)
        agreements = [token_agreement(r, a) for r, a in zip(reference.chat_greedy, answers)]
        report["text"] = kind_metrics(prompts.chat_questions, errors, top1, agreements)
    images = sampled_images(model, prompts.image_prompts, settings.seed, settings.cfg_weight)
    if images is not None and reference.images is not None:
        diff = np.abs(images.astype(np.int16) - reference.images.astype(np.int16))
        report["image"]["sampled_pixel_mean_abs_diff"] = float(diff.mean())
    return Comparison(report, images)


def evaluate_pair(reference_model: Janus, other_model: Janus, prompts: PromptSet | None = None,
                  settings: EvalSettings | None = None) -> tuple[Reference, Comparison]:
    """Both models already loaded: measure the first, compare the second with it."""
    reference = measure_reference(reference_model, prompts or PromptSet(), settings or EvalSettings())
    return reference, compare(reference, other_model)


# -------------------------------------------------------------------------------------------- output
def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two uint8 `[S, S, 3]` images -> one `[S, 2S, 3]`: `left` | `right`."""
    if left.shape != right.shape:
        raise ValueError(f"images of different shapes: {left.shape} vs {right.shape}")
    return np.concatenate([left, right], axis=1)


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_side_by_sides(reference: np.ndarray, other: np.ndarray, out: Path) -> list[Path]:
    """`out/side_by_side_K.png` = reference K | other K for every image K; returns the paths."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (left, right) in enumerate(zip(reference, other)):
        path = out / f"side_by_side_{k}.png"
        _write_atomic(path, lambda p, img=side_by_side(left, right): Image.fromarray(img).save(p, format="PNG"))
        paths.append(path)
    return paths


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    _write_atomic(path, lambda p: p.write_text(json.dumps(report, indent=2) + "\n"))
    return path


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


# ------------------------------------------------------------------------------------- whole run
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
    from janus_rt import load
    from janus_rt.api import resolve_device, resolve_dtype
    from janus_rt.engine import EngineConfig

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
        reference = measure_reference(reference_model, prompts, settings)
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
        comparison = compare(reference, other)
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
