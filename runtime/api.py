"""The janus-rt library API: `load()` a checkpoint, then `generate_images`, `chat`, `decode_image_tokens`.

Every argument is validated before any model work starts; errors say which argument and what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence, Union

import numpy as np
import torch

from .checkpoint import find_weight_files
from .config import JanusConfig, load_config
from .errors import CheckpointError, InputError
from .backend import Runner, TorchRunner
from .images import ImageLike, postprocess, preprocess
from .hub import resolve_model_path
from .info import count_parameters, describe
from .model import JanusModel, build_empty_model
from .prompts import ChatFormat, generation_prompt, understanding_prompt
from .tokenizer import IMAGE_PLACEHOLDER, JanusTokenizer
from .understanding import TextRequest, expand_placeholders
from .weights import load_weights

BACKENDS = ("torch", "triton", "onnxruntime", "tensorrt")  # the last two run exported graphs (janus_rt.export)
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}

ImagesArg = Union[None, ImageLike, Sequence[ImageLike]]


@dataclass
class ImageResult:
    tokens: torch.LongTensor  # [N, grid*grid] image-token ids, raster order
    images: np.ndarray  # uint8 [N, S, S, 3]
    prompt: str  # the exact text that was tokenized


@dataclass
class ChatResult:
    text: str  # decoded answer, special tokens skipped
    token_ids: list[int]  # new tokens only, EOS excluded
    finished: bool  # True when EOS ended the answer, False when max_new_tokens did
    prompt: str  # the exact text that was tokenized (before placeholder expansion)


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


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise InputError(f"device {device!r} is not a valid torch device ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available here; use device='cpu'")
    return dev


def _is_number(x: object) -> bool:
    """A finite int or float (bools excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not _is_number(temperature) or temperature < 0:
        raise InputError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise InputError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise InputError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def check_generation_args(num_images: int, cfg_weight: float, temperature: float, top_k: int | None,
                          top_p: float | None) -> None:
    """Validate `generate_images` arguments that need no model (the CLI calls this before loading one)."""
    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 1:
        raise InputError(f"num_images must be an integer >= 1, got {num_images!r}")
    if not _is_number(cfg_weight) or cfg_weight < 0:
        raise InputError(f"cfg_weight must be a finite number >= 0, got {cfg_weight!r}")
    _check_sampling(temperature, top_k, top_p)


def check_chat_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Validate `chat` arguments that need no model (the CLI calls this before loading one)."""
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    _check_sampling(temperature, top_k, top_p)


def _check_seed(seed: int | None) -> int | None:
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise InputError(f"seed must be an integer or None, got {seed!r}")
    return seed


class Janus:
    """A loaded Janus model with its tokenizer; create it with `janus_rt.load`."""

    def __init__(self, runner: Runner, tokenizer: JanusTokenizer, chat_format: ChatFormat, path: Path):
        self.runner = runner
        self.tokenizer = tokenizer
        self.chat_format: ChatFormat = chat_format
        self.path = path

    @property
    def backend(self) -> str:
        return self.runner.name

    @property
    def model(self) -> JanusModel | None:
        """The torch module tree (torch and triton backends); None for engine backends."""
        return self.runner.model

    @property
    def config(self) -> JanusConfig:
        return self.runner.cfg

    @property
    def device(self) -> torch.device:
        return self.runner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.runner.dtype

    @property
    def context_length(self) -> int:
        return self.config.llm.max_position_embeddings

    # ----------------------------------------------------------------------------------------- generation
    def image_prompt(self, prompt: str, raw: bool = False) -> str:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("prompt must be a non-empty string")
        if raw:
            return prompt if prompt.endswith("<begin_of_image>") else prompt + "<begin_of_image>"
        return generation_prompt(prompt, self.chat_format)

    def generate_images(
        self,
        prompt: str,
        num_images: int = 1,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        seed: int | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        raw: bool = False,
        progress: bool = False,
    ) -> ImageResult:
        """Text-to-image: `num_images` samples of `prompt` with classifier-free guidance `cfg_weight`.

        temperature 0 is argmax (deterministic); otherwise a given `seed` reproduces the tokens on the same
        device. top_k/top_p are off by default, as in the reference. `raw=True` takes a preformatted prompt.
        """
        check_generation_args(num_images, cfg_weight, temperature, top_k, top_p)
        text = self.image_prompt(prompt, raw)
        ids = self.tokenizer.encode(text)
        steps = self.config.image_tokens_per_image
        if len(ids) + steps - 1 > self.context_length:
            raise InputError(
                f"prompt is {len(ids)} tokens; with {steps} image tokens that exceeds the context of "
                f"{self.context_length} tokens: shorten the prompt"
            )
        tokens = self.runner.generate_image_tokens(
            ids, self.tokenizer.special.pad, num_images, float(cfg_weight), float(temperature), _check_seed(seed),
            top_k, top_p, progress,
        )
        return ImageResult(tokens=tokens, images=self._decode(tokens), prompt=text)

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
        return self._decode(t.to(device=self.device, dtype=torch.long))

    def _decode(self, tokens: torch.Tensor) -> np.ndarray:
        return postprocess(self.runner.decode_tokens(tokens))

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
        explicit `<image_placeholder>` in the question, one per image is put before it.

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
        check_chat_args(max_new_tokens, temperature, top_k, top_p)
        built = [self.chat_inputs(q, imgs, system_prompt, raw) for q, imgs in zip(questions, per_row)]
        longest = max(len(r.ids) for r, _ in built)
        if longest + max_new_tokens > self.context_length:
            raise InputError(
                f"prompt is {longest} tokens (images included); with max_new_tokens={max_new_tokens} that exceeds "
                f"the context of {self.context_length} tokens: shorten the prompt or lower max_new_tokens"
            )
        sp = self.tokenizer.special
        answers = self.runner.generate_text(
            [r for r, _ in built], sp.pad, sp.image_placeholder, sp.eos, max_new_tokens, float(temperature),
            _check_seed(seed), top_k, top_p,
        )
        results = [
            ChatResult(text=self.tokenizer.decode(ids), token_ids=ids, finished=done, prompt=text)
            for (ids, done), (_, text) in zip(answers, built)
        ]
        return results if batched else results[0]

    # ------------------------------------------------------------------------------------------- info
    def info(self) -> dict:
        """Variant, dimensions, parameter count and bytes of the loaded model."""
        if self.model is not None:
            parameters = count_parameters(self.model)
        else:  # engine backends: the same module tree's count, built on the meta device (no memory)
            with torch.device("meta"):
                parameters = count_parameters(JanusModel(self.config))
        info = describe(self.config, parameters, self.dtype, self.chat_format)
        info["backend"] = self.runner.describe_mode()
        return info


def load(
    path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    backend: str = "torch",
    chat_format: Literal["auto", "pro", "legacy"] = "auto",
    progress: bool = False,
    providers: Sequence[str] | None = None,
) -> Janus:
    """Load a Janus checkpoint directory (official or Hugging Face layout); a hub id is fetched when possible.

    device defaults to CUDA when available, else CPU; dtype defaults to bfloat16 on CUDA, float32 on CPU.
    chat_format "auto" picks Janus-Pro roles when the tokenizer has `<|User|>`, else the Janus-1.3B ones.
    backend "onnxruntime" / "tensorrt" run exported graphs: `path` is an export directory (`janus-rt export`)
    or a checkpoint, exported once into the export cache; `providers` lists ONNX Runtime execution providers.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")
    if chat_format not in ("auto", "pro", "legacy"):
        raise InputError(f"chat_format must be 'auto', 'pro' or 'legacy', got {chat_format!r}")
    if backend in ("onnxruntime", "tensorrt"):
        from .export import load_engine

        return load_engine(path, backend, device, dtype, providers, chat_format, progress)
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
    model = build_empty_model(cfg, dev, dt)
    load_weights(model, weights, progress=progress)
    fmt: ChatFormat = ("pro" if tokenizer.has_pro_roles else "legacy") if chat_format == "auto" else chat_format
    return Janus(make_runner(backend, model), tokenizer, fmt, path)


def make_runner(backend: str, model: JanusModel) -> Runner:
    """The runner of a torch-module backend over a loaded model."""
    if backend == "torch":
        return TorchRunner(model)
    if backend == "triton":
        from .triton_backend import TritonRunner

        return TritonRunner(model)
    raise InputError(f"backend {backend!r} is not available; choose one of {', '.join(BACKENDS)}")
