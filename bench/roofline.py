"""The memory roofline of a decode step: bytes it must read, the bandwidth of this GPU, and MBU.

A decode step reads every weight it uses once, plus the KV cache of every row up to the current position:
    floor_s = (weight_bytes + rows * kv_bytes_per_token * context) / bandwidth
MBU (model bandwidth utilisation) = floor_s / measured step time. The bandwidth is the one *measured* here by
a large device-to-device copy (bytes read + written); the datasheet figure is reported beside it.

What a step reads (embedding rows are a few KB and are ignored):
- image step: gen_aligner (code vector -> hidden), the decoder layers, the final norm, the gen head;
- text step: the decoder layers, the final norm, lm_head.
With quantized weights (`janus-rt bench --quant`) the weight bytes are the stored ones (packed values, scales,
zero points: `janus_rt.quant.model.step_weight_bytes`); the KV cache stays in the activation dtype.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from janus_rt.model.config import JanusConfig, LLMConfig, MlpConfig
from janus_rt.backends.graph_capture import empty_cuda_cache

# Datasheet HBM/GDDR bandwidth in GB/s (1e9 bytes/s), matched against torch.cuda.get_device_name, first hit wins.
DATASHEET_GBPS: tuple[tuple[str, float], ...] = (
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40 GB parts
    ("L40S", 864.0),
    ("L4", 300.0),
)


def datasheet_gbps(gpu_name: str) -> float | None:
    """The datasheet memory bandwidth (GB/s) of a GPU by its name, or None when this table does not know it."""
    for key, gbps in DATASHEET_GBPS:
        if key.lower() in gpu_name.lower():
            return gbps
    return None


def measure_copy_bandwidth(device: torch.device, nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Device memory bandwidth in bytes/s: median over `repeats` of one `nbytes` copy (read + write counted).

    CUDA only (timed with events); the buffers are freed before returning.
    """
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up
    times_ms = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times_ms.append(start.elapsed_time(end))
    del src, dst
    empty_cuda_cache()
    return 2 * nbytes / (statistics.median(times_ms) / 1e3)


def _mlp_params(m: MlpConfig) -> int:
    dims = [m.input_dim] + [m.output_dim] * m.depth
    return sum(dims[i] * dims[i + 1] + dims[i + 1] for i in range(m.depth))


def decoder_params(llm: LLMConfig) -> int:
    """Parameters of the decoder layers plus the final norm (what every token of every step runs through)."""
    q, kv = llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim
    d = llm.hidden_size
    per_layer = d * (q + 2 * kv) + q * d + 3 * d * llm.intermediate_size + 2 * d  # qkv, o, gate|up|down, 2 norms
    return llm.num_layers * per_layer + d


def image_step_params(cfg: JanusConfig) -> int:
    """Parameters one image-token decode step reads: gen_aligner + decoder + final norm + gen head."""
    g = cfg.gen_head
    head = g.input_dim * g.hidden_dim + g.hidden_dim + g.hidden_dim * g.vocab_size + g.vocab_size
    return _mlp_params(cfg.gen_aligner) + decoder_params(cfg.llm) + head


def text_step_params(cfg: JanusConfig) -> int:
    """Parameters one text decode step reads: decoder + final norm + lm_head."""
    return decoder_params(cfg.llm) + cfg.llm.hidden_size * cfg.llm.vocab_size


def kv_bytes_per_token(llm: LLMConfig, elem_bytes: int) -> int:
    """KV-cache bytes per token per row: keys and values of every layer (2 * layers * kv_heads * head_dim)."""
    return 2 * llm.num_layers * llm.num_kv_heads * llm.head_dim * elem_bytes


@dataclass(frozen=True)
class StepBytes:
    """Bytes a run of decode steps reads per step, on average."""

    weights: int  # weight bytes per step
    kv: float  # KV bytes per step: rows * kv_bytes_per_token * average context

    @property
    def total(self) -> float:
        return self.weights + self.kv


def mean_context(first_context: int, steps: int) -> float:
    """Average keys attended over `steps` decode steps whose first step attends `first_context` keys."""
    return first_context + (steps - 1) / 2 if steps > 0 else float(first_context)


def image_decode_bytes(cfg: JanusConfig, num_images: int, prompt_len: int, elem_bytes: int,
                       weight_bytes: int | None = None) -> StepBytes:
    """Average bytes per image decode step: 2 rows per image (CFG), steps 1..575 attend prompt_len+1..+575 keys.

    `weight_bytes`: the step's weight bytes when they are not `image_step_params * elem_bytes` (quantized
    weights: `janus_rt.quant.model.step_weight_bytes(cfg, dtype, spec)["image"]`); the KV stays in `elem_bytes`.
    """
    steps = cfg.image_tokens_per_image - 1
    ctx = mean_context(prompt_len + 1, steps)
    weights = image_step_params(cfg) * elem_bytes if weight_bytes is None else weight_bytes
    return StepBytes(weights, 2 * num_images * kv_bytes_per_token(cfg.llm, elem_bytes) * ctx)


def text_decode_bytes(cfg: JanusConfig, batch: int, prompt_len: int, new_tokens: int, elem_bytes: int,
                      weight_bytes: int | None = None) -> StepBytes:
    """Average bytes per text decode step (the new_tokens - 1 steps after the first token); `weight_bytes` as
    for `image_decode_bytes` (quantized: `step_weight_bytes(...)["text"]`)."""
    ctx = mean_context(prompt_len + 1, new_tokens - 1)
    weights = text_step_params(cfg) * elem_bytes if weight_bytes is None else weight_bytes
    return StepBytes(weights, batch * kv_bytes_per_token(cfg.llm, elem_bytes) * ctx)


def floor_ms(step: StepBytes, bandwidth: float) -> float:
    """The roofline time of one step in ms at `bandwidth` bytes/s."""
    return step.total / bandwidth * 1e3


def mbu(step: StepBytes, bandwidth: float, measured_ms: float) -> float:
    """Model bandwidth utilisation in % (roofline time / measured time)."""
    return 100.0 * floor_ms(step, bandwidth) / measured_ms
