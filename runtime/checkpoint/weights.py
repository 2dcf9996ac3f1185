"""Strict weight loading: one mapping table from checkpoint keys (official or HF layout) to janus-rt parameters.

Every checkpoint key is either mapped or knowingly ignored (the unused SigLIP `attn_pool`, the VQ encoder and
`quant_conv`, `codebook_used`, rotary `inv_freq` buffers); every janus-rt parameter must be filled exactly once;
every shape is checked. Errors name the file, the key and the expected / actual shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from janus_rt.checkpoint.files import WeightFiles, iter_tensors
from janus_rt.checkpoint.official_keys import official_key_shapes
from janus_rt.model.config import JanusConfig
from janus_rt.errors import CheckpointError
from janus_rt.model.janus import JanusModel, empty_parameter

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Target:
    """Where one checkpoint tensor goes: a parameter, optionally a row range of it, and a transform."""

    param: str
    rows: tuple[int, int] | None = None
    transform: Transform | None = None


IGNORE: list[Target] = []  # a mapping result meaning "known key, deliberately unused"


def _unsqueeze0(t: torch.Tensor) -> torch.Tensor:
    return t.unsqueeze(0)


def _llm_layer_rule(cfg: JanusConfig) -> Callable[[str], list[Target] | None]:
    """Rules for keys below a Llama model (`embed_tokens`, `layers.N.*`, `norm`), shared by both layouts."""
    c = cfg.llm
    q, kv, inner = c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim, c.intermediate_size
    qkv_rows = {"q": (0, q), "k": (q, q + kv), "v": (q + kv, q + 2 * kv)}
    plain = {
        "self_attn.o_proj.weight": "attn.o_proj.weight",
        "mlp.down_proj.weight": "mlp.down_proj.weight",
        "input_layernorm.weight": "input_norm.weight",
        "post_attention_layernorm.weight": "post_attn_norm.weight",
    }

    def rule(key: str) -> list[Target] | None:
        if key in ("embed_tokens.weight", "norm.weight"):
            return [Target(f"llm.{key}")]
        if key.endswith("rotary_emb.inv_freq"):
            return IGNORE
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", key)
        if not m:
            return None
        i, rest = int(m.group(1)), m.group(2)
        if i >= c.num_layers:
            return None
        pre = f"llm.layers.{i}."
        if rest in plain:
            return [Target(pre + plain[rest])]
        m = re.fullmatch(r"self_attn\.([qkv])_proj\.weight", rest)
        if m:
            return [Target(pre + "attn.qkv_proj.weight", qkv_rows[m.group(1)])]
        m = re.fullmatch(r"mlp\.(gate|up)_proj\.weight", rest)
        if m:
            return [Target(pre + "mlp.gate_up_proj.weight", (0, inner) if m.group(1) == "gate" else (inner, 2 * inner))]
        return None

    return rule


def _mlp_rule(ours: str, official: bool) -> Callable[[str], list[Target] | None]:
    """MlpProjector keys: official `layers.{0,2,4..}` (nn.Sequential with GELUs) or HF `fc1` / `hidden_layers.k`."""

    def rule(key: str) -> list[Target] | None:
        if official:
            m = re.fullmatch(r"layers\.(\d+)\.(weight|bias)", key)
            if m and int(m.group(1)) % 2 == 0:
                return [Target(f"{ours}.layers.{int(m.group(1)) // 2}.{m.group(2)}")]
            m = re.fullmatch(r"layers\.(weight|bias)", key)  # projector_type "linear"
            return [Target(f"{ours}.layers.0.{m.group(1)}")] if m else None
        m = re.fullmatch(r"fc1\.(weight|bias)", key)
        if m:
            return [Target(f"{ours}.layers.0.{m.group(1)}")]
        m = re.fullmatch(r"hidden_layers\.(\d+)\.(weight|bias)", key)
        return [Target(f"{ours}.layers.{int(m.group(1)) + 1}.{m.group(2)}")] if m else None

    return rule


def _vq_decoder_rule(official: bool) -> Callable[[str], list[Target] | None]:
    """VQ decoder keys below `decoder.`; HF renames conv_blocks->up, res->block, mid.0/1/2->block_1/attn_1/block_2."""
    hf_mid = {"block_1": "0", "attn_1": "1", "block_2": "2"}

    def rule(key: str) -> list[Target] | None:
        if not official:
            key = re.sub(r"^up\.(\d+)\.block\.", r"conv_blocks.\1.res.", key)
            key = re.sub(r"^up\.(\d+)\.", r"conv_blocks.\1.", key)
            m = re.match(r"^mid\.(block_1|attn_1|block_2)\.", key)
            if m:
                key = f"mid.{hf_mid[m.group(1)]}." + key[m.end():]
        return [Target(f"vq.{key}")]

    return rule


def _vision_rule(cfg: JanusConfig, official: bool) -> Callable[[str], list[Target] | None]:
    w = cfg.vision.width
    hf_block = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.projection_layer": "attn.proj",
                "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}

    def rule(key: str) -> list[Target] | None:
        if official:
            if key.startswith("attn_pool."):
                return IGNORE
            if key.startswith("patch_embed.proj."):
                return [Target("vision.patch_embed." + key.removeprefix("patch_embed.proj."))]
            m = re.fullmatch(r"blocks\.(\d+)\..+", key)
            if m and int(m.group(1)) >= cfg.vision.layers:
                return IGNORE  # blocks past select_layer are never run by the reference either
            return [Target(f"vision.{key}")]
        if key.startswith("embeddings.patch_embedding."):
            return [Target("vision.patch_embed." + key.removeprefix("embeddings.patch_embedding."))]
        if key == "embeddings.position_embedding.weight":
            return [Target("vision.pos_embed", transform=_unsqueeze0)]
        if key.startswith("post_layernorm."):
            return [Target("vision.norm." + key.removeprefix("post_layernorm."))]
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if not m:
            return None
        i, mod, kind = m.groups()
        pm = re.fullmatch(r"self_attn\.([qkv])_proj", mod)
        if pm:
            start = "qkv".index(pm.group(1)) * w
            return [Target(f"vision.blocks.{i}.attn.qkv.{kind}", (start, start + w))]
        return [Target(f"vision.blocks.{i}.{hf_block[mod]}.{kind}")] if mod in hf_block else None

    return rule


def key_mapper(cfg: JanusConfig) -> Callable[[str], list[Target] | None]:
    """Return `map(key) -> targets` for the checkpoint's layout: a list of Targets, IGNORE, or None (unknown)."""
    official = cfg.layout == "official"
    llm_rule = _llm_layer_rule(cfg)
    if official:
        prefixes: list[tuple[str, Callable[[str], list[Target] | None]]] = [
            ("language_model.model.", llm_rule),
            ("vision_model.vision_tower.", _vision_rule(cfg, True)),
            ("aligner.", _mlp_rule("aligner", True)),
            ("gen_aligner.", _mlp_rule("gen_aligner", True)),
            ("gen_vision_model.decoder.", _vq_decoder_rule(True)),
        ]
        exact = {
            "language_model.lm_head.weight": [Target("lm_head.weight")],
            "gen_embed.weight": [Target("gen_embed.weight")],
            "gen_vision_model.quantize.embedding.weight": [Target("vq.codebook")],
            "gen_vision_model.quantize.codebook_used": IGNORE,
        }
        renames = {
            "gen_head.output_mlp_projector.": "gen_head.proj.",
            "gen_head.vision_head.": "gen_head.out.",
            "gen_vision_model.post_quant_conv.": "vq.post_quant_conv.",
        }
        ignored = ("gen_vision_model.encoder.", "gen_vision_model.quant_conv.")
    else:
        prefixes = [
            ("model.language_model.", llm_rule),
            ("model.vision_model.", _vision_rule(cfg, False)),
            ("model.aligner.", _mlp_rule("aligner", False)),
            ("model.generation_aligner.", _mlp_rule("gen_aligner", False)),
            ("model.vqmodel.decoder.", _vq_decoder_rule(False)),
        ]
        exact = {
            "lm_head.weight": [Target("lm_head.weight")],
            "model.generation_embeddings.weight": [Target("gen_embed.weight")],
            "model.vqmodel.quantize.embedding.weight": [Target("vq.codebook")],
        }
        renames = {
            "model.generation_head.proj_out.": "gen_head.proj.",
            "model.generation_head.vision_head.": "gen_head.out.",
            "model.vqmodel.post_quant_conv.": "vq.post_quant_conv.",
        }
        ignored = ("model.vqmodel.encoder.", "model.vqmodel.quant_conv.")

    def map_key(key: str) -> list[Target] | None:
        if key in exact:
            return exact[key]
        if key.startswith(ignored):
            return IGNORE
        for old, new in renames.items():
            if key.startswith(old):
                return [Target(new + key.removeprefix(old))]
        for prefix, rule in prefixes:
            if key.startswith(prefix):
                return rule(key.removeprefix(prefix))
        return None

    return map_key


class _Coverage:
    """Tracks which rows of each parameter have been filled, to catch duplicates and gaps."""

    def __init__(self, params: dict[str, torch.Tensor]):
        self.params = params
        self.filled: dict[str, list[tuple[int, int, str]]] = {name: [] for name in params}

    def add(self, name: str, rows: tuple[int, int], key: str, path: Path) -> None:
        for start, stop, other in self.filled[name]:
            if start < rows[1] and rows[0] < stop:
                raise CheckpointError(f"{path}: key '{key}' fills parameter {name} again (already filled from '{other}')")
        self.filled[name].append((rows[0], rows[1], key))

    def complete(self, name: str) -> bool:
        param = self.params[name]
        total = param.shape[0] if param.dim() else 1
        return sum(stop - start for start, stop, _ in self.filled[name]) == total

    def missing(self) -> list[str]:
        return [name for name in self.filled if not self.complete(name)]


def load_weights(model: JanusModel, weights: WeightFiles, progress: bool = False,
                 on_complete: Callable[[str], None] | None = None) -> None:
    """Fill every parameter of `model` (already on its device and dtype) from the checkpoint files.

    A parameter still on the meta device is given storage (the model's dtype and device) when its first key
    arrives. `on_complete(name)` is called as soon as a parameter is completely filled (quantization at load
    time replaces its layer then, so only a few float layers exist at any moment).
    """
    cfg = model.cfg
    params = dict(model.named_parameters())
    device, dtype = model.gen_embed.weight.device, model.gen_embed.weight.dtype
    map_key = key_mapper(cfg)
    coverage = _Coverage(params)
    tie = cfg.llm.tie_word_embeddings
    total_bytes = sum(f.stat().st_size for f in weights.files)
    # a context manager: on a bad file the bar is closed (its line finished) before the error is printed
    with tqdm(total=total_bytes, desc="loading weights", unit="B", unit_scale=True, disable=not progress) as bar, \
            torch.no_grad():
        for path, key, tensor in iter_tensors(weights):
            bar.update(tensor.numel() * tensor.element_size())
            targets = map_key(key)
            if targets is None:
                raise CheckpointError(
                    f"{path}: unexpected key '{key}' (shape {list(tensor.shape)}); it is not part of "
                    f"{'an official' if cfg.layout == 'official' else 'a Hugging Face'}-layout Janus checkpoint with "
                    "this config.json. Check that config.json matches the weights"
                )
            for target in targets:
                if target.param not in params:
                    raise CheckpointError(f"{path}: key '{key}' maps to {target.param}, which this config does not build; "
                                          "config.json and the weights disagree")
                param = params[target.param]
                if param.is_meta:  # storage on first use (see docstring)
                    param = _materialize(model, target.param, device, dtype)
                    params[target.param] = param
                dest = param if target.rows is None else param[target.rows[0]:target.rows[1]]
                src = target.transform(tensor) if target.transform else tensor
                if tuple(src.shape) != tuple(dest.shape):
                    raise CheckpointError(
                        f"{path}: key '{key}' has shape {list(tensor.shape)}, expected {list(dest.shape)} "
                        f"(for {target.param}{'' if target.rows is None else f' rows {target.rows[0]}:{target.rows[1]}'}); "
                        "config.json and the weights disagree"
                    )
                if not (src.is_floating_point()):
                    raise CheckpointError(f"{path}: key '{key}' has dtype {src.dtype}, expected a floating-point tensor")
                dest.copy_(src)
                rows = target.rows or (0, param.shape[0] if param.dim() else 1)
                coverage.add(target.param, rows, key, path)
                if on_complete is not None and coverage.complete(target.param):
                    del param, dest
                    on_complete(target.param)
                    # the float copy is gone; only its shape is kept (coverage shares this dict)
                    params[target.param] = torch.empty(params[target.param].shape, device="meta")
            del tensor
        bar.n = total_bytes  # headers and padding are not tensor bytes
    if tie and not coverage.filled["lm_head.weight"]:  # tied checkpoints store only embed_tokens
        model.lm_head.weight = model.llm.embed_tokens.weight
        coverage.filled["lm_head.weight"] = coverage.filled["llm.embed_tokens.weight"]
        if on_complete is not None:
            on_complete("lm_head.weight")
    missing = coverage.missing()
    if missing:
        where = str(weights.index) if weights.index is not None else ", ".join(str(p) for p in weights.files)
        expected = _expected_checkpoint_keys(cfg, missing, coverage) if cfg.layout == "official" else {}
        described = []
        for name in missing[:8]:
            keys = expected.get(name, [])
            shown_keys = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            described.append(f"{name} (from checkpoint key{'s' if len(keys) > 1 else ''} {shown_keys})" if keys else name)
        shown = ", ".join(described) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        hint = ""
        if "lm_head.weight" in missing and not tie:
            hint = ("; config.json does not set tie_word_embeddings, so lm_head is not tied to embed_tokens and "
                    "needs its own weight")
        raise CheckpointError(
            f"{where}: the checkpoint does not provide {len(missing)} janus-rt parameter(s): {shown}{hint}; "
            "the weights are incomplete or were saved for a different config"
        )


def _expected_checkpoint_keys(cfg: JanusConfig, missing: list[str], coverage: _Coverage) -> dict[str, list[str]]:
    """Official-layout keys that would fill each missing parameter and were not found in the checkpoint."""
    wanted = set(missing)
    map_key = key_mapper(cfg)
    out: dict[str, list[str]] = {}
    for key in official_key_shapes(cfg):
        for target in map_key(key) or []:
            if target.param in wanted:
                seen = {k for _, _, k in coverage.filled[target.param]}
                if key not in seen:
                    out.setdefault(target.param, []).append(key)
    return out


def _materialize(model: JanusModel, name: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Parameter:
    """Give the meta parameter `name` real (uninitialised) storage and return it."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    param = empty_parameter(getattr(module, attr).shape, device, dtype)
    setattr(module, attr, param)
    return param
