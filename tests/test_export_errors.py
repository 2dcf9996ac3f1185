"""Bad export directories and arguments give one clear error naming the file and what to do; a failed export
leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import janus_rt
from janus_rt.cli.main import main
from janus_rt.errors import CheckpointError, InputError
from janus_rt.export import export_onnx
from janus_rt.export import manifest as mf
from janus_rt.export import onnx_export
from janus_rt.checkpoint.tiny import write_tiny_checkpoint

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pristine(torch_model, tmp_path_factory) -> Path:
    return export_onnx(torch_model, tmp_path_factory.mktemp("pristine") / "export").path


@pytest.fixture()
def export_copy(pristine, tmp_path) -> Path:
    """A private copy of a good export, for a test to damage."""
    return Path(shutil.copytree(pristine, tmp_path / "export"))


def load_ort(path: Path, **kw):
    return janus_rt.load(path, backend="onnxruntime", providers=["CPUExecutionProvider"], **kw)


def test_missing_export_dir(tmp_path):
    with pytest.raises(CheckpointError, match="janus-rt export") as e:
        load_ort(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)


def test_folder_that_is_neither_export_nor_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="manifest.json") as e:
        load_ort(tmp_path)
    assert "janus-rt export --model CHECKPOINT --out DIR" in str(e.value)


def test_incomplete_export_names_the_missing_file(export_copy):
    (export_copy / "transformer.onnx").unlink()
    with pytest.raises(CheckpointError, match="transformer.onnx: listed in .*missing.*export .* again"):
        load_ort(export_copy)


def test_truncated_graph_names_the_file(export_copy):
    path = export_copy / "vq_decoder.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="vq_decoder.onnx: 1000 bytes, the manifest says"):
        load_ort(export_copy)


def test_corrupt_manifest(export_copy):
    (export_copy / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.json: not valid JSON"):
        load_ort(export_copy)


def test_manifest_of_another_checkpoint_with_another_tokenizer(export_copy, tmp_path):
    other_ckpt = write_tiny_checkpoint(tmp_path / "other", janus_rt.checkpoint.tiny.TinySpec(pro=False))
    other = export_onnx(janus_rt.load(other_ckpt, device="cpu", dtype="float32"), tmp_path / "other-export").path
    shutil.copyfile(other / "manifest.json", export_copy / "manifest.json")
    with pytest.raises(CheckpointError, match="another checkpoint") as e:
        load_ort(export_copy)
    assert str(export_copy) in str(e.value)


def test_manifest_of_another_checkpoint_with_the_same_shapes(export_copy, tmp_path):
    """Same config and tokenizer, other weights: the graphs' stamps give the mix-up away."""
    other_ckpt = write_tiny_checkpoint(tmp_path / "other", seed=1)
    other = export_onnx(janus_rt.load(other_ckpt, device="cpu", dtype="float32"), tmp_path / "other-export").path
    for name in ("manifest.json", "text_embed.onnx"):  # a graph of the other export slipped in beside its manifest
        shutil.copyfile(other / name, export_copy / name)
    with pytest.raises(CheckpointError, match="mixes files of different exports"):
        load_ort(export_copy)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_graph_with_the_wrong_inputs(export_copy):
    """A foreign graph whose inputs differ (the manifest even lists its new size and hash)."""
    path = export_copy / "lm_head.onnx"
    with torch.no_grad():
        torch.onnx.export(torch.nn.Linear(4, 4), (torch.randn(1, 4),), str(path), dynamo=False,
                          input_names=["x"], output_names=["logits"])
    manifest = json.loads((export_copy / "manifest.json").read_text())
    manifest["files"]["lm_head.onnx"] = mf.file_record(path)
    mf.write_manifest(export_copy, manifest)
    with pytest.raises(CheckpointError, match=r"lm_head.onnx: graph inputs \['x:float32'\] differ from the manifest's "
                                              r"\['hidden_states:float32'\]"):
        load_ort(export_copy)


def test_export_refuses_a_folder_of_another_checkpoint(pristine, tmp_path):
    other_ckpt = write_tiny_checkpoint(tmp_path / "other", seed=3)
    with pytest.raises(CheckpointError, match="holds an export of another checkpoint") as e:
        export_onnx(janus_rt.load(other_ckpt, device="cpu", dtype="float32"), pristine)
    assert "choose another --out" in str(e.value)


def test_export_refuses_a_foreign_folder(torch_model, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="not empty and not a janus-rt export"):
        export_onnx(torch_model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_reexport_verifies_and_reports_a_damaged_export(torch_model, export_copy):
    path = export_copy / "gen_head.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="gen_head.onnx: sha256 differs"):
        export_onnx(torch_model, export_copy)


def test_failed_export_leaves_nothing(torch_model, tmp_path, monkeypatch):
    real, calls = onnx_export._trace, []

    def failing(spec, *args, **kwargs):
        calls.append(spec.name)
        if len(calls) == 3:
            raise RuntimeError("simulated crash while tracing")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "_trace", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        export_onnx(torch_model, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no target, no staging folder


def test_load_with_another_dtype(pristine):
    with pytest.raises(InputError, match="this export is float32, not float16"):
        load_ort(pristine, dtype="float16")


def test_bf16_export_in_onnxruntime_says_what_to_do(torch_model, tmp_path):
    out = export_onnx(torch_model, tmp_path / "bf16", dtype="bfloat16").path
    with pytest.raises(InputError, match="backend='tensorrt' or export float32 / float16"):
        load_ort(out)


def test_provider_not_installed(pristine):
    with pytest.raises(InputError, match="NoSuchExecutionProvider are not installed here; available: .*CPUExecutionProvider"):
        janus_rt.load(pristine, backend="onnxruntime", providers=["NoSuchExecutionProvider"])


def test_providers_on_the_torch_backend(tiny_official):
    with pytest.raises(InputError, match="providers= is an option of backend='onnxruntime'"):
        janus_rt.load(tiny_official, providers=["CPUExecutionProvider"])


def test_tensorrt_backend_without_tensorrt(pristine):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    with pytest.raises(InputError, match=r"TensorRT is not importable.*pip install 'janus-rt\[trt\]'"):
        janus_rt.load(pristine, backend="tensorrt")


def test_cli_export_trt_without_tensorrt_fails_first(tiny_official, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    code = main(["export", "--model", str(tiny_official), "--out", str(tmp_path / "x"), "--trt"])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err
    assert "janus-rt: error: backend 'tensorrt' is not available here: TensorRT is not importable" in err
    assert "pip install 'janus-rt[trt]'" in err
    assert not (tmp_path / "x").exists()  # failed before exporting anything


def test_cli_export_missing_model(tmp_path, capsys):
    code = main(["export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    _, err = capsys.readouterr()
    assert code == 2 and "janus-rt: error:" in err and str(tmp_path / "missing") in err
