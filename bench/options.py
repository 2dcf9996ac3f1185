"""`janus-rt bench`'s options (`BenchOptions`, built by the CLI from its flags) and what follows from them alone:
the architecture's config (`bench_config`, with a smoke run's image-token grid) and each row's KV length.

Below both `harness.py` and `cold_start.py` (a cold-start child builds its model from the same options).
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field

from janus_rt.model.config import JanusConfig

from janus_rt.bench.architectures import architecture_config
from janus_rt.bench.arrivals import ArrivalSpec
from janus_rt.bench.engines import seq_len_for


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
