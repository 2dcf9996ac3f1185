"""The TensorRT builder without TensorRT: profiles, cache keys, the engine cache, and the build's calls into a
stand-in of the TensorRT 10 API that records them (no engine is built or run here).
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from janus_rt.errors import CheckpointError, InputError
from janus_rt.export import export_onnx
from janus_rt.export import trt_builder as tb
from janus_rt.export.manifest import read_manifest

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def export_dir(torch_model, tmp_path_factory) -> Path:
    return export_onnx(torch_model, tmp_path_factory.mktemp("trt") / "export", dtype="float16").path


def test_transformer_profiles_cover_prefill_and_decode(export_dir):
    manifest = read_manifest(export_dir)
    entry = manifest["graphs"]["transformer"]
    prefill, decode = tb.profiles_for("transformer", entry, max_batch=8, context=1024, max_images=4)
    assert (prefill.name, decode.name) == ("prefill", "decode")
    names = [t["name"] for t in entry["inputs"]]
    for prof in (prefill, decode):
        assert list(prof.shapes) == names  # every input has a range
        for lo, opt, hi in prof.shapes.values():
            assert len(lo) == len(opt) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, opt, hi))
    kv = "past_key_values.0.key"
    assert prefill.shapes[kv][0][2] == prefill.shapes[kv][2][2] == 0  # prefill: empty cache
    assert prefill.shapes["inputs_embeds"][2][:2] == (8, 1024)  # batch 8, a whole-context prompt
    assert decode.shapes["inputs_embeds"][0][1] == decode.shapes["inputs_embeds"][2][1] == 1  # one new token
    assert decode.shapes[kv][2][2] == 1023 and decode.shapes["attention_mask"][2] == (8, 1024)
    hidden = entry["inputs"][0]["shape"][2]
    assert all(s[2] == hidden for s in prefill.shapes["inputs_embeds"])  # fixed axes stay fixed


def test_other_graph_profiles(export_dir):
    graphs = read_manifest(export_dir)["graphs"]
    (vq,) = tb.profiles_for("vq_decoder", graphs["vq_decoder"], 8, 1024, max_images=3)
    assert vq.shapes["image_token_ids"] == ((1, 576), (1, 576), (3, 576))
    (head,) = tb.profiles_for("gen_head", graphs["gen_head"], 6, 1024, 3)
    assert [s[0] for s in head.shapes["hidden_states"]] == [1, 2, 6]
    with pytest.raises(InputError, match="max_batch >= 1"):
        tb.profiles_for("gen_head", graphs["gen_head"], 0, 1024, 3)
    unknown = {"inputs": [{"name": "x", "dtype": "float32", "shape": ["mystery", 4]}]}
    with pytest.raises(CheckpointError, match="axis 'mystery'"):
        tb.profiles_for("gen_head", unknown, 2, 16, 1)


def test_cache_key_changes_with_every_ingredient(export_dir):
    graphs = read_manifest(export_dir)["graphs"]
    profiles = tb.profiles_for("gen_head", graphs["gen_head"], 8, 1024, 4)
    base = dict(graph_sha256="a" * 64, trt_version="10.9.0", gpu_name="NVIDIA H100", compute_capability=(9, 0),
                profiles=profiles)
    key = tb.engine_cache_key(**base)
    assert key == tb.engine_cache_key(**base)  # stable
    changed = [
        {"graph_sha256": "b" * 64}, {"trt_version": "10.10.0"}, {"gpu_name": "NVIDIA L4"},
        {"compute_capability": (8, 9)}, {"profiles": tb.profiles_for("gen_head", graphs["gen_head"], 4, 1024, 4)},
    ]
    keys = {tb.engine_cache_key(**{**base, **c}) for c in changed}
    assert len(keys) == len(changed) and key not in keys
    assert tb.engine_path(Path("/c"), "gen_head", key) == Path(f"/c/gen_head-{key}.engine")


def test_without_tensorrt_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(InputError, match=r"TensorRT is not importable.*pip install 'janus-rt\[trt\]'"):
        tb.import_tensorrt()


def fake_tensorrt(log: dict, parse_ok: bool = True) -> types.ModuleType:
    """A recording stand-in for the parts of the TensorRT 10 Python API the builder calls."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Config:
        def __init__(self):
            self.profiles = []

        def set_memory_pool_limit(self, pool, size):
            log["workspace"] = size

        def add_optimization_profile(self, p):
            self.profiles.append(p.shapes)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log["flags"] = flags
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            log.setdefault("built", []).append(config.profiles)
            return json.dumps([{k: list(v) for k, v in p.items()} for p in config.profiles]).encode()

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            log.setdefault("parsed", []).append(Path(path).name)
            return parse_ok

        def get_error(self, i):
            return "Unsupported ONNX op: Foo"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE=0)
    return trt


def test_build_engines_builds_once_then_uses_the_cache(export_dir, tmp_path, monkeypatch):
    log: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(log))
    monkeypatch.setattr(tb, "gpu_identity", lambda: ("NVIDIA H100 80GB HBM3", (9, 0)))
    manifest = read_manifest(export_dir)
    built = tb.build_engines(export_dir, manifest, max_batch=4, context=512, max_images=2, cache_dir=tmp_path)
    assert set(built) == set(manifest["graphs"]) and sorted(log["parsed"]) == sorted(g["file"] for g in manifest["graphs"].values())
    assert log["flags"] == 1 << 5  # STRONGLY_TYPED: the fp16 graph's fp32 islands are kept
    path, profiles = built["transformer"]
    assert path.parent == tmp_path and len(profiles) == 2
    saved = json.loads(path.read_bytes())
    assert [set(p) for p in saved] == [set(profiles[0].shapes)] * 2  # every input got its ranges, per profile
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    log.clear()
    again = tb.build_engines(export_dir, manifest, max_batch=4, context=512, max_images=2, cache_dir=tmp_path)
    assert "built" not in log and {g: p for g, (p, _) in again.items()} == {g: p for g, (p, _) in built.items()}
    monkeypatch.setattr(tb, "gpu_identity", lambda: ("NVIDIA L4", (8, 9)))
    other_gpu = tb.build_engines(export_dir, manifest, max_batch=4, context=512, max_images=2, cache_dir=tmp_path)
    assert len(log["built"]) == len(manifest["graphs"]) and other_gpu["vq_decoder"][0] != built["vq_decoder"][0]


def test_unparsable_graph_names_the_file(export_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt({}, parse_ok=False))
    monkeypatch.setattr(tb, "gpu_identity", lambda: ("NVIDIA H100", (9, 0)))
    with pytest.raises(CheckpointError, match=r"vision.onnx: TensorRT cannot parse this graph \(Unsupported ONNX op: Foo\)"):
        tb.build_engines(export_dir, read_manifest(export_dir), cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
