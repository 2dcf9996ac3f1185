"""`janus-rt export --check`: run every exported graph in ONNX Runtime on fresh random inputs and compare
with the runtime's torch modules run in fp32.

Random axis sizes per run (batch 1-3, new tokens 1-5, cached tokens 0-6 so prefill is covered, 1-2 images),
random left padding in the transformer's attention mask, ids over the whole vocabulary. A graph passes when
max |onnx - torch_fp32| <= atol + rtol * max |torch_fp32| over all of its outputs, with (atol, rtol):
float32 (1e-4, 1e-4): same math, different kernels; float16 (5e-3, 5e-3) and bfloat16 (2e-2, 2e-2): a few
units of the format's rounding over a handful of layers (norms / softmax statistics are fp32 in the graphs).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from janus_rt.errors import InputError
from janus_rt.model.llm import KVCache
from janus_rt.model.janus import JanusModel
from janus_rt.export.graphs import past_names, present_names
from janus_rt.export.manifest import read_manifest, verify_files
from janus_rt.export.ort_engine import OrtEngine, resolve_providers
from janus_rt.export.source import ExportSource
from janus_rt.export.specs import graph_specs, random_inputs

TOLERANCES = {"float32": (1e-4, 1e-4), "float16": (5e-3, 5e-3), "bfloat16": (2e-2, 2e-2)}


@dataclass(frozen=True)
class CheckRow:
    graph: str
    sizes: str  # the random axis sizes used, e.g. "batch=2 sequence=1 past_sequence=5"
    max_abs_err: float
    max_abs_ref: float
    tolerance: float
    ok: bool


def reference_outputs(model: JanusModel, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the runtime's (fp32) torch modules give for a graph's inputs, under the graph's output names."""
    x = {k: v.float() if v.is_floating_point() else v for k, v in inputs.items()}
    if graph == "vision":
        return {"image_embeds": model.image_embeddings(x["pixel_values"])}
    if graph == "text_embed":
        return {"inputs_embeds": model.llm.embed_tokens(x["input_ids"])}
    if graph == "lm_head":
        return {"logits": model.lm_head(x["hidden_states"])}
    if graph == "gen_head":
        return {"logits": model.gen_head(x["hidden_states"])}
    if graph == "gen_embed":
        return {"inputs_embeds": model.gen_token_embeddings(x["image_token_ids"])}
    if graph == "vq_decoder":
        return {"pixel_values": model.vq(x["image_token_ids"])}
    if graph == "transformer":
        cfg = model.cfg.llm
        names = past_names(cfg.num_layers)
        b, t, _ = x["inputs_embeds"].shape
        past = x[names[0]].shape[2]
        cache = KVCache.allocate(cfg, b, past + t, x["inputs_embeds"].device, torch.float32)
        for i in range(cfg.num_layers):
            cache.keys[i, :, :, :past], cache.values[i, :, :, :past] = x[names[2 * i]], x[names[2 * i + 1]]
        key_start = (x["attention_mask"] == 0).sum(dim=1)  # [B]: left padding length
        hidden = model.llm(x["inputs_embeds"], x["positions"], cache, past, key_start)
        out = {"hidden_states": hidden}
        for i, (k, v) in enumerate(zip(present_names(cfg.num_layers)[0::2], present_names(cfg.num_layers)[1::2])):
            out[k], out[v] = cache.keys[i], cache.values[i]
        return out
    raise InputError(f"no torch reference for graph {graph!r}")


def fp32_model(janus: ExportSource) -> JanusModel:
    if janus.model is None:
        raise InputError("--check compares with the torch modules: pass a model loaded with backend='torch'")
    return janus.model if janus.dtype == torch.float32 else copy.deepcopy(janus.model).float()


@torch.no_grad()
def check_export(export_dir: str | Path, janus: ExportSource, providers: Sequence[str] | None = None,
                 seed: int | None = None) -> list[CheckRow]:
    """One row per graph of the export: ONNX Runtime against the torch fp32 modules on random inputs."""
    export_dir = Path(export_dir)
    manifest = read_manifest(export_dir)
    verify_files(export_dir, manifest, full_hash=True)
    dtype = manifest["dtype"]
    atol, rtol = TOLERANCES[dtype]
    engine = OrtEngine(export_dir, manifest, resolve_providers(providers, "cpu"))
    model = fp32_model(janus)
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    g = torch.Generator().manual_seed(seed)
    rows = []
    for name, spec in graph_specs(janus.config, dtype).items():
        sizes = {"batch": int(torch.randint(1, 4, (), generator=g)), "sequence": int(torch.randint(1, 6, (), generator=g)),
                 "past_sequence": int(torch.randint(0, 7, (), generator=g)), "images": int(torch.randint(1, 3, (), generator=g))}
        sizes["total_sequence"] = sizes["past_sequence"] + sizes["sequence"]
        inputs = random_inputs(spec, janus.config, sizes, g)
        got = engine.run(name, {k: v.to(engine.device) for k, v in inputs.items()})
        ref = reference_outputs(model, name, inputs)
        err = max(float((got[k].float().cpu() - ref[k]).abs().max()) for k in ref)
        scale = max(float(r.abs().max()) for r in ref.values())
        tol = atol + rtol * scale
        used = sorted({a for t in spec.inputs for a in t.shape if isinstance(a, str)})
        rows.append(CheckRow(name, " ".join(f"{a}={sizes[a]}" for a in used), err, scale, tol, err <= tol))
    return rows


def format_report(rows: list[CheckRow]) -> str:
    lines = [f"{'graph':<12} {'axes':<55} {'max|err|':>10} {'max|ref|':>10} {'tolerance':>10}  result"]
    for r in rows:
        lines.append(f"{r.graph:<12} {r.sizes:<55} {r.max_abs_err:>10.3g} {r.max_abs_ref:>10.3g} {r.tolerance:>10.3g}  "
                     f"{'ok' if r.ok else 'FAIL'}")
    failed = [r.graph for r in rows if not r.ok]
    lines.append(f"{len(rows) - len(failed)}/{len(rows)} graphs within tolerance" +
                 (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return "\n".join(lines)
