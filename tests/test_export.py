"""The export stage end to end on the tiny checkpoint: ONNX graphs, manifest, --check, and the ONNX Runtime
backend reproducing the torch backend (greedy image tokens and answers exactly; pixels within one level).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.cli.main import main
from janus_rt.export import check_export, export_onnx, format_report
from janus_rt.export import manifest as mf
from janus_rt.export import onnx_export

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def fp32_export(torch_model, tmp_path_factory) -> Path:
    return export_onnx(torch_model, tmp_path_factory.mktemp("exports") / "fp32").path


@pytest.fixture(scope="module")
def ort_model(fp32_export):
    return janus_rt.load(fp32_export, backend="onnxruntime", providers=["CPUExecutionProvider"])


def test_manifest_lists_every_file_graph_and_source(fp32_export, tiny_official, torch_model):
    manifest = json.loads((fp32_export / "manifest.json").read_text())
    assert manifest["format"] == "janus-rt-export" and manifest["janus_rt_version"] == janus_rt.__version__
    assert manifest["opset"] == onnx_export.OPSET and manifest["dtype"] == "float32"
    assert manifest["source"]["sha256"] == mf.checkpoint_hash(tiny_official)
    assert set(manifest["graphs"]) == {"vision", "text_embed", "transformer", "lm_head", "gen_head", "gen_embed", "vq_decoder"}
    on_disk = {p.name for p in fp32_export.iterdir()} - {"manifest.json"}
    assert set(manifest["files"]) == on_disk
    for name, record in manifest["files"].items():
        assert record["sha256"] == mf.sha256_file(fp32_export / name)
    layers = torch_model.config.llm.num_layers
    t = manifest["graphs"]["transformer"]
    assert [i["name"] for i in t["inputs"]][:3] == ["inputs_embeds", "positions", "attention_mask"]
    assert [i["name"] for i in t["inputs"]][3:] == [f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    assert [o["name"] for o in t["outputs"]][1:] == [f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    assert t["inputs"][3]["shape"] == ["batch", torch_model.config.llm.num_kv_heads, "past_sequence",
                                       torch_model.config.llm.head_dim]
    for name, graph in manifest["graphs"].items():  # the graph files declare what the manifest says
        got_in, got_out = onnx_export.onnx_io(fp32_export / graph["file"])
        assert got_in == [(i["name"], i["dtype"]) for i in graph["inputs"]], name
        assert got_out == [(o["name"], o["dtype"]) for o in graph["outputs"]], name
    assert not [p for p in fp32_export.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_check_passes_and_prints_a_table(fp32_export, torch_model):
    rows = check_export(fp32_export, torch_model, seed=123)
    assert [r.graph for r in rows] == ["vision", "text_embed", "transformer", "lm_head", "gen_head", "gen_embed", "vq_decoder"]
    assert all(r.ok for r in rows), format_report(rows)
    assert all(r.max_abs_err <= 1e-4 * (1 + r.max_abs_ref) for r in rows)
    assert "7/7 graphs within tolerance" in format_report(rows)


def test_check_detects_a_wrong_graph(fp32_export, torch_model, tmp_path):
    """A graph exported from different weights (same inputs / outputs) fails --check."""
    other = janus_rt.load(torch_model.path, device="cpu", dtype="float32")
    with torch.no_grad():
        other.model.gen_head.out.bias.add_(0.5)
    bad = tmp_path / "bad"
    export_onnx(other, bad)
    rows = check_export(bad, torch_model, seed=0)
    assert [r.graph for r in rows if not r.ok] == ["gen_head"]
    assert "FAILED: gen_head" in format_report(rows)


def test_second_export_is_verified_and_skipped(fp32_export, torch_model):
    before = {p.name: p.stat().st_mtime_ns for p in fp32_export.iterdir()}
    result = export_onnx(torch_model, fp32_export)
    assert result.skipped
    assert before == {p.name: p.stat().st_mtime_ns for p in fp32_export.iterdir()}


def test_onnxruntime_greedy_image_tokens_and_pixels_match_torch(torch_model, ort_model):
    assert ort_model.backend == "onnxruntime" and ort_model.model is None
    ref = torch_model.generate_images("a red fox in the snow", num_images=2, temperature=0)
    got = ort_model.generate_images("a red fox in the snow", num_images=2, temperature=0)
    assert torch.equal(got.tokens, ref.tokens)
    assert np.abs(got.images.astype(int) - ref.images.astype(int)).max() <= 1


def test_onnxruntime_negative_prompts_match_torch(torch_model, ort_model):
    """The graph backend left-pads the shorter of a negative prompt's CFG rows and masks the padding: greedy tokens
    equal the torch backend's (whose rows keep their own lengths), for a negative prompt shorter and one longer."""
    for negative in ("dark", "blurry, low quality, deformed, extra limbs, watermark, text, jpeg artifacts"):
        ref = torch_model.generate_images("a red fox in the snow", num_images=2, temperature=0, negative_prompt=negative)
        got = ort_model.generate_images("a red fox in the snow", num_images=2, temperature=0, negative_prompt=negative)
        assert torch.equal(got.tokens, ref.tokens)
        assert np.abs(got.images.astype(int) - ref.images.astype(int)).max() <= 1


def test_onnxruntime_previews_show_the_drawn_rows(ort_model):
    from janus_rt.previews import fill_undrawn, gray_undrawn

    grid = ort_model.config.vq.image_token_grid
    job = ort_model.submit_images("a cat", seed=3, partial_images=1)
    result = job.result()
    (preview,) = list(job.previews())
    assert (preview.preview_index, preview.rows_done) == (0, grid // 2)
    drawn = result.tokens[:, :preview.rows_done * grid]
    want = gray_undrawn(ort_model.decode_image_tokens(fill_undrawn(drawn, grid)), preview.rows_done, grid)[0]
    assert np.array_equal(preview.image, want)


def test_onnxruntime_seeded_sampling_matches_torch(torch_model, ort_model):
    ref = torch_model.generate_images("a cat", num_images=1, seed=7, cfg_weight=3.0)
    got = ort_model.generate_images("a cat", num_images=1, seed=7, cfg_weight=3.0)
    assert (got.tokens != ref.tokens).float().mean() <= 0.01  # same draws; a near-tie may flip a rare token


def test_onnxruntime_greedy_answers_match_torch(torch_model, ort_model):
    image = np.random.default_rng(0).integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    questions = ["What is in this picture?", "Describe the picture in detail, please."]
    ref = torch_model.chat(questions, image=[image, None], max_new_tokens=24)  # two requests, one with an image
    got = ort_model.chat(questions, image=[image, None], max_new_tokens=24)
    assert [r.token_ids for r in got] == [r.token_ids for r in ref]
    assert [r.finished for r in got] == [r.finished for r in ref]


def test_onnxruntime_concurrent_requests_share_steps_and_equal_solo(ort_model):
    """The engine drives the ONNX graphs too: concurrent greedy requests equal their solo runs, in fewer steps."""
    from test_engine import run_threads

    prompts = ["a red fox in the snow", "a green field"]
    solo_images = [ort_model.generate_images(p, num_images=1, temperature=0).tokens for p in prompts]
    solo_answer = ort_model.chat("What is this?", max_new_tokens=12).token_ids
    before = ort_model.stats()["decode_steps"]
    out = run_threads([lambda: ort_model.generate_images(prompts[0], num_images=1, temperature=0).tokens,
                       lambda: ort_model.generate_images(prompts[1], num_images=1, temperature=0).tokens,
                       lambda: ort_model.chat("What is this?", max_new_tokens=12).token_ids])
    assert torch.equal(out[0], solo_images[0]) and torch.equal(out[1], solo_images[1])
    assert out[2] == solo_answer
    assert ort_model.stats()["decode_steps"] - before < 2 * 575 + 11


def test_decode_image_tokens_within_one_level(torch_model, ort_model):
    tokens = torch.randint(0, torch_model.config.vq.codebook_size, (3, 576), generator=torch.Generator().manual_seed(2))
    diff = np.abs(ort_model.decode_image_tokens(tokens).astype(int) - torch_model.decode_image_tokens(tokens).astype(int))
    assert diff.max() <= 1


def test_load_checkpoint_with_onnxruntime_exports_into_the_cache(tiny_official, tmp_path, monkeypatch, torch_model):
    monkeypatch.setenv("JANUS_RT_EXPORT_CACHE", str(tmp_path / "cache"))
    m = janus_rt.load(tiny_official, backend="onnxruntime", providers=["CPUExecutionProvider"])
    (cached,) = (tmp_path / "cache").iterdir()
    assert m.path == cached and (cached / "manifest.json").is_file()
    again = janus_rt.load(tiny_official, backend="onnxruntime")  # reuses the verified export
    assert again.path == cached and len(list((tmp_path / "cache").iterdir())) == 1
    ids = torch_model.chat("Hi there", max_new_tokens=6).token_ids
    assert m.chat("Hi there", max_new_tokens=6).token_ids == ids


def test_fp16_export_checks_within_its_tolerance(torch_model, tmp_path):
    out = export_onnx(torch_model, tmp_path / "fp16", dtype="float16")
    manifest = json.loads((out.path / "manifest.json").read_text())
    assert manifest["dtype"] == "float16"
    assert manifest["graphs"]["transformer"]["inputs"][3]["dtype"] == "float16"
    assert manifest["graphs"]["transformer"]["inputs"][1]["dtype"] == "int64"
    rows = check_export(out.path, torch_model, seed=5)
    assert all(r.ok for r in rows), format_report(rows)


def test_bf16_export_declares_bf16_graphs(torch_model, tmp_path):
    """bf16 graphs are for TensorRT (ONNX Runtime's CPU kernels have no bf16); their declared types are checked."""
    out = export_onnx(torch_model, tmp_path / "bf16", dtype="bfloat16")
    got_in, got_out = onnx_export.onnx_io(out.path / "vq_decoder.onnx")
    assert got_in == [("image_token_ids", "int64")] and got_out == [("pixel_values", "bfloat16")]


def test_large_graphs_use_one_external_data_file(torch_model, tmp_path):
    out = export_onnx(torch_model, tmp_path / "ext", external_data_bytes=0).path
    manifest = json.loads((out / "manifest.json").read_text())
    for name, graph in manifest["graphs"].items():
        assert graph["external_data"] == f"{name}.onnx.data" and (out / graph["external_data"]).is_file()
    assert (out / "gen_head.onnx").stat().st_size < 100_000  # weights live in the .data file
    assert all(r.ok for r in check_export(out, torch_model, seed=1))  # ONNX Runtime finds the .data files


def test_cli_export_check_then_generate(tiny_official, tmp_path, capsys, torch_model):
    out = tmp_path / "cli"
    assert main(["export", "--model", str(tiny_official), "--out", str(out), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "exported: 7 float32 graphs" in printed and "7/7 graphs within tolerance" in printed
    assert main(["export", "--model", str(tiny_official), "--out", str(out)]) == 0
    assert "already exported (verified" in capsys.readouterr().out
    code = main(["generate", "--model", str(out), "--backend", "onnxruntime", "a red fox", "--temperature", "0",
                 "--out", str(tmp_path / "png")])
    assert code == 0
    (png,) = (tmp_path / "png").iterdir()
    ref = torch_model.generate_images("a red fox", temperature=0).images[0]
    from PIL import Image

    assert np.abs(np.asarray(Image.open(png)).astype(int) - ref.astype(int)).max() <= 1


def test_export_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: janus-rt export")
    for needle in ("--model", "--out", "--dtype", "--check", "--trt", "--providers", "--max-batch",
                   "default float32", "pip install 'janus-rt[export]'", "janus-rt[trt]", "atomically"):
        assert needle in out, needle
