"""`janus-rt bench`: roofline arithmetic, the random-weight builder, the transformers twin, the engine-driven
rows, the arrival run, and the CLI end to end.

No timing is asserted (CPU CI): the arithmetic is checked against bytes counted by hand from the release
configs (janus-reference.md §1.4, house-style "The roofline"), the builder with a NaN poison check, the
transformers twin by bit-identical weights and identical greedy tokens, percentiles against numpy, the
arrival run by its counts (sent, completed, cancelled, decode steps shared), and the CLI by its JSON last
line. Engine runs use the tiny architecture with a 6x6 image-token grid (36 steps an image) on the torch
backend, so each takes well under a second.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from janus_rt.bench import roofline
from janus_rt.bench.architectures import ARCHITECTURES, architecture_config
from janus_rt.bench.arrivals import ArrivalSpec, percentile, summarize
from janus_rt.bench.harness import run_bench
from janus_rt.bench.measure import measure_arrivals
from janus_rt.bench.options import BenchOptions, bench_config
from janus_rt.bench.rows import speedups
from janus_rt.bench.random_weights import build_random_model, fill_random_
from janus_rt.bench.workload import SpecialIds, image_prompt_ids, understanding_request
from janus_rt.cli.main import main
from janus_rt.model.janus import build_empty_model
from oracle import transformers_oracle

BF16 = 2
GRID = 6  # image-token grid of the engine tests: 36 tokens (35 decode steps) per image
ARRIVAL_FIELDS = {"backend", "kind", "mode", "rate_rps", "concurrency", "requests", "images_per_request", "new_tokens",
                  "vq_decode_included", "timeout_s", "sent", "completed", "cancelled", "failed", "not_sent",
                  "timed_out", "errors", "warmup_s", "warmup_batches", "wall_s", "throughput", "throughput_unit",
                  "images_per_s", "tokens_per_s", "requests_per_s", "latency_s", "ttft_s", "decode_steps", "peak_rows",
                  "max_rows", "finished_requests", "solo", "sequential_decode_steps", "sequential_s",
                  "speedup_vs_solo", "prompt_tokens"}


# ------------------------------------------------------------------------------------------ architectures
def test_architectures_parse_to_the_release_shapes() -> None:
    assert ARCHITECTURES == ("janus-1.3b", "janus-pro-7b", "tiny")
    assert architecture_config("janus-1.3b").variant_name() == "Janus-1.3B / Janus-Pro-1B shape"
    assert architecture_config("janus-pro-7b").variant_name() == "Janus-Pro-7B shape"
    tiny = architecture_config("tiny")
    assert tiny.image_tokens_per_image == 576 and tiny.vq.image_size == 384  # full-size work per image
    with pytest.raises(ValueError, match="unknown architecture"):
        architecture_config("janus-13b")


# ---------------------------------------------------------------------------------------------- roofline
def test_roofline_bytes_janus_1_3b_by_hand() -> None:
    cfg = architecture_config("janus-1.3b")
    d, inner, layers, vocab, codes = 2048, 5632, 24, 102400, 16384
    layer = d * 3 * d + d * d + d * 2 * inner + inner * d + 2 * d  # qkv, o, gate|up, down, 2 RMSNorms
    decoder = layers * layer + d  # + final norm
    gen_aligner = (8 * d + d) + (d * d + d)
    gen_head = (d * d + d) + (d * codes + codes)
    assert roofline.image_step_params(cfg) == decoder + gen_aligner + gen_head
    assert roofline.text_step_params(cfg) == decoder + d * vocab
    image_bytes = roofline.image_step_params(cfg) * BF16
    assert image_bytes == pytest.approx(2.55e9, rel=0.005)  # "about 2.55 GB" (house style, issue 3)
    assert roofline.kv_bytes_per_token(cfg.llm, BF16) == 192 * 1024 == 2 * 24 * 16 * 128 * 2

    # one image, 32-token prompt: 575 decode steps on 2 rows attending 33..607 keys (mean 320)
    step = roofline.image_decode_bytes(cfg, 1, 32, BF16)
    assert step.weights == image_bytes
    assert step.kv == 2 * 192 * 1024 * 320
    bandwidth = 3.0e12
    floor = roofline.floor_ms(step, bandwidth)
    assert floor == pytest.approx((image_bytes + 2 * 192 * 1024 * 320) / 3.0e12 * 1e3)
    assert roofline.mbu(step, bandwidth, floor) == pytest.approx(100.0)
    assert roofline.mbu(step, bandwidth, 2 * floor) == pytest.approx(50.0)

    # text: 8 rows, 642-token prompt, 128 new tokens -> 127 steps attending 643..769 keys (mean 706)
    text = roofline.text_decode_bytes(cfg, 8, 642, 128, BF16)
    assert text.weights == (decoder + d * vocab) * BF16
    assert text.kv == 8 * 192 * 1024 * 706


def test_roofline_bytes_janus_pro_7b_by_hand() -> None:
    cfg = architecture_config("janus-pro-7b")
    d, inner, layers, codes = 4096, 11008, 30, 16384
    decoder = layers * (4 * d * d + 3 * d * inner + 2 * d) + d
    expected = decoder + (8 * d + d + d * d + d) + (d * d + d + d * codes + codes)
    assert roofline.image_step_params(cfg) == expected
    assert expected * BF16 == pytest.approx(12.3e9, rel=0.01)  # "about 12.3 GB"
    assert roofline.kv_bytes_per_token(cfg.llm, BF16) == 480 * 1024


@pytest.mark.parametrize("name, gbps", [("NVIDIA H100 80GB HBM3", 3350.0), ("NVIDIA H100 PCIe", 2000.0),
                                        ("NVIDIA H200", 4800.0), ("NVIDIA A100-SXM4-80GB", 2039.0),
                                        ("NVIDIA L4", 300.0), ("NVIDIA L40S", 864.0), ("Tesla T4", None)])
def test_datasheet_bandwidth_by_gpu_name(name: str, gbps: float | None) -> None:
    assert roofline.datasheet_gbps(name) == gbps


def test_speedups_are_above_one_when_the_first_backend_wins() -> None:
    image = [{"backend": "triton", "images": 1, "images_per_s": 2.0}, {"backend": "torch", "images": 1, "images_per_s": 0.5}]
    text = [{"backend": "torch", "batch": 1, "decode_tokens_per_s": 50.0, "ttft_ms": 40.0},
            {"backend": "transformers", "batch": 1, "decode_tokens_per_s": 25.0, "ttft_ms": 80.0}]
    got = {(s["fast"], s["baseline"], s["metric"]): s["speedup"] for s in speedups(image, text)}
    assert got == {("triton", "torch", "images_per_s"): 4.0, ("torch", "transformers", "decode_tokens_per_s"): 2.0,
                   ("torch", "transformers", "ttft_ms"): 2.0}


# ----------------------------------------------------------------------------------------- random weights
def test_random_weights_fill_every_parameter() -> None:
    cfg = architecture_config("tiny")
    model = build_empty_model(cfg, torch.device("cpu"), torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))  # poison: a parameter the builder skips stays NaN
    fill_random_(model, seed=0)
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
        assert p.numel() == 1 or p.std() > 0, name
    norms = [p for n, p in model.named_parameters() if n.endswith("norm.weight") or n.endswith("norm1.weight")]
    assert norms and all(abs(float(p.mean()) - 1) < 0.05 for p in norms)
    assert float(model.llm.layers[0].mlp.down_proj.weight.std()) == pytest.approx(0.02, rel=0.1)
    codebook = model.vq.codebook
    assert torch.unique(codebook, dim=0).shape[0] == cfg.vq.codebook_size  # non-degenerate: all codes distinct
    assert float(codebook.std()) == pytest.approx(1.0, rel=0.05)
    again = build_empty_model(cfg, torch.device("cpu"), torch.float32)
    fill_random_(again, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # seeded


def test_workload_inputs() -> None:
    cfg = architecture_config("tiny")
    special = SpecialIds.for_vocab(cfg.llm.vocab_size)
    ids = image_prompt_ids(special, 32)
    assert len(ids) == 32 and ids[0] == special.bos and ids[-1] == special.begin_of_image
    assert max(ids[1:-1]) < special.first_special
    req = understanding_request(cfg, special, 64)
    assert req.ids.count(special.placeholder) == 576 and len(req.ids) == 64 + 578
    assert req.pixel_values.shape == (1, 3, 384, 384)


# ---------------------------------------------------------------------------------------- transformers twin
def test_transformers_twin_holds_identical_weights() -> None:
    transformers_oracle()
    import dataclasses

    from janus_rt.bench.engines import make_janus
    from janus_rt.bench.hf_baseline import build_hf_twin
    from janus_rt.engine import SamplingParams
    from janus_rt.checkpoint.weights import key_mapper

    cfg = architecture_config("tiny")
    model = build_random_model(cfg, torch.device("cpu"), torch.float32, seed=1)
    special = SpecialIds.for_vocab(cfg.llm.vocab_size)
    hf = build_hf_twin(model, special)
    ours = dict(model.named_parameters())
    map_key = key_mapper(dataclasses.replace(cfg, layout="hf"))
    checked = 0
    for key, theirs in hf.named_parameters():
        for t in map_key(key) or []:
            src = ours[t.param] if t.rows is None else ours[t.param][t.rows[0]:t.rows[1]]
            assert torch.equal(src.reshape(theirs.shape), theirs), key
            checked += 1
    assert checked >= len(ours)  # every janus-rt parameter reached (q/k/v rows count separately)
    assert hf.lm_head.weight.data_ptr() != hf.model.language_model.embed_tokens.weight.data_ptr()  # untied

    # same weights -> same greedy answer
    req = understanding_request(cfg, special, 16)
    m = make_janus(model, "torch", 1, 1024)
    try:
        ours_ids, _ = m.engine.submit_text(req.ids, req.pixel_values, -1, special.placeholder,
                                           SamplingParams(temperature=0.0, max_new_tokens=4)).result()
    finally:
        m.close()
    ids = torch.tensor([req.ids])
    theirs_ids = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=req.pixel_values,
                             max_new_tokens=4, min_new_tokens=4, do_sample=False)[0, len(req.ids):].tolist()
    assert ours_ids == theirs_ids


# ------------------------------------------------------------------------------------------------- CLI
def test_bench_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for needle in ("RANDOM weights", "MBU", "--arch", "--no-hf", "--hf-images", "JSON", "--arch tiny", "--arrivals",
                   "--rate", "--concurrency", "--arrival-kind", "--arrival-timeout", "p50/p95/p99", "alone"):
        assert needle in out, needle


def test_bench_tiny_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out_file = tmp_path / "result.json"
    code = main(["bench", "--arch", "tiny", "--images", "1", "--backends", "torch", "--text-batches", "1", "--no-hf",
                 "--text-tokens", "4", "--repeats", "1", "--out", str(out_file)])
    assert code == 0
    out = capsys.readouterr().out
    lines = out.rstrip("\n").split("\n")
    result = json.loads(lines[-1])
    assert {"schema", "date", "command", "versions", "card", "image", "text", "speedups", "targets", "notes"} <= set(result)
    assert result["command"].startswith("janus-rt bench --arch tiny --images 1 --backends torch")
    assert {"torch", "triton", "transformers", "janus_rt"} <= set(result["versions"])
    card = result["card"]
    assert card["kv_bytes_per_token_row"] == 2 * 2 * 4 * 16 * 4 and card["copy_gbps"] is None  # CPU: not measured
    (row,) = result["image"]
    assert (row["backend"], row["images"], row["steps"], row["decode_steps"]) == ("torch", 1, 576, 575)
    for key in ("prefill_ms", "decode_ms_per_step", "image_tokens_per_s", "images_per_s", "vq_ms_per_image"):
        assert row[key] > 0, key
    assert row["mbu_pct"] is None and row["peak_gb"] is None
    # end to end: prefill + all decode steps + the VQ decode, and the shares of the first and the last
    assert row["end_to_end_s"] == pytest.approx((row["total_ms"] + row["vq_ms_per_image"]) / 1e3)
    assert row["prefill_pct"] == pytest.approx(100 * row["prefill_ms"] / (row["end_to_end_s"] * 1e3))
    assert row["vq_pct"] == pytest.approx(100 * row["vq_ms_per_image"] / (row["end_to_end_s"] * 1e3))
    assert 0 < row["prefill_pct"] + row["vq_pct"] < 100 and "end-to-end s" in out
    (text,) = result["text"]
    assert (text["backend"], text["batch"], text["new_tokens"], text["decode_steps"]) == ("torch", 1, 4, 3)
    assert text["ttft_ms"] > 0 and text["decode_tokens_per_s"] > 0
    assert any("--no-hf" in n for n in result["notes"])
    assert "| backend" in out and "decode ms/step" in out and "TTFT ms" in out
    assert json.loads(out_file.read_text()) == result


def test_bench_cli_arrival_run_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    """Image rows of 1 and 2 images, a text batch of 2 sharing its steps, and an open-loop arrival run."""
    code = main(["bench", "--arch", "tiny", "--image-grid", str(GRID), "--images", "1,2", "--backends", "torch",
                 "--text-batches", "2", "--text-tokens", "3", "--repeats", "1", "--no-hf", "--arrivals", "3", "--rate",
                 "500", "--arrival-timeout", "120"])
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads(out.rstrip("\n").split("\n")[-1])
    assert result["schema"] == "janus-rt-bench/2"
    assert "--arrivals 3 --rate 500" in result["command"] and "--image-grid 6" in result["command"]
    assert [(r["images"], r["steps"], r["decode_steps"]) for r in result["image"]] == [(1, 36, 35), (2, 36, 35)]
    (text,) = result["text"]
    assert (text["batch"], text["decode_steps"]) == (2, 2)  # 2 requests, 3 tokens each: 2 shared decode steps
    (arr,) = result["arrivals"]
    assert ARRIVAL_FIELDS <= set(arr)
    assert (arr["backend"], arr["kind"], arr["mode"], arr["rate_rps"], arr["requests"]) == ("torch", "image", "open",
                                                                                            500.0, 3)
    assert arr["sent"] == arr["completed"] == arr["finished_requests"] == 3 and not arr["timed_out"]
    assert arr["images_per_s"] == arr["throughput"] > 0 and arr["throughput_unit"] == "img/s"
    assert "arrivals (3 image request(s)" in out and "vs 1 alone" in out and "| p50 s" in out


def test_bench_cli_refuses_inconsistent_arrival_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--arch", "tiny", "--rate", "2"]) == 2
    assert "add --arrivals N" in capsys.readouterr().err
    assert main(["bench", "--arch", "tiny", "--images", "none", "--text-batches", "none"]) == 2
    assert "without --arrivals" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # open and closed loop at once
        main(["bench", "--arrivals", "2", "--rate", "1", "--concurrency", "2"])
    assert e.value.code == 2


def test_backend_variants_name_fusions(capsys: pytest.CaptureFixture[str]) -> None:
    """triton[FUSIONS] labels pick the triton backend's fused kernels; anything else is refused by name."""
    from janus_rt.bench.engines import backend_variant
    from janus_rt.errors import InputError
    from janus_rt.backends.triton_ops import Fusions

    assert backend_variant("torch") == ("torch", None)
    assert backend_variant("triton[all]") == ("triton", Fusions(True, True, True))
    assert backend_variant("triton[silu+norm]") == ("triton", Fusions(norm=True, silu=True))
    with pytest.raises(InputError, match="only triton takes"):
        backend_variant("torch[all]")
    with pytest.raises(InputError, match="unknown fusion 'rope'"):
        backend_variant("triton[rope]")
    with pytest.raises(SystemExit) as e:
        main(["bench", "--arch", "tiny", "--backends", "triton,triton[rope]"])
    assert e.value.code == 2 and "unknown fusion 'rope'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ arrival run
@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 101])
def test_percentiles_match_numpy(n: int) -> None:
    latencies = list(np.random.default_rng(n).exponential(2.0, size=n))
    for q in (0, 1, 50, 90, 95, 99, 99.9, 100):
        assert percentile(latencies, q) == pytest.approx(float(np.percentile(latencies, q)), rel=1e-12, abs=1e-12)
    s = summarize(latencies)
    assert s["p50"] == pytest.approx(float(np.median(latencies)))
    assert (s["p95"], s["p99"]) == pytest.approx((np.percentile(latencies, 95), np.percentile(latencies, 99)))
    assert (s["min"], s["max"], s["mean"]) == pytest.approx((min(latencies), max(latencies), np.mean(latencies)))
    assert summarize([]) is None


def test_percentiles_of_known_latencies() -> None:
    xs = [1.0, 2.0, 3.0, 4.0, 10.0]  # sorted: positions (n-1)*q/100 = 2, 3.8, 3.96
    assert percentile(xs[::-1], 50) == 3.0
    assert percentile(xs, 95) == pytest.approx(4.0 + 0.8 * 6.0)
    assert percentile(xs, 99) == pytest.approx(4.0 + 0.96 * 6.0)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_arrival_spec_validates() -> None:
    assert ArrivalSpec(8).mode == "closed" and ArrivalSpec(8).in_flight == 8
    assert ArrivalSpec(8, concurrency=3).in_flight == 3 and ArrivalSpec(2, concurrency=5).in_flight == 2
    assert ArrivalSpec(8, rate=2.0).mode == "open" and ArrivalSpec(8, rate=2.0).in_flight == 8
    assert ArrivalSpec(4, kind="chat").rows_per_request == 1 and ArrivalSpec(4, images=3).rows_per_request == 6
    for bad in (dict(requests=0), dict(requests=2, kind="video"), dict(requests=2, rate=1.0, concurrency=1),
                dict(requests=2, rate=0.0), dict(requests=2, concurrency=0), dict(requests=2, timeout_s=0)):
        with pytest.raises(ValueError):
            ArrivalSpec(**bad)


@pytest.fixture(scope="module")
def tiny_grid():
    """(options, config, model, special ids): the tiny architecture with a 6x6 grid, fp32 on the CPU."""
    opts = BenchOptions(arch="tiny", image_grid=GRID, backends=("torch",), hf=False, repeats=1, text_tokens=5)
    cfg = bench_config(opts)
    model = build_random_model(cfg, torch.device("cpu"), torch.float32, seed=0)
    return opts, cfg, model, SpecialIds.for_vocab(cfg.llm.vocab_size)


def engine_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "janus-rt-engine" and t.is_alive())


def test_concurrent_image_arrivals_share_decode_steps(tiny_grid) -> None:
    opts, cfg, model, special = tiny_grid
    threads = engine_threads()
    row = measure_arrivals(model, "torch", ArrivalSpec(4, concurrency=4), cfg, opts, special)
    assert ARRIVAL_FIELDS <= set(row)
    assert (row["sent"], row["completed"], row["cancelled"], row["failed"], row["not_sent"]) == (4, 4, 0, 0, 0)
    assert row["solo"]["decode_steps"] == GRID * GRID - 1  # one image alone: 35 steps
    assert row["sequential_decode_steps"] == 4 * 35
    assert row["decode_steps"] < row["sequential_decode_steps"]  # they ran in the same steps
    assert 2 < row["peak_rows"] <= row["max_rows"] == 8  # more than one request's 2 rows in one step
    assert row["latency_s"]["p50"] <= row["latency_s"]["p95"] <= row["latency_s"]["p99"] <= row["latency_s"]["max"]
    assert row["ttft_s"] is None and row["tokens_per_s"] is None and row["images_per_s"] > 0
    assert row["warmup_batches"] == 3  # batches of 1, 2 and 4 requests
    assert engine_threads() == threads  # the run's engine was closed


def test_chat_arrivals_share_decode_steps_and_report_ttft(tiny_grid) -> None:
    opts, cfg, model, special = tiny_grid
    row = measure_arrivals(model, "torch", ArrivalSpec(3, kind="chat", rate=1000.0, new_tokens=5), cfg, opts, special)
    assert (row["kind"], row["mode"], row["completed"], row["throughput_unit"]) == ("chat", "open", 3, "tok/s")
    assert row["tokens_per_s"] == row["throughput"] > 0 and row["images_per_s"] is None
    assert row["solo"]["decode_steps"] == 4 and row["sequential_decode_steps"] == 12
    assert row["decode_steps"] < 12 and row["peak_rows"] >= 2
    assert row["ttft_s"]["p50"] <= row["latency_s"]["p50"] and row["solo"]["ttft_s"] <= row["solo"]["latency_s"]
    assert row["prompt_tokens"] == len(understanding_request(cfg, special, opts.text_prompt_tokens).ids)


def test_arrival_run_respects_its_count(tiny_grid) -> None:
    """A closed loop of 2 in flight sends exactly N requests, never more at once, and stops by itself."""
    opts, cfg, model, special = tiny_grid
    row = measure_arrivals(model, "torch", ArrivalSpec(5, concurrency=2), cfg, opts, special)
    assert (row["sent"], row["completed"], row["finished_requests"], row["not_sent"]) == (5, 5, 5, 0)
    assert row["peak_rows"] <= 4 and row["max_rows"] == 4  # 2 requests of 2 rows in flight at most
    assert not row["timed_out"] and row["decode_steps"] < row["sequential_decode_steps"]


def test_arrival_latency_can_include_the_vq_decode(tiny_grid) -> None:
    opts, cfg, model, special = tiny_grid
    row = measure_arrivals(model, "torch", ArrivalSpec(2, images=2, decode=True), cfg, opts, special)
    assert row["vq_decode_included"] and row["images_per_request"] == 2
    assert row["completed"] == 2 and row["peak_rows"] == row["max_rows"] == 8  # 2 requests of 2 images at once


def test_arrival_run_respects_its_time_bound(tiny_grid) -> None:
    """Open loop at 0.5 req/s with a 0.3 s bound: request 0 goes out, the others (due at 2, 4, 6, 8 s) never do;
    whatever is still running at the bound is cancelled, and the engine ends idle."""
    opts, cfg, model, special = tiny_grid
    row = measure_arrivals(model, "torch", ArrivalSpec(5, rate=0.5, timeout_s=0.3), cfg, opts, special)
    assert row["timed_out"] and row["sent"] == 1 and row["not_sent"] == 4
    assert row["completed"] + row["cancelled"] == 1 and row["failed"] == 0
    assert row["solo"]["decode_steps"] == 35  # the solo reference has its own bound


def test_run_bench_arrivals_only_renders_the_table(tiny_grid) -> None:
    from janus_rt.bench.report import render

    opts = BenchOptions(arch="tiny", image_grid=GRID, backends=("nope", "torch"), images=(), text_batches=(),
                        skip=("image", "text"), hf=False, repeats=1, arrivals=2, concurrency=2)
    result = run_bench(opts, log=lambda _: None)
    assert result["image"] == [] and result["text"] == []
    (row,) = result["arrivals"]  # on the first available backend
    assert row["backend"] == "torch" and row["completed"] == 2
    assert any("'nope' skipped" in n for n in result["notes"])
    out = render(result)
    assert "closed loop, 2 in flight" in out and "torch: 2 concurrent ->" in out
    assert json.loads(out.splitlines()[-1]) == result


def test_report_renders_a_gpu_result() -> None:
    """The GPU-only fields (bandwidth, MBU, VRAM, targets) render; the last line is the same JSON."""
    from janus_rt.bench.goals import targets
    from janus_rt.bench.report import render

    card = {"arch": "janus-1.3b", "variant": "Janus-1.3B / Janus-Pro-1B shape", "device": "cuda", "dtype": "bfloat16",
            "parameters": 2_089_000_000, "model_bytes": 4_178_000_000, "gpu": "NVIDIA H100 80GB HBM3",
            "gpu_memory_gb": 85.0, "copy_gbps": 3000.0, "datasheet_gbps": 3350.0,
            "image_step_weight_bytes": 2_550_415_360, "text_step_weight_bytes": 2_885_881_856,
            "kv_bytes_per_token_row": 196608, "one_image_step_bytes": 2.675e9, "one_image_step_floor_ms": 0.89,
            "one_image_floor_s": 0.51, "modes": {"triton": "graphs", "torch": "eager"}}
    img = dict(backend="triton", images=1, warmup_ms=2000.0, prefill_ms=5.0, decode_ms_per_step=1.1, image_tokens_per_s=900.0,
               images_per_s=1.6, mbu_pct=80.9, mbu_datasheet_pct=72.5, vq_ms_per_image=20.0, peak_gb=5.1)
    hf = dict(img, backend="transformers", prefill_ms=None, images_per_s=0.04, mbu_pct=2.0)
    txt = dict(backend="triton", batch=1, prompt_tokens=642, new_tokens=128, warmup_ms=900.0, ttft_ms=30.0,
               decode_ms_per_step=1.2, decode_tokens_per_s=833.0, mbu_pct=81.0, mbu_datasheet_pct=72.0, peak_gb=4.9)
    speed = speedups([img, hf], [txt])
    result = {"card": card, "versions": {"torch": "2.11", "cuda": "12.8", "triton": "3.6", "transformers": "5.17",
                                         "janus_rt": "0.1.0"},
              "image": [img, hf], "text": [txt], "speedups": speed,
              "targets": targets(BenchOptions(), card, [img, hf], [txt], speed), "notes": ["n"], "command": "janus-rt bench"}
    out = render(result)
    assert "NVIDIA H100 80GB HBM3" in out and "3,000 GB/s measured" in out and "80.9" in out
    assert "[   MET] triton: one image" in out and "speedup vs transformers: 40.0 x" in out
    assert "[   n/a] triton: 16 images" in out
    assert json.loads(out.splitlines()[-1]) == result


def test_variants_compare_to_triton_and_roofline_goals_render() -> None:
    """triton[...] rows get their ratios to the plain triton row of the same batch and weights; issue 9's goals
    are judged per triton backend (>= for MBU and img/s, <= for seconds) and only for a full-size bf16 GPU run."""
    from janus_rt.bench.report import render
    from janus_rt.bench.goals import roofline_targets
    from janus_rt.bench.variants import compare_variants

    def img(backend: str, n: int, ms: float, mbu: float, e2e: float, ips: float, weights: str | None = None) -> dict:
        row = dict(backend=backend, images=n, warmup_ms=1.0, prefill_ms=5.0, decode_ms_per_step=ms,
                   image_tokens_per_s=1.0, images_per_s=ips, mbu_pct=mbu, mbu_datasheet_pct=mbu,
                   vq_ms_per_image=10.0, peak_gb=5.0, end_to_end_s=e2e)
        return row if weights is None else dict(row, weights=weights)

    image = [img("triton", 1, 1.6, 56.0, 0.93, 1.07), img("triton[all]", 1, 1.2, 81.0, 0.71, 1.40),
             img("triton", 16, 2.3, 67.0, 1.4, 12.0), img("triton[all]", 16, 2.0, 75.0, 1.2, 13.5),
             img("triton[norm]", 4, 1.5, 60.0, 1.0, 4.0), img("torch", 1, 18.0, 5.0, 10.0, 0.1)]
    text = [dict(backend="triton[all]", batch=1, prompt_tokens=642, new_tokens=128, warmup_ms=1.0, ttft_ms=30.0,
                 decode_ms_per_step=1.3, decode_tokens_per_s=770.0, mbu_pct=77.9, mbu_datasheet_pct=70.0,
                 peak_gb=4.9)]
    compare_variants(image, "images")
    compare_variants(text, "batch")
    assert image[1]["ms_per_step_vs_triton"] == pytest.approx(1.2 / 1.6)
    assert image[3]["throughput_vs_triton"] == pytest.approx(13.5 / 12.0)
    assert image[4]["ms_per_step_vs_triton"] is None  # no plain row of 4 images
    assert "ms_per_step_vs_triton" not in image[0] and "ms_per_step_vs_triton" not in image[5]
    assert text[0]["ms_per_step_vs_triton"] is None
    card = {"dtype": "bfloat16", "gpu": "NVIDIA H100 80GB HBM3"}
    goals = roofline_targets("janus-1.3b", card, image, text, None)
    by = {(g["backend"], g["target"]): g for g in goals}
    assert by["triton[all]", "one image: MBU per decode step"]["met"] is True
    assert by["triton[all]", "one image: end to end (prefill + steps + VQ)"]["met"] is False  # 0.71 > 0.70
    assert by["triton", "one image: end to end (prefill + steps + VQ)"]["met"] is False
    assert by["triton[all]", "chat batch 1: decode MBU"]["met"] is False  # 77.9 < 78
    assert by["triton", "16 images: images/s"]["met"] is True  # 12.0 >= 12
    assert not any(g["backend"] == "torch" for g in goals)
    assert roofline_targets("janus-1.3b", card, image, text, 4) == []  # smoke grid
    assert roofline_targets("janus-1.3b", dict(card, gpu=None), image, text, None) == []
    assert [g["target"] for g in roofline_targets("janus-pro-7b", card, image, text, None)] == \
        ["one image: MBU per decode step"] * 2
    result = {"card": dict(card, arch="janus-1.3b", variant="v", device="cuda", parameters=1, model_bytes=1,
                           gpu_memory_gb=80.0, copy_gbps=3000.0, datasheet_gbps=3350.0, image_step_weight_bytes=1,
                           text_step_weight_bytes=1, kv_bytes_per_token_row=1, one_image_step_bytes=1.0,
                           one_image_step_floor_ms=0.9, one_image_floor_s=0.5, modes={}),
              "versions": {"torch": "2.11", "cuda": "12.8", "triton": "3.6", "transformers": "5.17",
                           "janus_rt": "0.1.0"},
              "image": image, "text": text, "speedups": [], "targets": [], "roofline_targets": goals, "notes": [],
              "command": "janus-rt bench"}
    out = render(result)
    assert "triton[all]            1 image(s)     ms/step  0.750x" in out
    assert "[MISSED] triton[all]: one image: end to end (prefill + steps + VQ): 0.71 s (goal <= 0.7)" in out
    assert "[   MET] triton[all]: one image: MBU per decode step: 81.00 % (goal >= 80)" in out
    assert json.loads(out.splitlines()[-1]) == result


def test_host_overhead_counts_every_decode_step(capsys: pytest.CaptureFixture[str]) -> None:
    """The null-backend loop runs each image request's decode steps (tokens - 1: prefill samples the first)."""
    from janus_rt.bench.host_overhead import main as host_main

    assert host_main(["--arch", "tiny", "--images", "1,3", "--requests", "2"]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    steps = architecture_config("tiny").image_tokens_per_image - 1
    assert [(r["images"], r["steps"]) for r in out["rows"]] == [(1, 2 * steps), (3, 2 * steps)]
    assert all(r["us_per_step"] > 0 for r in out["rows"])


# ------------------------------------------------------------------------------------------ profile_step
def test_profile_step_times_the_bucket_step(tiny_grid) -> None:
    """The triton step of a mixed bucket (1 image = 2 image rows, 1 text row), driven outside the engine after
    requests of that bucket built it: replayed and profiled. On CPU the kernels run in the Triton interpreter
    (about a second per step), so one step of each kind; on a GPU it times the captured graph."""
    from janus_rt.bench.profile_step import profile

    _, _, model, _ = tiny_grid
    threads = engine_threads()
    out = profile(model, images=1, text=1, steps=1, replays=1)
    assert out["bucket"] == [2, 1] and out["graph"] == torch.cuda.is_available()
    assert out["replayed_ms_per_step"] > 0 and out["kernel_ms_per_step"] > 0 and out["kernels"]
    assert engine_threads() == threads
