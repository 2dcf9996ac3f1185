"""The triton backend: eager prefill, then a decode step captured once in a CUDA graph and replayed.

Per call: the prompt is prefilled eagerly (SDPA) into a static cache, the first token is sampled by the
fused kernel, then the decode step (`fast_decode.image_step` / `text_step`) runs for every further token.
On CUDA the step is captured into a graph the first time a (path, rows, cache length) shape is seen and
replayed after that, also across calls: its buffers are static and are refilled per call. The image loop
never syncs with the host until the VQ decode; the text loop looks for EOS every `eos_check_every` tokens.

Without CUDA the same kernels run in the Triton interpreter and the same step runs eagerly (no graphs),
so CI exercises this code; `describe_mode()` says which mode is active.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from .errors import InputError
from .fast_decode import DecodeBuffers, image_step, sample_into, skinny_linear, text_step
from .generation import cfg_prompt_tokens, decode_tokens
from .llm import KVCache
from .model import JanusModel
from .timing import PhaseTimer
from .understanding import TextRequest, prefill_embeddings, record_tokens

CACHE_BUCKET = 128  # cache lengths are rounded up to this, so nearby prompt lengths share a graph


def prepare_triton(device: torch.device) -> bool:
    """Check that the kernels can run on `device`; True when they run in the Triton interpreter."""
    if device.type == "cuda":
        from janus_rt.kernels.interpret import interpreting

        if interpreting():
            raise InputError("TRITON_INTERPRET=1 is set but the model is on CUDA: unset it to compile the kernels")
        return False
    if device.type != "cpu":
        raise InputError(f"backend 'triton' runs on CUDA (compiled) or CPU (interpreter), not on {device}")
    from janus_rt.kernels.interpret import interpreter_usable

    if not interpreter_usable():
        raise InputError("backend 'triton' on CPU needs the Triton interpreter, switched on before triton is "
                         "imported: run with TRITON_INTERPRET=1 in the environment (janus_rt sets it itself when "
                         "it is imported first on a machine without CUDA)")
    try:
        import janus_rt.kernels.cfg_sample  # noqa: F401
        import janus_rt.kernels.decode_attention  # noqa: F401
    except ImportError as e:
        raise InputError(f"backend 'triton' needs the triton package ({e}); pip install triton") from None
    return True


@dataclass
class DecodeLoop:
    """A step body over its static buffers, captured into a CUDA graph once it has run eagerly once."""

    body: Callable[[], None]
    bufs: DecodeBuffers
    use_graph: bool
    graph: torch.cuda.CUDAGraph | None = None
    warm: bool = False

    def step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif not self.use_graph or not self.warm:
            self.body()  # eager: interpreter mode, or the first (warm-up) step that compiles the kernels
            self.warm = True
        else:
            self.capture()
            self.graph.replay()

    def capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            self.body()
        self.graph = graph


def seed_value(seed: int | None) -> int:
    return int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed


class TritonRunner:
    """Runner of backend "triton" over a loaded JanusModel (see the module docstring)."""

    name = "triton"

    def __init__(self, model: JanusModel, eos_check_every: int = 16):
        self.model = model
        self.cfg = model.cfg
        self.device = model.gen_embed.weight.device
        self.dtype = model.gen_embed.weight.dtype
        self.interpreted = prepare_triton(self.device)
        self.eos_check_every = eos_check_every
        self.loops: dict[tuple[str, int, int], DecodeLoop] = {}
        from janus_rt.kernels.skinny_gemm import SkinnyLinear

        self.linear = skinny_linear(SkinnyLinear())  # the runner's own GEMM launcher (its autotune cache)

    def describe_mode(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        if self.interpreted:
            return f"triton kernels in the Triton interpreter on {self.device} ({dt}), decode step eager (no CUDA graphs)"
        return f"triton kernels compiled for {torch.cuda.get_device_name(self.device)} ({dt}), decode step in CUDA graphs"

    # ----------------------------------------------------------------------------------------- buffers
    def _loop(self, kind: str, rows: int, out_rows: int, cache_len: int, row_dim: int) -> DecodeLoop:
        from janus_rt.kernels.rope_cache import inv_freq_of

        key = (kind, rows, cache_len)
        loop = self.loops.get(key)
        if loop is None:
            dev, llm = self.device, self.cfg.llm
            bufs = DecodeBuffers(
                cache=KVCache.allocate(llm, rows, cache_len, dev, self.dtype),
                rows=torch.zeros(rows, row_dim, device=dev, dtype=self.dtype),
                positions=torch.zeros(rows, device=dev, dtype=torch.long),
                slot=torch.zeros(1, device=dev, dtype=torch.long),
                key_start=torch.zeros(rows, device=dev, dtype=torch.int32) if kind == "text" else None,
                step=torch.zeros(1, device=dev, dtype=torch.long),
                tokens=torch.zeros(out_rows, cache_len, device=dev, dtype=torch.long),
                cfg_weight=torch.zeros(out_rows, device=dev, dtype=torch.float32) if kind == "image" else None,
                temperature=torch.zeros(out_rows, device=dev, dtype=torch.float32),
                top_k=torch.zeros(out_rows, device=dev, dtype=torch.int32),
                top_p=torch.ones(out_rows, device=dev, dtype=torch.float32),
                seed=torch.zeros(1, device=dev, dtype=torch.long),
                inv_freq=inv_freq_of(llm.head_dim, llm.rope_theta, dev),
            )
            step = image_step if kind == "image" else text_step
            loop = DecodeLoop(lambda: step(self.model, bufs, self.linear), bufs, use_graph=not self.interpreted)
            self.loops[key] = loop
        return loop

    @staticmethod
    def _set_sampling(bufs: DecodeBuffers, temperature: float, top_k: int | None, top_p: float | None,
                      seed: int | None) -> None:
        bufs.temperature.fill_(temperature)
        bufs.top_k.fill_(top_k or 0)
        bufs.top_p.fill_(1.0 if top_p is None else top_p)
        bufs.seed.fill_(seed_value(seed))
        bufs.step.zero_()

    # ---------------------------------------------------------------------------------------- image path
    @torch.inference_mode()
    def generate_image_tokens(self, prompt_ids, pad_id, num_images, cfg_weight, temperature, seed, top_k, top_p,
                              progress, timer: PhaseTimer | None = None) -> torch.Tensor:
        model, steps = self.model, self.cfg.image_tokens_per_image
        rows, prompt_len = 2 * num_images, len(prompt_ids)
        cache_len = -(-(prompt_len + steps - 1) // CACHE_BUCKET) * CACHE_BUCKET
        loop = self._loop("image", rows, num_images, cache_len, self.cfg.gen_embed_dim)
        bufs = loop.bufs
        self._set_sampling(bufs, temperature, top_k, top_p, seed)
        bufs.cfg_weight.fill_(cfg_weight)

        tokens = cfg_prompt_tokens(prompt_ids, pad_id, num_images, self.device)  # [2P, L]
        positions = torch.arange(prompt_len, device=self.device).expand(rows, prompt_len)  # [2P, L]
        hidden = model.llm(model.llm.embed_tokens(tokens), positions, bufs.cache, 0)[:, -1]  # [2P, D]
        sample_into(model.gen_head(hidden), bufs, model.gen_embed.weight)  # token 0 and its gen_embed rows
        bufs.step.fill_(1)
        bufs.slot.fill_(prompt_len)
        bufs.positions.fill_(prompt_len)
        if timer is not None:
            timer.mark("prefill")
        for _ in tqdm(range(1, steps), desc="image tokens", unit="tok", disable=not progress, leave=False):
            loop.step()
        if timer is not None:
            timer.mark("decode", steps - 1)
        return bufs.tokens[:, :steps].clone()

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return decode_tokens(self.model, tokens)

    # ---------------------------------------------------------------------------------------- text path
    @torch.inference_mode()
    def generate_text(self, requests: list[TextRequest], pad_id, placeholder, eos_id, max_new_tokens, temperature,
                      seed, top_k, top_p, timer: PhaseTimer | None = None) -> list[tuple[list[int], bool]]:
        model = self.model
        embeds, positions, key_start = prefill_embeddings(model, requests, pad_id, placeholder)
        batch, width = positions.shape
        cache_len = -(-(width + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
        loop = self._loop("text", batch, batch, cache_len, self.cfg.llm.hidden_size)
        bufs = loop.bufs
        self._set_sampling(bufs, temperature, top_k, top_p, seed)
        bufs.key_start.copy_(key_start)
        hidden = model.llm(embeds, positions, bufs.cache, 0, key_start)[:, -1]  # [B, D]
        sample_into(model.lm_head(hidden), bufs, model.llm.embed_tokens.weight)  # token 0 and its embedding row
        bufs.step.fill_(1)
        bufs.slot.fill_(width)
        bufs.positions.copy_(positions[:, -1] + 1)
        if timer is not None:
            timer.mark("prefill")
        done = 1
        while done < max_new_tokens:
            chunk = min(self.eos_check_every, max_new_tokens - done)
            if eos_id >= 0 and self._all_finished(bufs.tokens[:, :done], eos_id):
                break
            for _ in range(chunk):
                loop.step()
            done += chunk
            if timer is not None:
                timer.mark("decode", chunk)
        return self._answers(bufs.tokens[:, :done].tolist(), eos_id)

    @staticmethod
    def _all_finished(tokens: torch.Tensor, eos_id: int) -> bool:
        return bool((tokens == eos_id).any(dim=1).all())

    @staticmethod
    def _answers(rows: list[list[int]], eos_id: int) -> list[tuple[list[int], bool]]:
        outputs: list[list[int]] = [[] for _ in rows]
        finished = [False] * len(rows)
        for column in zip(*rows):  # the tokens of one step, one per row
            record_tokens(outputs, finished, list(column), eos_id)
        return list(zip(outputs, finished))
