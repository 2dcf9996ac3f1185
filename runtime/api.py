"""The janus-rt library API: `load()` a checkpoint, then `generate_images`, `chat`, `decode_image_tokens`.

Every argument is validated before any model work starts; errors say which argument and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence, Union

import numpy as np
import torch

from janus_rt.checkpoint.files import find_weight_files
from janus_rt.model.config import JanusConfig, load_config
from janus_rt.errors import CheckpointError, InputError
from janus_rt.engine import Engine, EngineConfig, SamplingParams, StepBackend
from janus_rt.requests.images import ImageLike, postprocess, preprocess
from janus_rt.checkpoint.hub import resolve_model_path
from janus_rt.checkpoint.info import count_parameters, describe
from janus_rt.jobs import ChatJob, ChatResult, ImageJob, ImageResult
from janus_rt.model.janus import JanusModel, build_empty_model
from janus_rt.requests.prompts import ChatFormat, generation_prompt, understanding_prompt
from janus_rt.spelling import API, Spelling
from janus_rt.checkpoint.tokenizer import IMAGE_PLACEHOLDER, JanusTokenizer
from janus_rt.model.prefill import TextRequest, expand_placeholders
from janus_rt.checkpoint.weights import load_weights

if TYPE_CHECKING:
    from janus_rt.backends.triton_ops import Fusions
    from janus_rt.quant import QuantSpec

BACKENDS = ("torch", "triton", "onnxruntime", "tensorrt")  # the last two run exported graphs (janus_rt.export)
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}

ImagesArg = Union[None, ImageLike, Sequence[ImageLike]]


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:  # bf16 on CUDA like the reference; fp16 on pre-Ampere GPUs, which lack fast bf16
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"dtype {dtype} is not supported; use float32, bfloat16 or float16")
        return dtype
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def resolve_device(device: str | torch.device | None, spelling: Spelling = API) -> torch.device:
    """The torch device to run on (CUDA when available by default); refuses one this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"{spelling.setting('device', device)}: not a valid torch device ({e}); "
                         f"use e.g. {spelling.setting('device', 'cuda')} or {spelling.setting('device', 'cpu')}",
                         param="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{spelling.setting('device', device)}: CUDA is not available on this machine; "
                         f"use {spelling.setting('device', 'cpu')}", param="device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"{spelling.setting('device', device)}: this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s), numbered from 0", param="device")
    return dev


MAX_IMAGES_PER_CALL = 256  # images one generate call may ask for: tokens and pixels are held until it returns
VQ_DECODE_CHUNK = 8  # images the VQ decoder turns into pixels at once (its activations grow with each image)


def check_generation_args(num_images: int, cfg_weight: float, temperature: float, top_k: int | None,
                          top_p: float | None, seed: int | None = None, num_prompts: int = 1,
                          spelling: Spelling = API) -> SamplingParams:
    """Validate `generate_images` arguments that need no model (the CLI calls this before loading one)."""
    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 1:
        raise InputError(f"{spelling.name('num_images')} must be an integer >= 1, got {num_images!r}",
                         param="num_images")
    if num_images * num_prompts > MAX_IMAGES_PER_CALL:
        asked = f"{num_prompts} prompts x {num_images} images" if num_prompts > 1 else f"{num_images} images"
        raise InputError(f"{spelling.name('num_images')}: {asked} is more than one call may ask for "
                         f"({MAX_IMAGES_PER_CALL}: every image is held in memory until the call returns); "
                         "split the work into several calls", param="num_images")
    return SamplingParams.checked(spelling, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                  cfg_weight=cfg_weight)


def check_chat_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                    seed: int | None = None, spelling: Spelling = API) -> SamplingParams:
    """Validate `chat` arguments that need no model (the CLI calls this before loading one)."""
    return SamplingParams.checked(spelling, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                  max_new_tokens=max_new_tokens)


class Janus:
    """A loaded Janus model with its tokenizer and engine; create it with `janus_rt.load`.

    Every call is thread-safe: concurrent calls (and `submit_*` jobs) share the engine's decode steps.
    """

    def __init__(self, backend: StepBackend, tokenizer: JanusTokenizer, chat_format: ChatFormat, path: Path,
                 engine: EngineConfig | None = None):
        self.step_backend = backend
        self.tokenizer = tokenizer
        self.chat_format: ChatFormat = chat_format
        self.path = path
        self.engine = Engine(backend, engine)

    @property
    def backend(self) -> str:
        return self.step_backend.name

    @property
    def model(self) -> JanusModel | None:
        """The torch module tree (torch and triton backends); None for exported-graph backends."""
        return self.step_backend.model

    @property
    def config(self) -> JanusConfig:
        return self.step_backend.cfg

    @property
    def device(self) -> torch.device:
        return self.step_backend.device

    @property
    def dtype(self) -> torch.dtype:
        return self.step_backend.dtype

    @property
    def context_length(self) -> int:
        return self.config.llm.max_position_embeddings

    def stats(self) -> dict:
        """Engine counters: decode_steps, peak_rows, active_rows, queued_requests, ... and the pool's size."""
        return self.engine.stats()

    def close(self) -> None:
        """Stop the engine thread (running requests fail); the model stays loaded but takes no more work."""
        self.engine.close()

    def warmup(self, image_batches: Sequence[int] = (1, 2, 4, 8), text_batches: Sequence[int] = (1, 2, 4),
               progress: bool = False) -> list:
        """Build every decode bucket the engine can reach (compile, tune, capture), then run the common shapes, before
        the first request (`runtime/backends/warmup.py`);
        returns `WarmupStep(kind, batch, seconds)` for each shape. Call it on an idle model (a server: before
        it opens its port)."""
        from janus_rt.backends.warmup import warm_up

        return warm_up(self, image_batches, text_batches, progress=progress)

    # ----------------------------------------------------------------------------------------- generation
    def image_prompt(self, prompt: str, raw: bool = False) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt must be a non-empty string")
        if raw:
            return prompt if prompt.endswith("<begin_of_image>") else prompt + "<begin_of_image>"
        return generation_prompt(prompt, self.chat_format)

    def submit_images(
        self,
        prompt: str | Sequence[str],
        num_images: int = 1,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        seed: int | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        raw: bool = False,
    ) -> ImageJob:
        """Queue `generate_images` work and return at once: `job.result()`, `await job`, `job.cancel()`."""
        single = isinstance(prompt, str)
        if not single and (not isinstance(prompt, (list, tuple)) or not prompt):
            raise InputError(f"prompt must be a non-empty string or a non-empty list of them, got {prompt!r}")
        params = check_generation_args(num_images, cfg_weight, temperature, top_k, top_p, seed,
                                       num_prompts=1 if single else len(prompt))
        texts = [self.image_prompt(p, raw) for p in ([prompt] if single else prompt)]
        steps = self.config.image_tokens_per_image
        encoded = [self.tokenizer.encode(t) for t in texts]
        for ids in encoded:
            if len(ids) + steps - 1 > self.context_length:
                raise InputError(
                    f"prompt is {len(ids)} tokens; with {steps} image tokens that exceeds the context of "
                    f"{self.context_length} tokens: shorten the prompt"
                )
        pad = self.tokenizer.special.pad
        requests = []
        try:
            for ids in encoded:
                requests.append(self.engine.submit_images(ids, pad, num_images, params))
        except Exception:
            for r in requests:
                r.cancel()
            raise
        return ImageJob(requests, texts, single, self._decode)

    def generate_images(
        self,
        prompt: str | Sequence[str],
        num_images: int = 1,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        seed: int | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        raw: bool = False,
        progress: bool = False,
    ) -> ImageResult:
        """Text-to-image: `num_images` samples of `prompt` (or of each prompt of a list, in order) with CFG.

        temperature 0 is argmax (deterministic); otherwise a given `seed` reproduces the tokens on the same
        device, whatever else runs beside them (each prompt of a list gets the same seed, so it equals its solo
        call). top_k/top_p are off by default, as in the reference. `raw=True` takes a preformatted prompt.
        """
        job = self.submit_images(prompt, num_images, cfg_weight, temperature, seed, top_k, top_p, raw)
        return job.result(progress=progress)

    def decode_image_tokens(self, tokens: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Image-token ids `[N, grid*grid]` (or one row `[grid*grid]`) -> uint8 images `[N, S, S, 3]`."""
        try:
            t = tokens if isinstance(tokens, torch.Tensor) else torch.as_tensor(np.asarray(tokens))
        except (TypeError, ValueError) as e:
            raise InputError(f"image tokens must be an integer tensor / array of shape [N, "
                             f"{self.config.image_tokens_per_image}], got {type(tokens).__name__} ({e})") from None
        if t.dim() == 1:
            t = t[None]
        n_tok, codes = self.config.image_tokens_per_image, self.config.vq.codebook_size
        if t.dim() != 2 or t.shape[1] != n_tok or t.shape[0] < 1:
            raise InputError(f"image tokens must have shape [N, {n_tok}], got {list(t.shape)}")
        if t.is_floating_point() or t.dtype == torch.bool:
            raise InputError(f"image tokens must be integers, got dtype {t.dtype}")
        if int(t.min()) < 0 or int(t.max()) >= codes:
            raise InputError(f"image tokens must lie in [0, {codes}), got values in [{int(t.min())}, {int(t.max())}]")
        return self._decode(t.to(dtype=torch.long))

    def _decode(self, tokens: torch.Tensor) -> np.ndarray:
        """Pixels of `[N, grid*grid]` tokens, VQ_DECODE_CHUNK images at a time (device memory stays flat in N)."""
        chunks = [postprocess(self.step_backend.decode_pixels(tokens[i:i + VQ_DECODE_CHUNK].to(self.device)))
                  for i in range(0, tokens.shape[0], VQ_DECODE_CHUNK)]
        return np.concatenate(chunks)

    # ------------------------------------------------------------------------------------ understanding
    def chat_prompt(self, question: str, num_images: int, system_prompt: str | None = None, raw: bool = False) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InputError("question must be a non-empty string")
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InputError(f"system_prompt must be a string or None, got {type(system_prompt).__name__}")
        if raw:
            return question
        return understanding_prompt(question, num_images, self.chat_format, system_prompt)

    def chat_inputs(
        self, question: str, images: ImagesArg = None, system_prompt: str | None = None, raw: bool = False
    ) -> tuple[TextRequest, str]:
        """The exact model inputs of one chat row: (ids with placeholders expanded + pixels, prompt text)."""
        image_list = [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]
        text = self.chat_prompt(question, len(image_list), system_prompt, raw)
        sp = self.tokenizer.special
        ids = self.tokenizer.encode(text)
        placeholders = ids.count(sp.image_placeholder)
        if placeholders != len(image_list):
            raise InputError(
                f"the prompt has {placeholders} {IMAGE_PLACEHOLDER} tag(s) but {len(image_list)} image(s) were given; "
                "pass one image per tag"
            )
        pixels = torch.stack([preprocess(img, self.config.image_processor) for img in image_list]) if image_list else None
        ids = expand_placeholders(ids, sp.image_placeholder, sp.begin_of_image, sp.end_of_image, self.config.vision.num_patches)
        return TextRequest(ids=ids, pixel_values=pixels), text

    def submit_chat(
        self,
        question: str,
        image: ImagesArg = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float | None = None,
        top_k: int | None = 50,
        seed: int | None = None,
        system_prompt: str | None = None,
        raw: bool = False,
    ) -> ChatJob:
        """Queue one answer and return at once: `job.result()`, `await job`, `job.stream()` / `job.astream()`
        (text pieces as they are decoded), `job.cancel()`. Arguments as `chat` with a single question."""
        params = check_chat_args(max_new_tokens, temperature, top_k, top_p, seed)
        return self._submit_chat_row(question, image, params, system_prompt, raw)

    def _submit_chat_row(self, question: str, image: ImagesArg, params: SamplingParams, system_prompt: str | None,
                         raw: bool) -> ChatJob:
        request, text = self.chat_inputs(question, image, system_prompt, raw)
        return self.submit_chat_inputs(request, text, params)

    def submit_chat_inputs(self, request: TextRequest, prompt: str, params: SamplingParams) -> ChatJob:
        """Queue one answer to inputs prepared by `chat_inputs` (a server measures the prompt first, then submits
        it without preprocessing the images twice); `prompt` is the text it came from."""
        if len(request.ids) + params.max_new_tokens > self.context_length:
            raise InputError(
                f"prompt is {len(request.ids)} tokens (images included); with max_new_tokens={params.max_new_tokens} "
                f"that exceeds the context of {self.context_length} tokens: shorten the prompt or lower max_new_tokens"
            )
        sp = self.tokenizer.special
        handle = self.engine.submit_text(request.ids, request.pixel_values, sp.eos, sp.image_placeholder, params)
        return ChatJob(handle, prompt, self.tokenizer)

    def chat(
        self,
        question: str | Sequence[str],
        image: ImagesArg | Sequence[ImagesArg] = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float | None = None,
        top_k: int | None = 50,
        seed: int | None = None,
        system_prompt: str | None = None,
        raw: bool = False,
    ) -> ChatResult | list[ChatResult]:
        """Answer a question about zero or more images (greedy by default).

        A single question takes `image` as None, one image, or a list of images; a list of questions is a
        batch and takes `image` as a list with one entry (None, an image or a list) per question. Without an
        explicit `<image_placeholder>` in the question, one per image is put before it. Each question is its own
        request: its answer is the one it gets alone (a seed applies to each question's own stream).

        Sampling (temperature > 0) follows transformers' `generate`, which the reference calls: temperature,
        then top-k (50 unless given; None turns it off), then top-p, on fp32 logits; a `seed` reproduces the
        reference's draw after `torch.manual_seed(seed)` on the same device.
        """
        batched = not isinstance(question, str)
        if batched and not isinstance(question, (list, tuple)):
            raise InputError(f"question must be a non-empty string or a list of them, got {type(question).__name__}")
        questions = list(question) if batched else [question]
        if batched:
            if not questions:
                raise InputError("question list is empty")
            if image is not None and not isinstance(image, (list, tuple)):
                raise InputError(f"with a list of questions, image must be a list with one entry (None, an image or a "
                                 f"list of images) per question, got {type(image).__name__}")
            per_row = [None] * len(questions) if image is None else list(image)  # type: ignore[arg-type]
            if len(per_row) != len(questions):
                raise InputError(f"{len(questions)} questions but {len(per_row)} image entries; give one entry (or None) per question")
        else:
            per_row = [image]
        params = check_chat_args(max_new_tokens, temperature, top_k, top_p, seed)
        for q in questions:  # every question checked before any is queued
            if not isinstance(q, str) or not q.strip():
                raise InputError("question must be a non-empty string")
        jobs: list[ChatJob] = []
        try:
            for q, imgs in zip(questions, per_row):
                jobs.append(self._submit_chat_row(q, imgs, params, system_prompt, raw))
        except Exception:
            for j in jobs:
                j.cancel()
            raise
        results = [j.result() for j in jobs]
        return results if batched else results[0]

    # ------------------------------------------------------------------------------------------- info
    def info(self) -> dict:
        """Variant, dimensions, parameter count and bytes of the loaded model, and the engine's pool."""
        if self.model is not None:
            parameters = count_parameters(self.model)
        else:  # graph backends: the same module tree's count, built on the meta device (no memory)
            with torch.device("meta"):
                parameters = count_parameters(JanusModel(self.config))
        info = describe(self.config, parameters, self.dtype, self.chat_format)
        info["backend"] = self.step_backend.describe_mode()
        info["engine"] = {"max_rows": self.engine.max_rows, "max_seq_len": self.engine.max_seq_len}
        return info


def load(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    backend: str = "torch",
    chat_format: Literal["auto", "pro", "legacy"] = "auto",
    progress: bool = False,
    providers: Sequence[str] | None = None,
    engine: EngineConfig | None = None,
    quantize: "str | QuantSpec | None" = None,
    warmup: bool = False,
    fusions: "str | Fusions | None" = None,
) -> Janus:
    """Load a Janus checkpoint directory (official or Hugging Face layout); a hub id is fetched when possible.

    device defaults to CUDA when available, else CPU; dtype defaults to bfloat16 on CUDA, float32 on CPU.
    chat_format "auto" picks Janus-Pro roles when the tokenizer has `<|User|>`, else the Janus-1.3B ones.
    backend "onnxruntime" / "tensorrt" run exported graphs: `path` is an export directory (`janus-rt export`)
    or a checkpoint, exported once into the export cache; `providers` lists ONNX Runtime execution providers.
    `engine` sizes the engine's KV rows (`EngineConfig`: max_rows, max_seq_len, gpu_memory_utilization, ...).
    `quantize` ("int8", "int4", "fp8" or a `janus_rt.quant.QuantSpec`) quantizes the transformer's linears
    and the two heads while loading; a folder written by `janus-rt quantize` loads quantized as it is.
    `warmup=True` builds every reachable decode bucket (compile, tune, capture) before returning (`Janus.warmup`).
    `fusions` (backend "triton"): the decode step's optional fused kernels, "none" (default), "all" or a list of
    norm, silu, attn (`janus_rt.backends.triton_ops.Fusions`; not yet the default: see bench/NOTES.md).
    """
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")
    if chat_format not in ("auto", "pro", "legacy"):
        raise InputError(f"chat_format must be 'auto', 'pro' or 'legacy', got {chat_format!r}")
    step_fusions = parse_fusions(fusions, backend)
    if backend in ("onnxruntime", "tensorrt"):
        if quantize is not None:
            raise InputError(f"quantize= works with the torch and triton backends, not {backend!r} (export a float "
                             "checkpoint instead)", param="quantize")
        from janus_rt.export import load_engine

        loaded = load_engine(path, backend, device, dtype, providers, chat_format, progress, engine)
        if warmup:
            loaded.warmup(progress=progress)
        return loaded
    if providers is not None:
        raise InputError(f"providers= is an option of backend='onnxruntime', not of backend {backend!r}")
    path = resolve_model_path(str(path))
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    cfg = load_config(path)
    tokenizer = JanusTokenizer(path)
    if tokenizer.vocab_size > cfg.llm.vocab_size:
        raise CheckpointError(
            f"{tokenizer.path}: has {tokenizer.vocab_size} tokens but the language model's embedding has only "
            f"{cfg.llm.vocab_size} rows; the tokenizer does not belong to this checkpoint"
        )
    weights = find_weight_files(path)
    model = _build_model(path, weights, cfg, dev, dt, quantize, progress)
    fmt: ChatFormat = ("pro" if tokenizer.has_pro_roles else "legacy") if chat_format == "auto" else chat_format
    loaded = Janus(make_backend(backend, model, step_fusions), tokenizer, fmt, path, engine)
    if warmup:
        loaded.warmup(progress=progress)
    return loaded


def _build_model(path: Path, weights, cfg: JanusConfig, dev: torch.device, dt: torch.dtype,
                 quantize: "str | QuantSpec | None", progress: bool) -> JanusModel:
    """The loaded model: float, quantized while loading (`quantize=`), or a quantized folder as stored."""
    from janus_rt.quant.checkpoint import read_quant_block

    block = read_quant_block(path)
    if block is not None:
        from janus_rt.quant.loading import build_quantized_from_folder

        if quantize is not None:
            raise InputError(f"{path} is already quantized ({block['format']}); load it without quantize=",
                             param="quantize")
        return build_quantized_from_folder(path, cfg, dev, dt, progress)
    if quantize is not None:
        from janus_rt.quant.loading import as_spec, build_quantized_at_load

        return build_quantized_at_load(weights, cfg, as_spec(quantize), dev, dt, progress)
    model = build_empty_model(cfg, dev, dt)
    load_weights(model, weights, progress=progress)
    return model


def parse_fusions(fusions: "str | Fusions | None", backend: str) -> "Fusions | None":
    """`fusions=` of `load`, checked: a `Fusions`, or None (the backend's default)."""
    from janus_rt.backends.triton_ops import Fusions

    if fusions is None or isinstance(fusions, Fusions):
        parsed = fusions
    else:
        try:
            parsed = Fusions.parse(str(fusions))
        except ValueError as e:
            raise InputError(str(e), param="fusions") from None
    if parsed is not None and parsed != Fusions() and backend != "triton":
        raise InputError(f"fused kernels (fusions) are an option of the triton backend; backend {backend!r} has none: "
                         "drop them or use the triton backend", param="fusions")
    return parsed


def make_backend(backend: str, model: JanusModel, fusions: "Fusions | None" = None) -> StepBackend:
    """The step backend of a torch-module backend over a loaded model (`fusions`: the triton backend's optional
    fused kernels, None for its default)."""
    if backend == "torch":
        from janus_rt.backends.eager import TorchBackend

        return TorchBackend(model)
    if backend == "triton":
        from janus_rt.backends.triton import TritonBackend

        return TritonBackend(model) if fusions is None else TritonBackend(model, fusions=fusions)
    raise InputError(f"backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")
