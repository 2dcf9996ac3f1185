"""ONNX Runtime sessions over an export directory: `run(graph, inputs) -> outputs`, torch tensors in and out.

On the CPU the tensors are shared with numpy without copies. With the CUDA or TensorRT execution provider
(onnxruntime-gpu), inputs and outputs are torch CUDA tensors bound by device pointer through an IOBinding,
so the KV cache stays on the GPU between steps; output shapes come from the manifest's axis names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from janus_rt.errors import CheckpointError, InputError
from janus_rt.export.manifest import MANIFEST, REEXPORT, check_graph_io
from janus_rt.export.onnx_export import META_GRAPH, META_SOURCE
from janus_rt.export.specs import DTYPES

log = logging.getLogger(__name__)
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(bfloat16)": "bfloat16",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool"}
NUMPY_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise InputError("backend 'onnxruntime' needs the onnxruntime package: pip install 'janus-rt[export]' "
                         "(CPU) or onnxruntime-gpu (CUDA / TensorRT providers)") from None
    return onnxruntime


def resolve_providers(providers: Sequence[str] | None, device: str | torch.device | None) -> list[str]:
    """The providers to use: as given, less those that cannot run here (not installed, or GPU ones without a CUDA
    device) when others in the list can (a warning names what was dropped); none given: CUDA when usable, then CPU."""
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if providers is None:
        want_gpu = device is None or torch.device(device).type == "cuda"
        gpu = [p for p in ("CUDAExecutionProvider",) if want_gpu and p in available and torch.cuda.is_available()]
        return gpu + ["CPUExecutionProvider"]
    if isinstance(providers, str) or not all(isinstance(p, str) for p in providers) or not providers:
        raise InputError(f"providers must be a non-empty list of provider names, got {providers!r}")
    missing = [p for p in providers if p not in available]
    no_gpu = [p for p in providers if p in GPU_PROVIDERS and p in available and not torch.cuda.is_available()]
    usable = [p for p in providers if p not in missing and p not in no_gpu]
    if usable and len(usable) < len(providers):  # e.g. CUDA,CPU on a CPU-only onnxruntime: the CPU one it lists
        reasons = ([f"{', '.join(missing)} not installed"] if missing else []) + \
                  ([f"{', '.join(no_gpu)} without a CUDA device"] if no_gpu else [])
        log.warning("ONNX Runtime providers: using %s (%s here)", ", ".join(usable), "; ".join(reasons))
        return usable
    if missing:
        raise InputError(f"ONNX Runtime provider(s) {', '.join(missing)} are not installed here; available: "
                         f"{', '.join(available)} (CUDA / TensorRT providers need onnxruntime-gpu)")
    return list(providers)  # all usable, or only GPU ones without a GPU (OrtEngine says so)


class OrtEngine:
    """One InferenceSession per graph of the manifest, checked against the manifest's inputs / outputs."""

    def __init__(self, export_dir: Path, manifest: dict, providers: list[str]):
        ort = import_onnxruntime()
        self.providers = providers
        gpu = any(p in GPU_PROVIDERS for p in providers)
        if gpu and not torch.cuda.is_available():
            raise InputError(f"providers {providers} run on a GPU, but torch sees no CUDA device here; "
                             "pass providers=['CPUExecutionProvider']")
        self.device = torch.device("cuda" if gpu else "cpu")
        self.dtype = DTYPES[manifest["dtype"]]
        if self.dtype not in NUMPY_TYPES:
            raise InputError(f"{export_dir}: a {manifest['dtype']} export cannot run in ONNX Runtime here (no numpy "
                             f"type for it); run it with backend='tensorrt' or export float32 / float16")
        self.graphs = manifest["graphs"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.sessions = {}
        for name, entry in self.graphs.items():
            path = export_dir / entry["file"]
            try:
                session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            except Exception as e:  # ORT raises its own Fail / InvalidGraph / NoSuchFile types
                raise CheckpointError(f"{path}: ONNX Runtime cannot load this graph ({type(e).__name__}: "
                                      f"{str(e).strip()[:300]}); {REEXPORT}") from None
            check_graph_io(path, entry["inputs"], entry["outputs"],
                           [(i.name, ORT_TYPES.get(i.type, i.type)) for i in session.get_inputs()],
                           [(o.name, ORT_TYPES.get(o.type, o.type)) for o in session.get_outputs()])
            meta = session.get_modelmeta().custom_metadata_map
            stamp = (meta.get(META_GRAPH), meta.get(META_SOURCE))
            if stamp != (name, manifest["source"]["sha256"]):
                raise CheckpointError(
                    f"{path}: this graph is {stamp[0] or 'not a janus-rt graph'} exported from checkpoint "
                    f"{(stamp[1] or '?')[:12]}, but {export_dir / MANIFEST} describes graph {name} of checkpoint "
                    f"{manifest['source']['sha256'][:12]}: the folder mixes files of different exports; {REEXPORT}")
            self.sessions[name] = session

    def _output_shapes(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        entry, sizes = self.graphs[graph], {}
        for spec in entry["inputs"]:
            for axis, size in zip(spec["shape"], inputs[spec["name"]].shape):
                if isinstance(axis, str):
                    sizes[axis] = size
        return {o["name"]: tuple(s if isinstance(s, int) else sizes[s] for s in o["shape"]) for o in entry["outputs"]}

    def run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        session = self.sessions[graph]
        names = [o["name"] for o in self.graphs[graph]["outputs"]]
        if self.device.type == "cpu":
            feeds = {k: v.detach().contiguous().numpy() for k, v in inputs.items()}
            return {k: torch.from_numpy(v) for k, v in zip(names, session.run(names, feeds))}
        binding = session.io_binding()
        keep = {k: v.contiguous() for k, v in inputs.items()}
        for k, v in keep.items():
            binding.bind_input(k, "cuda", v.device.index or 0, NUMPY_TYPES[v.dtype], tuple(v.shape), v.data_ptr())
        outputs = {k: torch.empty(shape, device=self.device, dtype=self.dtype)
                   for k, shape in self._output_shapes(graph, keep).items()}
        for k, v in outputs.items():
            binding.bind_output(k, "cuda", v.device.index or 0, NUMPY_TYPES[v.dtype], tuple(v.shape), v.data_ptr())
        binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return outputs

    def describe(self) -> str:
        return f"ONNX Runtime ({', '.join(self.providers)}) on {self.device}"
