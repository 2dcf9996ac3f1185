"""`janus-rt bench --quant`: quantized rows beside the float ones, their step bytes, MBU and ms/step ratio.

One CPU smoke run through the real CLI entry (tiny architecture, 6x6 image-token grid, torch backend, float32
and int8 / int4 weights) is shared by the checks below. A CPU measures no bandwidth, so that run pretends
one (`card["copy_gbps"]`, patched into `make_card`) to give every row an MBU: what is checked is the
arithmetic (MBU and the floor recomputed from the JSON's step bytes and times), never a time. The skip paths
(fp8 refused on an old GPU, a format whose build fails) and the refusal of a bad --quant value are checked
without timing anything quantized.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from janus_rt.bench import harness, quant_rows
from janus_rt.bench.goals import quant_targets
from janus_rt.bench.harness import run_bench
from janus_rt.bench.options import BenchOptions, bench_config
from janus_rt.bench.quant_rows import compare_to_float
from janus_rt.cli.main import main
from janus_rt.errors import InputError
from janus_rt.quant import QuantSpec
from janus_rt.quant.model import step_weight_bytes

FAKE_GBPS = 50.0  # pretend copy bandwidth (GB/s) of the smoke run: the CPU measures none
FAKE_SHEET_GBPS = 80.0
FORMATS = ("int8", "int4")
SMOKE = ["bench", "--arch", "tiny", "--image-grid", "6", "--images", "1", "--backends", "torch", "--text-batches",
         "1", "--text-tokens", "4", "--repeats", "1", "--no-hf"]


@pytest.fixture(scope="module")
def quant_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    """(printed report, its JSON last line, the --out file) of one `janus-rt bench --quant int8,int4` run."""
    real_card = harness.make_card

    def card_with_bandwidth(*args, **kwargs) -> dict:
        card = real_card(*args, **kwargs)
        card["copy_gbps"], card["datasheet_gbps"] = FAKE_GBPS, FAKE_SHEET_GBPS
        return card

    out_file = tmp_path_factory.mktemp("bench-quant") / "result.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    buf = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf):
            mp.setattr(harness, "make_card", card_with_bandwidth)
            code = main([*SMOKE, "--quant", ",".join(FORMATS), "--out", str(out_file)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    out = buf.getvalue()
    return out, json.loads(out.rstrip("\n").split("\n")[-1]), out_file


def _table(out: str, title: str) -> list[list[str]]:
    """The body rows (cells) of the pipe table printed under the line starting with `title`."""
    lines = out.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_tables_have_float_and_quantized_rows(quant_run) -> None:
    out, result, out_file = quant_run
    assert json.loads(out_file.read_text()) == result
    assert result["command"].endswith("--quant int8,int4") and result["options"]["quant"] == list(FORMATS)
    image = _table(out, "image generation")
    text = _table(out, "understanding")
    assert image[0][:3] == ["backend", "weights", "images"] and "vs float" in image[0]
    assert text[0][:3] == ["backend", "weights", "batch"] and "vs float" in text[0]
    assert [r[:3] for r in image[2:]] == [["torch", "float32", "1"], ["torch", "int8", "1"], ["torch", "int4", "1"]]
    assert [r[:3] for r in text[2:]] == [["torch", "float32", "1"], ["torch", "int8", "1"], ["torch", "int4", "1"]]
    vs = image[0].index("vs float")
    assert image[2][vs] == "-" and all(r[vs].endswith("x") for r in image[3:])
    assert "quantized vs float32 weights" in out
    for fmt in FORMATS:
        assert f"{fmt} weights" in out  # card line: bytes per step of the format
        assert f"torch   {fmt:<5} 1 image(s)" in out and f"torch   {fmt:<5} text batch 1" in out


def test_json_rows_carry_their_format_and_quantized_step_bytes(quant_run) -> None:
    _, result, _ = quant_run
    card = result["card"]
    cfg = bench_config(BenchOptions(arch="tiny", image_grid=6))
    assert card["dtype"] == "float32"
    for section, key in (("image", "images"), ("text", "batch")):
        rows = {r["weights"]: r for r in result[section]}
        assert list(rows) == ["float32", *FORMATS] and all(r["backend"] == "torch" for r in rows.values())
        weight_key = f"{section}_step_weight_bytes"
        kv = rows["float32"]["step_bytes"] - card[weight_key]  # KV bytes of the step: the same for every format
        assert kv > 0
        for fmt in FORMATS:
            expected = step_weight_bytes(cfg, torch.float32, QuantSpec(fmt))[section]
            assert card["quant"][fmt][weight_key] == expected
            assert rows[fmt]["step_bytes"] == pytest.approx(expected + kv)
        # quantized weights are read in fewer bytes: int4 < int8 < float
        assert card["quant"]["int4"][weight_key] < card["quant"]["int8"][weight_key] < card[weight_key]
        assert rows["int4"]["step_bytes"] < rows["int8"]["step_bytes"] < rows["float32"]["step_bytes"]
        assert all(r["decode_steps"] == (35 if section == "image" else 3) for r in rows.values())
    for fmt in FORMATS:
        q = card["quant"][fmt]
        assert q["spec"]["format"] == fmt and 0 < q["model_bytes"] < card["model_bytes"]


def test_mbu_counts_the_quantized_bytes(quant_run) -> None:
    _, result, _ = quant_run
    assert result["card"]["copy_gbps"] == FAKE_GBPS
    for section in ("image", "text"):
        float_bytes = next(r["step_bytes"] for r in result[section] if r["weights"] == "float32")
        for r in result[section]:
            seconds = r["decode_ms_per_step"] / 1e3
            assert r["mbu_pct"] == pytest.approx(100 * r["step_bytes"] / (FAKE_GBPS * 1e9) / seconds, rel=1e-9)
            assert r["mbu_datasheet_pct"] == pytest.approx(100 * r["step_bytes"] / (FAKE_SHEET_GBPS * 1e9) / seconds,
                                                           rel=1e-9)
            if section == "image":
                assert r["floor_ms_per_step"] == pytest.approx(r["step_bytes"] / (FAKE_GBPS * 1e9) * 1e3, rel=1e-9)
            if r["weights"] != "float32":  # not the float bytes (those are >= 1.4x the quantized ones here)
                assert r["mbu_pct"] < 0.9 * 100 * float_bytes / (FAKE_GBPS * 1e9) / seconds


def test_ms_per_step_ratio_against_the_float_row(quant_run) -> None:
    _, result, _ = quant_run
    for section, rate in (("image", "images_per_s"), ("text", "decode_tokens_per_s")):
        base = next(r for r in result[section] if r["weights"] == "float32")
        assert "ms_per_step_vs_float" not in base
        for r in result[section]:
            if r["weights"] in FORMATS:
                assert r["ms_per_step_vs_float"] == pytest.approx(r["decode_ms_per_step"] / base["decode_ms_per_step"])
                assert r["throughput_vs_float"] == pytest.approx(r[rate] / base[rate])
    assert result["speedups"] == [] and result["quant_targets"] == []  # CPU, tiny: no goal applies


def test_without_quant_nothing_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMOKE, "--text-batches", "none"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.rstrip("\n").split("\n")[-1])
    assert "quant" not in result["card"] and "quant_targets" not in result and "--quant" not in result["command"]
    (row,) = result["image"]
    assert "weights" not in row and "ms_per_step_vs_float" not in row
    assert _table(out, "image generation")[0][:2] == ["backend", "images"]
    assert "quantized vs" not in out and "vs float" not in out


def test_unusable_or_failing_formats_are_skipped_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp8 refused (as below sm_89) and an int8 build that fails: notes, the float rows stay, no crash."""
    def refuse(spec, device):
        if spec.format == "fp8":
            raise InputError("fp8 weights need an Ada or Hopper GPU (compute capability 8.9+)", param="quantize")

    def broken(model, spec, progress=False):
        raise RuntimeError(f"no {spec.format} kernel here")

    monkeypatch.setattr(quant_rows, "check_format_supported", refuse)  # where the bench looks them up
    monkeypatch.setattr(quant_rows, "quantize_model", broken)
    logged: list[str] = []
    opts = BenchOptions(arch="tiny", image_grid=6, images=(1,), backends=("torch",), text_batches=(), skip=("text",),
                        hf=False, repeats=1, quant=("fp8", "int8"))
    result = run_bench(opts, log=logged.append)
    assert [(r["backend"], r["weights"]) for r in result["image"]] == [("torch", "float32")]
    notes = "\n".join(result["notes"])
    assert "--quant fp8 skipped: fp8 weights need an Ada or Hopper GPU" in notes
    assert "--quant int8 skipped: building the int8 model failed: RuntimeError: no int8 kernel here" in notes
    assert any("--quant fp8 skipped" in line for line in logged)
    assert "quant" not in result["card"]


def test_one_model_variant_alive_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The float model is freed before the int8 one is built, and the int8 one before run_bench returns."""
    import gc
    import weakref

    real_build = harness.build_random_model
    built: list[weakref.ref] = []

    def build(*args, **kwargs):
        gc.collect()
        assert all(ref() is None for ref in built), "an earlier model variant is still alive"
        model = real_build(*args, **kwargs)
        built.append(weakref.ref(model))
        return model

    monkeypatch.setattr(harness, "build_random_model", build)  # the float model
    monkeypatch.setattr(quant_rows, "build_random_model", build)  # each quantized one
    opts = BenchOptions(arch="tiny", image_grid=6, images=(1,), backends=("torch",), text_batches=(), skip=("text",),
                        hf=False, repeats=1, quant=("int8",))
    result = run_bench(opts, log=lambda _: None)
    assert [r["weights"] for r in result["image"]] == ["float32", "int8"] and len(built) == 2
    gc.collect()
    assert all(ref() is None for ref in built)


@pytest.mark.parametrize("value, needle", [("int3", "'int3'"), ("int8,bf16", "'bf16'"), ("int8,int8", "twice")])
def test_bad_quant_value_names_the_flag(value: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--arch", "tiny", "--quant", value])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --quant" in err and needle in err
    if value != "int8,int8":
        assert "int8, int4, fp8" in err


def test_quant_without_rows_to_quantize_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--arch", "tiny", "--images", "none", "--text-batches", "none", "--arrivals", "1",
                 "--quant", "int8"]) == 2
    assert "--quant" in capsys.readouterr().err


def test_report_renders_a_gpu_quant_result() -> None:
    """A GPU result (Pro-7B, bf16): the weights column, the ratio, and the int8 goal checked."""
    from janus_rt.bench.report import render

    card = {"arch": "janus-pro-7b", "variant": "Janus-Pro-7B shape", "device": "cuda", "dtype": "bfloat16",
            "parameters": 7_420_000_000, "model_bytes": 14_840_000_000, "gpu": "NVIDIA H100 80GB HBM3",
            "gpu_memory_gb": 85.0, "copy_gbps": 3000.0, "datasheet_gbps": 3350.0,
            "image_step_weight_bytes": 12_344_459_264, "text_step_weight_bytes": 12_981_870_592,
            "kv_bytes_per_token_row": 491520, "one_image_step_bytes": 12.66e9, "one_image_step_floor_ms": 4.22,
            "one_image_floor_s": 2.43, "modes": {"triton": "graphs"},
            "quant": {"int8": {"spec": {"format": "int8"}, "model_bytes": 8.0e9,
                               "image_step_weight_bytes": 6_194_499_584, "text_step_weight_bytes": 6_496_694_272, "one_image_step_bytes": 6.5e9,
                               "one_image_step_floor_ms": 2.17}}}
    base = dict(backend="triton", weights="bfloat16", images=1, warmup_ms=2000.0, prefill_ms=9.0,
                decode_ms_per_step=5.0, image_tokens_per_s=200.0, images_per_s=0.35, step_bytes=12.66e9, mbu_pct=84.4,
                mbu_datasheet_pct=75.0, vq_ms_per_image=20.0, peak_gb=16.1)
    img = [base, dict(base, weights="int8", decode_ms_per_step=2.8, images_per_s=0.62, step_bytes=6.5e9, peak_gb=9.2)]
    compare_to_float(img, "images", "bfloat16")
    opts = BenchOptions(arch="janus-pro-7b", quant=("int8",))
    result = {"card": card, "versions": {"torch": "2.11", "cuda": "12.8", "triton": "3.6", "transformers": None,
                                         "janus_rt": "0.1.0"},
              "image": img, "text": [], "speedups": [], "targets": [], "notes": [], "command": "janus-rt bench",
              "quant_targets": quant_targets(opts, card, img)}
    out = render(result)
    assert result["quant_targets"][0]["value"] == pytest.approx(0.56) and result["quant_targets"][0]["met"]
    rows = _table(out, "image generation")
    assert [r[:2] for r in rows[2:]] == [["triton", "bfloat16"], ["triton", "int8"]]
    assert rows[3][rows[0].index("vs float")] == "0.56x"
    assert "[   MET] triton: int8, one image: decode ms/step vs bfloat16: 0.56 x (goal <= 0.58)" in out
    assert "int8 weights" in out and "6.194 GB" in out
    assert json.loads(out.splitlines()[-1]) == result
