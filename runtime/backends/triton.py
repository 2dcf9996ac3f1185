"""The triton backend: eager prefill per group, then one fused decode step for all running rows, in CUDA graphs.

Prefill runs a group's prompt through the eager modules into its rows of the KV pool and samples token 0
with the fused sampler. Every decode step then runs all running rows, image and text, through one
transformer pass (`triton_step.StepGraph`), padded to a row-count bucket; on CUDA each (image bucket, text
bucket) pair is captured into a CUDA graph the second time it runs and replayed ever after, all graphs
sharing one memory pool and captured on the backend's own stream, one capture at a time in the process
(`graph_capture.CAPTURE_LOCK`), so a changing batch never re-captures once its buckets have been seen. Warm-up
builds every bucket the engine can reach ahead of serving (`reachable_buckets`, `build_bucket`); the step
never syncs with the host; the engine reads text tokens back every `sync_every` steps (EOS, streaming).

Without CUDA the same kernels run in the Triton interpreter and the same step runs eagerly (no graphs),
so CI exercises this code; `describe_mode()` says which mode is active.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext

import numpy
import torch

from janus_rt.errors import InputError

try:  # every module below needs triton: say how to get it (the api imports this module only for backend "triton")
    import triton
except ImportError as e:
    raise InputError(f"backend 'triton' needs the triton package ({e}); pip install triton") from None

from janus_rt.backends.kv_rows import KVRows
from janus_rt.backends.triton_ops import Fusions
from janus_rt.backends.triton_step import StepGraph, bucket, reachable_buckets
from janus_rt.backends.triton_transformer import StepOps
from janus_rt.engine.request import Group
from janus_rt.kernels.cfg_sample import cfg_sample
from janus_rt.kernels.dequant_gemm import DequantLinear
from janus_rt.kernels.interpret import INTERPRETER_LOCK, interpreter_problem, interpreter_usable, interpreting
from janus_rt.kernels.rope_cache import inv_freq_of
from janus_rt.kernels.skinny_gemm import SkinnyLinear
from janus_rt.kernels.tuning import configure_triton_cache
from janus_rt.backends.prefill_inputs import prefill_hidden
from janus_rt.model.janus import JanusModel


def prepare_triton(device: torch.device) -> bool:
    """Check that the kernels can run on `device`; True when they run in the Triton interpreter."""
    if device.type == "cuda":
        if interpreting():
            raise InputError("TRITON_INTERPRET=1 is set but the model is on CUDA: unset it to compile the kernels")
        return False
    if device.type != "cpu":
        raise InputError(f"backend 'triton' runs on CUDA (compiled) or CPU (interpreter), not on {device}")
    if not interpreter_usable():
        raise InputError("backend 'triton' on CPU needs the Triton interpreter, switched on before triton is "
                         "imported: run with TRITON_INTERPRET=1 in the environment (janus_rt sets it itself when "
                         "it is imported first on a machine without CUDA)")
    problem = interpreter_problem(triton.__version__, numpy.__version__)
    if problem:
        raise InputError(f"backend 'triton' on CPU: {problem}")
    return True


class TritonBackend:
    """`StepBackend` of backend "triton" over a loaded JanusModel (see the module docstring)."""

    name = "triton"

    def __init__(self, model: JanusModel, sync_every: int = 16, fusions: Fusions = Fusions()):
        if model.gen_embed.weight.device.type == "cuda":
            configure_triton_cache()  # compiled kernels beside the tile choices (JANUS_RT_CACHE_DIR), before any compile

        self.model = model
        self.cfg = model.cfg
        self.device = model.gen_embed.weight.device
        self.dtype = model.gen_embed.weight.dtype
        self.interpreted = prepare_triton(self.device)
        self.sync_every = sync_every  # steps between text-token reads (each read is a device sync)
        self.fusions = fusions  # the decode step's optional fused kernels (triton_ops.Fusions)
        if fusions != Fusions():  # e.g. "triton[norm+silu]": the bench's label of this variant
            self.name = f"triton[{fusions.label}]"
        self.ops = StepOps(SkinnyLinear(), DequantLinear(), fusions)  # the backend's own launchers (autotune caches)
        self.inv_freq = inv_freq_of(self.cfg.llm.head_dim, self.cfg.llm.rope_theta, self.device)
        self.kv: KVRows | None = None
        self.steps: dict[tuple[int, int], StepGraph] = {}  # (image bucket, text bucket) -> its step
        self.serving_builds = 0  # buckets first built inside `decode` (on the serving path): 0 after a full warm-up
        self._graph_pool = None
        self._capture_stream: torch.cuda.Stream | None = None  # this backend's own, on its device (first capture)
        # one thread at a time runs prefill, a step or a bucket build; in the interpreter, one in the whole process
        self._device_lock = INTERPRETER_LOCK if self.interpreted else threading.Lock()
        self._layout: tuple | None = None  # the batch the device buffers describe now

    def describe_mode(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        fused = "" if self.fusions == Fusions() else f", fused kernels: {self.fusions.label}"
        if self.interpreted:
            return (f"triton kernels in the Triton interpreter on {self.device} ({dt}), decode step eager (no CUDA "
                    f"graphs){fused}")
        return (f"triton kernels compiled for {torch.cuda.get_device_name(self.device)} ({dt}), decode step in CUDA "
                f"graphs{fused}")

    def allocate(self, rows: int, max_seq_len: int) -> None:
        self.kv = KVRows(self.cfg.llm, rows, max_seq_len, self.device, self.dtype)
        self.steps.clear()
        self._layout = None

    # -------------------------------------------------------------------------------------------- buckets
    def reachable_buckets(self) -> list[tuple[int, int]]:
        """Every (image rows, text rows) bucket a step can take with the allocated rows, largest first."""
        return reachable_buckets(self.kv.rows)

    def build_bucket(self, key: tuple[int, int]) -> bool:
        """Build the step of bucket `key` now unless it exists (True when built): compile, tune and, on CUDA,
        capture and replay it once on padding rows (`StepGraph.build`). Safe beside a running engine: it holds
        the lock `prefill` and `decode` hold, and touches no row but the scratch row."""
        cuda = self.device.type == "cuda"
        with self._device_lock, torch.inference_mode(), torch.cuda.device(self.device) if cuda else nullcontext():
            if key in self.steps:
                return False
            step = self._new_step(key)
            step.build()
            self.steps[key] = step
            return True

    def _new_step(self, key: tuple[int, int]) -> StepGraph:
        """The step of bucket `key`, over this backend's graph pool and capture stream (both made at first use)."""
        if not self.interpreted and self._graph_pool is None:
            self._graph_pool = torch.cuda.graph_pool_handle()
        return StepGraph(self.model, self.kv, self.inv_freq, self.ops, key[0], key[1], use_graph=not self.interpreted,
                         pool=self._graph_pool, stream=self.capture_stream())

    def capture_stream(self) -> torch.cuda.Stream | None:
        """The stream this backend captures its graphs on: its own, on its device, made once (None without graphs).
        Not `torch.cuda.graph`'s default side stream, which every capture in the process shares; all of this
        backend's graphs share one pool, and graphs sharing a pool must be captured on one stream."""
        if self.interpreted:
            return None
        if self._capture_stream is None:
            self._capture_stream = torch.cuda.Stream(device=self.device)
        return self._capture_stream

    # ------------------------------------------------------------------------------------------ prefill
    def prefill(self, group: Group) -> None:
        with self._device_lock:
            self._prefill(group)

    def _prefill(self, group: Group) -> None:
        model, dev = self.model, self.device
        hidden = prefill_hidden(model, group, self.kv, dev)  # [R, D]
        logits = model.gen_head(hidden) if group.kind == "image" else model.lm_head(hidden)  # [R, V]
        temperature, top_k, top_p, cfg_weight = group.params.kernel_row()

        def per_row(value: float | int, dtype: torch.dtype) -> torch.Tensor:
            return torch.full((group.images,), value, dtype=dtype, device=dev)

        cfg_sample(logits=logits, cfg_weight=per_row(cfg_weight, torch.float32) if group.kind == "image" else None,
                   temperature=per_row(temperature, torch.float32), top_k=per_row(top_k, torch.int32),
                   top_p=per_row(top_p, torch.float32),
                   seed=torch.tensor(group.seeds(), dtype=torch.long, device=dev), step=per_row(0, torch.long),
                   tokens_out=self.kv.tokens, out_rows=torch.tensor(group.out_rows(), dtype=torch.int32, device=dev))
        self._layout = None  # a new group joins: the next step rebuilds its buffers

    # ------------------------------------------------------------------------------------------- decode
    def decode(self, groups: list[Group]) -> None:
        with self._device_lock:
            self._decode(groups)

    def _decode(self, groups: list[Group]) -> None:
        image_groups = [g for g in groups if g.kind == "image"]
        text_groups = [g for g in groups if g.kind == "text"]
        key = (bucket(sum(g.rows for g in image_groups)), bucket(len(text_groups)))
        step = self.steps.get(key)
        if step is None:  # not warmed: its first step runs eagerly (compiles, tunes), its second captures
            step = self._new_step(key)
            self.steps[key] = step
            self.serving_builds += 1
        layout = (key, tuple((g.request.id, g.index, g.first_row) for g in image_groups + text_groups))
        if layout != self._layout:
            step.fill(image_groups, text_groups)
            self._layout = layout
        step.step()

    def read_tokens(self, group: Group, start: int, stop: int) -> torch.Tensor:
        return self.kv.read(group, start, stop)

    def snapshot_tokens(self, group: Group, stop: int) -> torch.Tensor:
        return self.kv.out_tokens(group)[:, :stop].clone()  # enqueued on the device: no sync

    def release(self, group: Group) -> None:
        self._layout = None  # the batch changes at the next step

    def decode_pixels(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():  # the caller chunks (`Janus._decode`): VQ activations grow per image
            return self.model.vq(tokens)
