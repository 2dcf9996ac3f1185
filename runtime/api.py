"""The janus-rt library API: `load()` a checkpoint, then `generate_images`, `chat`, `decode_image_tokens`.

Every argument is validated before any model work starts; errors say which argument and what to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence, Union

import numpy as np
import torch

from janus_rt.checkpoint.files import find_weight_files
from janus_rt.model.config import JanusConfig
from janus_rt.model.config_loading import load_config
from janus_rt.errors import CheckpointError, InputError
from janus_rt.engine import Engine, EngineConfig, SamplingParams, StepBackend
from janus_rt.engine.params import CHAT_DEFAULTS, IMAGE_DEFAULTS
from janus_rt.requests.pixels import ImageLike, postprocess
from janus_rt.checkpoint.hub import resolve_model_path
from janus_rt.checkpoint.info import count_parameters, describe
from janus_rt.jobs import ChatJob, ChatResult, ImageJob, ImageResult
from janus_rt.previews import Preview
from janus_rt.model.janus import JanusModel, build_empty_model
from janus_rt.requests.chat import Conversation, PreparedChat, check_chat_args, check_stop, prepare_chat
from janus_rt.requests.context import RequestContext
from janus_rt.requests.image import PreparedImages, image_prompt_text, prepare_images
from janus_rt.requests.image_tokens import checked_image_tokens
from janus_rt.requests.prompts import ChatFormat
from janus_rt.spelling import API
from janus_rt.backends.choice import BACKENDS, make_backend, parse_fusions, resolve_device, resolve_dtype
from janus_rt.checkpoint.tokenizer import JanusTokenizer
from janus_rt.model.prefill import TextRequest
from janus_rt.checkpoint.weights import load_weights
from janus_rt.backends.warmup import warm_up
from janus_rt.quant.checkpoint import read_quant_block
from janus_rt.quant.loading import as_spec, build_quantized_at_load, build_quantized_from_folder

if TYPE_CHECKING:
    from janus_rt.backends.triton_ops import Fusions
    from janus_rt.quant import QuantSpec


ImagesArg = Union[None, ImageLike, Sequence[ImageLike]]


def _image_list(images: ImagesArg) -> list:
    """None, one image or a list of them -> a list."""
    return [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]


VQ_DECODE_CHUNK = 8  # images the VQ decoder turns into pixels at once (its activations grow with each image)


class Janus:
    """A loaded Janus model with its tokenizer and engine; create it with `janus_rt.load`.

    Every call is thread-safe: concurrent calls (and `submit_*` jobs) share the engine's decode steps.
    """

    def __init__(self, step_backend: StepBackend, tokenizer: JanusTokenizer, chat_format: ChatFormat, path: Path,
                 engine_config: EngineConfig | None = None):
        self.step_backend = step_backend
        self.tokenizer = tokenizer
        self.chat_format: ChatFormat = chat_format
        self.path = path
        self.engine = Engine(step_backend, engine_config)

    @property
    def backend(self) -> str:
        """The backend's name ("torch", "triton", "onnxruntime", "tensorrt"); the object is `step_backend`."""
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
        return warm_up(self, image_batches, text_batches, progress=progress)

    # ----------------------------------------------------------------------------------------- generation
    @property
    def request_context(self) -> RequestContext:
        """What preparing a request needs from this model (`janus_rt.requests`)."""
        cfg = self.config
        return RequestContext(self.tokenizer, self.chat_format, self.engine.capacity, cfg.image_tokens_per_image,
                              cfg.vision.num_patches, cfg.image_processor)

    def image_prompt(self, prompt: str, raw: bool = False) -> str:
        """`prompt` in this model's text-to-image format (`raw=True`: as given, `<begin_of_image>` appended)."""
        return image_prompt_text(prompt, self.request_context, raw)

    def submit_images(
        self,
        prompt: str | Sequence[str],
        num_images: int = 1,
        cfg_weight: float = IMAGE_DEFAULTS.cfg_weight,
        temperature: float = IMAGE_DEFAULTS.temperature,
        seed: int | None = None,
        top_k: int | None = IMAGE_DEFAULTS.top_k,
        top_p: float | None = IMAGE_DEFAULTS.top_p,
        raw: bool = False,
        negative_prompt: str | None = None,
        partial_images: int = 0,
    ) -> ImageJob:
        """Queue `generate_images` work and return at once: `job.result()`, `await job`, `job.cancel()`; with
        `partial_images=K`, `job.previews()` / `job.apreviews()` yield up to K previews per image as it is drawn."""
        params = SamplingParams.checked(API, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                                        cfg_weight=cfg_weight)
        return self.submit_prepared(prepare_images(prompt, num_images, params, self.request_context, raw,
                                                   negative_prompt=negative_prompt, partial_images=partial_images))

    def submit_prepared(self, prepared: PreparedImages | PreparedChat) -> ImageJob | ChatJob:
        """Queue a request made by `janus_rt.requests` (`prepare_images` / `prepare_chat`) and return its job."""
        if isinstance(prepared, PreparedChat):
            sp = self.tokenizer.special
            handle = self.engine.submit_text(prepared.ids, prepared.pixel_values, sp.eos, sp.image_placeholder,
                                             prepared.params)
            return ChatJob(handle, prepared.prompt, self.tokenizer, prepared.stop)
        pad = self.tokenizer.special.pad
        requests = []
        try:
            for ids in prepared.prompt_ids:
                requests.append(self.engine.submit_images(ids, pad, prepared.num_images, prepared.params,
                                                          prepared.negative_ids, prepared.preview_steps))
        except Exception:
            for r in requests:
                r.cancel()
            raise
        return ImageJob(requests, prepared.texts, prepared.single, self._decode, self.config.vq.image_token_grid)

    def generate_images(
        self,
        prompt: str | Sequence[str],
        num_images: int = 1,
        cfg_weight: float = IMAGE_DEFAULTS.cfg_weight,
        temperature: float = IMAGE_DEFAULTS.temperature,
        seed: int | None = None,
        top_k: int | None = IMAGE_DEFAULTS.top_k,
        top_p: float | None = IMAGE_DEFAULTS.top_p,
        raw: bool = False,
        progress: bool = False,
        negative_prompt: str | None = None,
        partial_images: int = 0,
        on_preview: Callable[[Preview], None] | None = None,
    ) -> ImageResult:
        """Text-to-image: `num_images` samples of `prompt` (or of each prompt of a list, in order) with CFG.

        temperature 0 is argmax (deterministic); otherwise a given `seed` reproduces the tokens on the same
        device, whatever else runs beside them (each prompt of a list gets the same seed, so it equals its solo
        call). top_k/top_p are off by default, as in the reference. `raw=True` takes a preformatted prompt.
        `negative_prompt`: what the unconditional rows say instead of nothing (the guidance pushes away from it);
        None or "" is the reference's behaviour. `partial_images=K` with `on_preview`: up to K previews per image
        (`janus_rt.previews.Preview`) are passed to `on_preview` as they are drawn, in this thread.
        """
        job = self.submit_images(prompt, num_images, cfg_weight, temperature, seed, top_k, top_p, raw,
                                 negative_prompt, partial_images)
        if on_preview is not None:
            try:
                for preview in job.previews():
                    on_preview(preview)
            except BaseException:
                job.cancel()
                raise
        return job.result(progress=progress)

    def decode_image_tokens(self, tokens: torch.Tensor | np.ndarray | Sequence[Sequence[int]]) -> np.ndarray:
        """Image-token ids `[N, grid*grid]` (or one row `[grid*grid]`) -> uint8 images `[N, S, S, 3]`."""
        cfg = self.config
        return self._decode(checked_image_tokens(tokens, cfg.image_tokens_per_image, cfg.vq.codebook_size))

    def _decode(self, tokens: torch.Tensor) -> np.ndarray:
        """Pixels of `[N, grid*grid]` tokens, VQ_DECODE_CHUNK images at a time (device memory stays flat in N)."""
        chunks = [postprocess(self.step_backend.decode_pixels(tokens[i:i + VQ_DECODE_CHUNK].to(self.device)))
                  for i in range(0, tokens.shape[0], VQ_DECODE_CHUNK)]
        return np.concatenate(chunks)

    # ------------------------------------------------------------------------------------ understanding
    def chat_prompt(self, question: str, num_images: int, system_prompt: str | None = None, raw: bool = False) -> str:
        """The full prompt of a question about `num_images` images in this model's chat format."""
        return self._conversation(question, [None] * num_images, system_prompt, raw).prompt(self.request_context)

    @staticmethod
    def _conversation(question: object, images: list, system_prompt: str | None, raw: bool) -> Conversation:
        return Conversation.preformatted(question, images) if raw else Conversation.question(question, images,
                                                                                                  system_prompt)

    def chat_inputs(
        self, question: str, images: ImagesArg = None, system_prompt: str | None = None, raw: bool = False
    ) -> tuple[TextRequest, str]:
        """The exact model inputs of one chat row: (ids with placeholders expanded + pixels, prompt text)."""
        conversation = self._conversation(question, _image_list(images), system_prompt, raw)
        prepared = prepare_chat(conversation, CHAT_DEFAULTS, self.request_context, shrink_to_fit=True)
        return prepared.inputs, prepared.prompt

    def submit_chat(
        self,
        question: str,
        image: ImagesArg = None,
        max_new_tokens: int = CHAT_DEFAULTS.max_new_tokens,
        temperature: float = CHAT_DEFAULTS.temperature,
        top_p: float | None = CHAT_DEFAULTS.top_p,
        top_k: int | None = CHAT_DEFAULTS.top_k,
        seed: int | None = None,
        system_prompt: str | None = None,
        raw: bool = False,
        stop: str | Sequence[str] | None = None,
    ) -> ChatJob:
        """Queue one answer and return at once: `job.result()`, `await job`, `job.stream()` / `job.astream()`
        (text pieces as they are decoded), `job.cancel()`. Arguments as `chat` with a single question."""
        params = check_chat_args(max_new_tokens, temperature, top_k, top_p, seed)
        conversation = self._conversation(question, _image_list(image), system_prompt, raw)
        return self.submit_prepared(prepare_chat(conversation, params, self.request_context, stop=stop))

    def chat(
        self,
        question: str | Sequence[str],
        image: ImagesArg | Sequence[ImagesArg] = None,
        max_new_tokens: int = CHAT_DEFAULTS.max_new_tokens,
        temperature: float = CHAT_DEFAULTS.temperature,
        top_p: float | None = CHAT_DEFAULTS.top_p,
        top_k: int | None = CHAT_DEFAULTS.top_k,
        seed: int | None = None,
        system_prompt: str | None = None,
        raw: bool = False,
        stop: str | Sequence[str] | None = None,
    ) -> ChatResult | list[ChatResult]:
        """Answer a question about zero or more images (greedy by default).

        A single question takes `image` as None, one image, or a list of images; a list of questions is a
        batch and takes `image` as a list with one entry (None, an image or a list) per question. Without an
        explicit `<image_placeholder>` in the question, one per image is put before it. Each question is its own
        request: its answer is the one it gets alone (a seed applies to each question's own stream).

        Sampling (temperature > 0) follows transformers' `generate`, which the reference calls: temperature,
        then top-k (50 unless given; None turns it off), then top-p, on fp32 logits; a `seed` reproduces the
        reference's draw after `torch.manual_seed(seed)` on the same device. `stop`: a string or up to 4 strings;
        the answer ends right before the first one it produces (not returned; `ChatResult.stop_sequence`).
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
        check_stop(stop)
        conversations = [self._conversation(q, _image_list(imgs), system_prompt, raw)  # all checked before any runs
                         for q, imgs in zip(questions, per_row)]
        jobs: list[ChatJob] = []
        try:
            for conversation in conversations:
                jobs.append(self.submit_prepared(prepare_chat(conversation, params, self.request_context, stop=stop)))
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
        from janus_rt.export import open_export  # start-up time: the export stage, for these backends only

        opened = open_export(path, backend, device, dtype, providers, chat_format, progress,
                             load_checkpoint=lambda checkpoint: load(checkpoint, device="cpu", dtype="float32",
                                                                     backend="torch", progress=progress))
        loaded = Janus(opened.step_backend, opened.tokenizer, opened.chat_format, opened.path, engine)
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
    block = read_quant_block(path)
    if block is not None:
        if quantize is not None:
            raise InputError(f"{path} is already quantized ({block['format']}); load it without quantize=",
                             param="quantize")
        return build_quantized_from_folder(path, cfg, dev, dt, progress)
    if quantize is not None:
        return build_quantized_at_load(weights, cfg, as_spec(quantize), dev, dt, progress)
    model = build_empty_model(cfg, dev, dt)
    load_weights(model, weights, progress=progress)
    return model


