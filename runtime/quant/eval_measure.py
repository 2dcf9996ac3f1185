"""What quantization does to a model's outputs, measured: a reference model's outputs kept, another compared.

`measure_reference(model, prompts, settings)` keeps, on the CPU, what the comparison needs of the reference (the
float model): its greedy image tokens and answers, its logits at the teacher-forced positions, its seeded images.
`compare(reference, model)` measures another model on the same prompts: the logits' relative error and argmax
agreement at those positions, its own greedy tokens' agreement, its seeded images' pixel difference (the metrics
are described in `evaluate.py`'s docstring). Both take loaded `janus_rt.Janus` objects, so any two models can be
compared (a model against itself gives error 0 and agreement 1).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from janus_rt.api import Janus
from janus_rt.errors import InputError
from janus_rt.kernels.reference_sampling import cfg_mix
from janus_rt.model.cfg_rows import cfg_prompt_tokens
from janus_rt.model.llm import KVCache
from janus_rt.model.prefill import text_embeddings
from janus_rt.quant.eval_inputs import DEFAULT_CFG_WEIGHT, EvalSettings, PromptSet

PROMPTS_PER_CALL = 16  # image prompts generated in one call (bounds the images held at once)


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


Tick = Callable[[int], None]  # progress: `tick(n)` after n more units of work (prompts or questions) are done


def _no_tick(n: int) -> None:
    pass


def progress_bar(model_role: str, prompts: PromptSet, progress: bool) -> tqdm:
    """A bar over one model's measurement (stderr; shown only when `progress`): 3 units per image prompt
    (greedy tokens, teacher-forced logits, a sampled image), 2 per chat question (greedy answer, logits)."""
    total = 3 * len(prompts.image_prompts) + 2 * len(prompts.chat_questions)
    return tqdm(total=total, desc=model_role, unit="step", disable=not progress, file=sys.stderr, leave=False)


def greedy_image_tokens(model: Janus, prompts: Sequence[str], cfg_weight: float = DEFAULT_CFG_WEIGHT,
                        tick: Tick = _no_tick) -> list[torch.Tensor]:
    """Each prompt's image tokens `[grid*grid]` at temperature 0 (argmax of the CFG logits), on the CPU."""
    out: list[torch.Tensor] = []
    for chunk in _chunks(prompts, PROMPTS_PER_CALL):
        result = model.generate_images(chunk, cfg_weight=cfg_weight, temperature=0.0)
        out.extend(row.cpu() for row in result.tokens)
        tick(len(chunk))
    return out


def greedy_answers(model: Janus, questions: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    """Each question's greedy answer ids, with EOS appended when the answer ended before `max_new_tokens`."""
    if not questions:
        return []
    results = model.chat(list(questions), max_new_tokens=max_new_tokens, temperature=0.0)
    eos = model.tokenizer.special.eos
    return [list(r.token_ids) + ([eos] if r.finished else []) for r in results]


def sampled_images(model: Janus, prompts: Sequence[str], seed: int,
                   cfg_weight: float = DEFAULT_CFG_WEIGHT, tick: Tick = _no_tick) -> np.ndarray | None:
    """One image per prompt with default sampling and `seed`: uint8 `[P, S, S, 3]` (None without prompts)."""
    if not prompts:
        return None
    parts = []
    for chunk in _chunks(prompts, PROMPTS_PER_CALL):
        parts.append(model.generate_images(chunk, cfg_weight=cfg_weight, seed=seed).images)
        tick(len(chunk))
    return np.concatenate(parts)


def measure_reference(model: Janus, prompts: PromptSet, settings: EvalSettings, progress: bool = False) -> Reference:
    """Everything the comparison needs from the reference model, on the CPU (the model can be closed after);
    `progress`: a bar on stderr."""
    ref = Reference(prompts, settings, describe=model.step_backend.describe_mode())
    positions = settings.image_positions(model.config.image_tokens_per_image)
    with progress_bar("reference", prompts, progress) as bar:
        ref.image_greedy = greedy_image_tokens(model, prompts.image_prompts, settings.cfg_weight, bar.update)
        ref.image_logits = []
        for p, tokens in zip(prompts.image_prompts, ref.image_greedy):
            ref.image_logits.append(teacher_forced_image_logits(model, p, tokens[:positions], settings.cfg_weight))
            bar.update(1)
        ref.chat_greedy = greedy_answers(model, prompts.chat_questions, settings.max_new_tokens)
        bar.update(len(prompts.chat_questions))
        ref.chat_logits = []
        for q, answer in zip(prompts.chat_questions, ref.chat_greedy):
            ref.chat_logits.append(teacher_forced_text_logits(model, q, answer))
            bar.update(1)
        ref.images = sampled_images(model, prompts.image_prompts, settings.seed, settings.cfg_weight, bar.update)
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


def compare(reference: Reference, model: Janus, progress: bool = False) -> Comparison:
    """Measure `model` against `reference` (from `measure_reference`) on the same prompts and settings;
    `progress`: a bar on stderr."""
    with progress_bar("quantized", reference.prompts, progress) as bar:
        return _compare(reference, model, bar.update)


def _compare(reference: Reference, model: Janus, tick: Tick) -> Comparison:
    prompts, settings = reference.prompts, reference.settings
    report: dict = {}
    if prompts.image_prompts:
        errors, top1 = [], []
        for prompt, tokens, ref_logits in zip(prompts.image_prompts, reference.image_greedy, reference.image_logits):
            logits = teacher_forced_image_logits(model, prompt, tokens[: ref_logits.shape[0]], settings.cfg_weight)
            errors.append(relative_errors(logits, ref_logits))
            top1.append(logits.argmax(-1) == ref_logits.argmax(-1))
            tick(1)
        greedy = greedy_image_tokens(model, prompts.image_prompts, settings.cfg_weight, tick)
        agreements = [token_agreement(r.tolist(), g.tolist()) for r, g in zip(reference.image_greedy, greedy)]
        report["image"] = kind_metrics(prompts.image_prompts, errors, top1, agreements)
    if prompts.chat_questions:
        errors, top1 = [], []
        for question, answer, ref_logits in zip(prompts.chat_questions, reference.chat_greedy, reference.chat_logits):
            logits = teacher_forced_text_logits(model, question, answer)
            errors.append(relative_errors(logits, ref_logits))
            top1.append(logits.argmax(-1) == ref_logits.argmax(-1))
            tick(1)
        answers = greedy_answers(model, prompts.chat_questions, settings.max_new_tokens)
        tick(len(answers))
        agreements = [token_agreement(r, a) for r, a in zip(reference.chat_greedy, answers)]
        report["text"] = kind_metrics(prompts.chat_questions, errors, top1, agreements)
    images = sampled_images(model, prompts.image_prompts, settings.seed, settings.cfg_weight, tick)
    if images is not None and reference.images is not None:
        diff = np.abs(images.astype(np.int16) - reference.images.astype(np.int16))
        report["image"]["sampled_pixel_mean_abs_diff"] = float(diff.mean())
    return Comparison(report, images)


def evaluate_pair(reference_model: Janus, other_model: Janus, prompts: PromptSet | None = None,
                  settings: EvalSettings | None = None) -> tuple[Reference, Comparison]:
    """Both models already loaded: measure the first, compare the second with it."""
    reference = measure_reference(reference_model, prompts or PromptSet(), settings or EvalSettings())
    return reference, compare(reference, other_model)
