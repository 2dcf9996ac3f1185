"""TensorRT execution of the exported graphs: `run(graph, inputs) -> outputs` on torch CUDA tensors.

Inputs and outputs are torch tensors on the GPU bound by address (`set_tensor_address`), run on torch's
current CUDA stream with `execute_async_v3`: the KV cache, hidden states and logits never visit the host
between steps (sampling reads the logits on the GPU; only finished token ids go to the host for chat).
The transformer engine has two profiles (prefill, decode), each with its own execution context.

Written against the TensorRT 10 Python API. No machine here has TensorRT, so this module is exercised only
up to the clear error raised when `tensorrt` is not importable.
"""

from __future__ import annotations

from pathlib import Path

import torch

from janus_rt.errors import InputError
from janus_rt.export.specs import DTYPES
from janus_rt.export.trt_builder import build_engines, import_tensorrt


class TrtEngine:
    def __init__(self, export_dir: Path, manifest: dict, device: str | torch.device | None, max_batch: int = 8,
                 context: int | None = None, max_images: int = 4, progress: bool = False):
        trt = import_tensorrt()
        self.device = torch.device(device or "cuda")
        if self.device.type != "cuda":
            raise InputError(f"backend='tensorrt' runs on a CUDA device, got device={str(device)!r}")
        self.dtype = DTYPES[manifest["dtype"]]
        self.graphs = manifest["graphs"]
        built = build_engines(export_dir, manifest, max_batch, context, max_images, progress=progress)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engines, self._contexts = {}, {}
        for graph, (path, profiles) in built.items():
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise InputError(f"{path}: TensorRT could not load this cached engine; delete it to rebuild")
            self._engines[graph] = engine
            contexts = []
            for index in range(len(profiles)):
                ctx = engine.create_execution_context()
                ctx.set_optimization_profile_async(index, torch.cuda.current_stream(self.device).cuda_stream)
                contexts.append(ctx)
            self._contexts[graph] = contexts
        self._dummy = torch.zeros(1, device=self.device)  # an address for zero-size tensors (an empty KV cache)

    def _context(self, graph: str, inputs: dict[str, torch.Tensor]):
        contexts = self._contexts[graph]
        if graph == "transformer":  # profile 0: prefill (empty cache), profile 1: decode
            return contexts[0 if inputs["past_key_values.0.key"].shape[2] == 0 else 1]
        return contexts[0]

    def run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ctx = self._context(graph, inputs)
        keep = {k: v.contiguous() for k, v in inputs.items()}
        for name, t in keep.items():
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr() if t.numel() else self._dummy.data_ptr())
        outputs = {}
        for o in self.graphs[graph]["outputs"]:
            shape = tuple(ctx.get_tensor_shape(o["name"]))
            outputs[o["name"]] = out = torch.empty(shape, device=self.device, dtype=DTYPES[o["dtype"]])
            ctx.set_tensor_address(o["name"], out.data_ptr())
        if not ctx.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise InputError(f"TensorRT failed to run graph {graph} with shapes "
                             f"{ {k: tuple(v.shape) for k, v in keep.items()} }; they may lie outside its profiles")
        return outputs

    def describe(self) -> str:
        return f"TensorRT on {torch.cuda.get_device_name(self.device)}"
