"""`janus-rt bench --cold-start`: new process -> load -> first image, with a cold and a warm disk cache.

One CPU smoke run through the real CLI entry (tiny architecture, 6x6 image-token grid, torch backend, two real
child processes) is shared by the checks of the rows, the table and the JSON. No time is asserted, only that the
times are there, positive and finite, and consistent with one another (total >= its parts, first - warm). The
failure paths (a child that exits 1, one that runs over its bound, one that prints no result) use stand-in
children (`cold_start.child_command` replaced), so they take no time; the goal line is checked on made-up GPU
rows.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from janus_rt.bench import cold_start
from janus_rt.bench.goals import cold_start_targets
from janus_rt.bench.options import BenchOptions
from janus_rt.cli.main import main

pytestmark = pytest.mark.subprocess

SMOKE = ["bench", "--arch", "tiny", "--image-grid", "6", "--images", "none", "--text-batches", "none", "--no-hf",
         "--backends", "torch", "--repeats", "1"]
TIMES = ("startup_s", "import_s", "load_s", "first_image_s", "first_tokens_s", "first_vq_s", "warm_image_s",
         "warm_tokens_s", "warm_vq_s", "total_s", "process_s")


def _run(argv: list[str]) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    return code, buf.getvalue()


def _last_json(out: str) -> dict:
    return json.loads(out.rstrip("\n").split("\n")[-1])


def _table(out: str, title: str) -> list[list[str]]:
    """The body rows (cells) of the pipe table printed under the line starting with `title`."""
    lines = out.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 3:]:  # title, header, separator
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    """(printed report, its JSON last line, the --out file) of one `janus-rt bench --cold-start` CPU smoke run."""
    out_file = tmp_path_factory.mktemp("bench-cold") / "result.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the children get the parent's thread count (--threads)
    try:
        code, out = _run([*SMOKE, "--cold-start", "--cold-start-timeout", "300", "--out", str(out_file)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return out, _last_json(out), out_file


def test_both_rows_with_positive_finite_times(cold_run) -> None:
    _, result, _ = cold_run
    rows = result["cold_start"]
    assert [(r["backend"], r["cache"]) for r in rows] == [("torch", "cold disk"), ("torch", "warm disk")]
    for r in rows:
        for key in TIMES:
            value = r[key]
            assert isinstance(value, float) and math.isfinite(value), (r["cache"], key, value)
            assert value > 0 or (key == "startup_s" and value >= 0), (r["cache"], key, value)
        assert r["mode"].startswith("torch")


def test_times_are_consistent(cold_run) -> None:
    _, result, _ = cold_run
    for r in result["cold_start"]:
        assert r["first_minus_warm_s"] == r["first_image_s"] - r["warm_image_s"]
        assert r["first_image_s"] == pytest.approx(r["first_tokens_s"] + r["first_vq_s"])
        assert r["warm_image_s"] == pytest.approx(r["warm_tokens_s"] + r["warm_vq_s"])
        assert r["total_s"] >= r["first_image_s"]
        assert r["total_s"] >= r["startup_s"] + r["import_s"] + r["load_s"] + r["first_image_s"] - 1e-6
        assert r["process_s"] >= r["total_s"] - r["startup_s"] + r["warm_image_s"] - 1e-3  # spawn -> exit covers it


def test_each_child_ran_in_its_own_process_with_the_cache_env(cold_run) -> None:
    _, result, _ = cold_run
    cold, warm = result["cold_start"]
    assert cold["pid"] != warm["pid"] and os.getpid() not in (cold["pid"], warm["pid"])
    assert cold["cache_dir"] and cold["cache_dir"] == warm["cache_dir"]  # the warm run reuses what the cold one left
    assert Path(cold["cache_dir"]).name.startswith("janus-rt-cold-start-torch-")
    assert cold["triton_cache_dir"] == warm["triton_cache_dir"] == str(Path(cold["cache_dir"]) / "triton")
    assert cold["cache_dir"] != os.environ.get("JANUS_RT_CACHE_DIR")
    assert not Path(cold["cache_dir"]).exists()  # removed afterwards
    assert all(isinstance(r["cache_files_after"], int) and r["cache_files_after"] >= 0 for r in (cold, warm))


def test_table_json_and_notes(cold_run) -> None:
    out, result, out_file = cold_run
    assert out.split("\n")[0].startswith("janus-rt bench  tiny")
    body = _table(out, "cold start (")
    assert [row[:2] for row in body] == [["torch", "cold disk"], ["torch", "warm disk"]]
    header = next(line for line in out.split("\n") if line.startswith("| backend") and "first image s" in line)
    for col in ("import s", "load s", "first image s", "warm image s", "first - warm s", "total s"):
        assert col in header, col
    for row, r in zip(body, result["cold_start"]):
        assert row[6] == f"{r['first_minus_warm_s']:,.2f}" and row[7] == f"{r['total_s']:,.2f}"
    assert result["image"] == [] and result["text"] == []
    assert result["cold_start_targets"] == []  # CPU, tiny: the goal does not apply
    assert "--cold-start --cold-start-timeout 300" in result["command"]
    assert result["options"]["cold_start"] is True
    assert any("cold start on a CPU is a smoke test" in n for n in result["notes"])
    assert any("JANUS_RT_CACHE_DIR" in n and "TRITON_CACHE_DIR" in n for n in result["notes"])
    assert json.loads(out_file.read_text()) == result


# ------------------------------------------------------------------------------------------- failures
def _stand_in(monkeypatch: pytest.MonkeyPatch, code: str) -> list[list[str]]:
    """Replace the child by `python -c code`; returns the argument lists the parent passed."""
    calls: list[list[str]] = []

    def command(args: list[str]) -> list[str]:
        calls.append(list(args))
        return [sys.executable, "-c", code]

    monkeypatch.setattr(cold_start, "child_command", command)
    return calls


def test_a_failing_child_becomes_a_note(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = tmp_path / "env.txt"
    calls = _stand_in(monkeypatch, f"import os, sys; open({str(seen)!r}, 'w').write(os.environ['JANUS_RT_CACHE_DIR'] "
                                   "+ '|' + os.environ['TRITON_CACHE_DIR']); sys.stderr.write('boom'); sys.exit(1)")
    code, out = _run([*SMOKE, "--cold-start"])
    assert code == 0
    result = _last_json(out)
    assert result["cold_start"] == [] and result["cold_start_targets"] == []
    assert len(calls) == 1  # the warm run is skipped after a failed cold run
    assert {"--arch", "tiny", "--backend", "torch", "--image-grid", "6", "--spawned-at"} <= set(calls[0])
    assert any("cold start of 'torch' (cold disk) failed: exited with code 1" in n and "boom" in n
               for n in result["notes"])
    assert any("(warm disk) skipped" in n for n in result["notes"])
    cache_dir, triton_dir = seen.read_text().split("|")
    assert triton_dir == str(Path(cache_dir) / "triton")
    assert not Path(cache_dir).exists()  # removed even though the child failed
    assert "no cold-start run succeeded" in out


def test_a_child_over_its_bound_is_killed_and_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, "import time; time.sleep(60)")
    notes: list[str] = []
    opts = BenchOptions(arch="tiny", backends=("torch",), cold_start=True, cold_start_timeout=0.5)
    rows = cold_start.run_cold_start(opts, torch.device("cpu"), torch.float32, notes, lambda _: None)
    assert rows == []
    assert any("(cold disk) failed: timed out after 0.5 s" in n for n in notes)


def test_a_child_without_a_result_line_is_noted(monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(monkeypatch, "print('hello'); print('{\"not\": \"ours\"}')")
    notes: list[str] = []
    opts = BenchOptions(arch="tiny", backends=("torch", "triton"), cold_start=True)
    rows = cold_start.run_cold_start(opts, torch.device("cpu"), torch.float32, notes, lambda _: None)
    assert rows == []
    assert sum("printed no result line" in n for n in notes) == 2  # each backend tried, each noted


# ------------------------------------------------------------------------------------------- the goal
def _row(backend: str, cache: str, first: float, warm: float) -> dict:
    return {"backend": backend, "cache": cache, "import_s": 3.0, "load_s": 1.5, "first_image_s": first,
            "warm_image_s": warm, "first_minus_warm_s": first - warm, "total_s": 4.6 + first, "process_s": 6.0 + first,
            "cache_files_after": 12}


def test_goal_applies_on_a_gpu_to_janus_1_3b_bf16() -> None:
    from janus_rt.bench.report import format_cold_start

    card = {"dtype": "bfloat16", "gpu": "NVIDIA H200"}
    rows = [_row("triton", "cold disk", 9.0, 0.6), _row("triton", "warm disk", 1.9, 0.6),
            _row("torch", "cold disk", 12.0, 9.0), _row("torch", "warm disk", 12.5, 9.0)]
    opts = BenchOptions(arch="janus-1.3b", cold_start=True)
    (goal,) = cold_start_targets(opts, card, rows)
    assert (goal["backend"], goal["unit"], goal["goal"], goal["met"]) == ("triton", "s", 2.0, True)
    assert goal["value"] == pytest.approx(1.3)
    out = format_cold_start(rows, [goal])
    assert "[   MET] triton: warm-disk cold start: first image - warm image: 1.30 s (goal <= 2 s)" in out
    assert "| triton  | warm disk |" in out

    slow = [_row("triton", "warm disk", 3.0, 0.6)]
    assert cold_start_targets(opts, card, slow)[0]["met"] is False
    failed = cold_start_targets(opts, card, [_row("triton", "cold disk", 9.0, 0.6)])
    assert failed[0]["value"] is None and failed[0]["met"] is None  # no warm-disk row: n/a
    assert "[   n/a]" in format_cold_start([], failed)

    assert cold_start_targets(BenchOptions(arch="janus-pro-7b"), card, rows) == []
    assert cold_start_targets(opts, {"dtype": "float32", "gpu": None}, rows) == []
    assert cold_start_targets(BenchOptions(arch="janus-1.3b", image_grid=6), card, rows) == []


# ------------------------------------------------------------------------------------------------ CLI
def test_help_and_flag_checks(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--cold-start" in out and "--cold-start-timeout" in out and "warm disk" in out
    assert main(["bench", "--arch", "tiny", "--cold-start", "--cold-start-timeout", "0"]) == 2
    assert "--cold-start-timeout" in capsys.readouterr().err
    assert main(["bench", "--arch", "tiny", "--images", "none", "--text-batches", "none"]) == 2  # still refused


def test_without_the_flag_no_cold_start_section() -> None:
    code, out = _run([*SMOKE[:5], "--images", "1", "--text-batches", "none", "--no-hf", "--backends", "torch",
                      "--repeats", "1"])
    assert code == 0
    result = _last_json(out)
    assert "cold_start" not in result and "cold_start_targets" not in result
    assert "cold start" not in out and "--cold-start" not in result["command"]
