"""`janus-rt bench` on a machine without a GPU: the triton backend at a real shape is skipped with a note (an
explicit --device cpu runs it with a warning), and a CPU model too large for the host memory is refused before
anything is allocated (bench/feasibility.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from janus_rt.bench.architectures import architecture_config
from janus_rt.bench.feasibility import backends_for_device, check_host_memory, host_bytes_available, parameter_count
from janus_rt.cli.main import main
from janus_rt.errors import InputError

CPU = torch.device("cpu")


def test_triton_is_skipped_on_a_cpu_unless_tiny_or_asked_for() -> None:
    kept, notes = backends_for_device(("triton", "torch", "triton[all]"), CPU, device_given=False, arch="janus-1.3b")
    assert kept == ("torch",)
    assert len(notes) == 2 and all("skipped" in n and "--device cpu" in n and "--arch tiny" in n for n in notes)
    kept, notes = backends_for_device(("triton", "torch"), CPU, device_given=True, arch="janus-1.3b")
    assert kept == ("triton", "torch") and len(notes) == 1 and "hours" in notes[0] and "skipped" not in notes[0]
    assert backends_for_device(("triton",), CPU, device_given=False, arch="tiny") == (("triton",), [])
    assert backends_for_device(("triton",), torch.device("cuda"), device_given=False, arch="janus-1.3b") == (
        ("triton",), [])


def test_bench_on_a_cpu_skips_the_1_3b_triton_row_without_building_it(capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    """The device script's perf mode on a CPU machine: a note and the card, in seconds (no 8 GB model built)."""
    if torch.cuda.is_available():
        pytest.skip("the CPU path")

    def no_build(*args, **kwargs):
        raise AssertionError("the model must not be built when nothing runs")

    monkeypatch.setattr("janus_rt.bench.harness.build_random_model", no_build)
    out_file = tmp_path / "r.json"
    code = main(["bench", "--arch", "janus-1.3b", "--images", "1,16", "--backends", "triton", "--text-batches", "1",
                 "--no-hf", "--repeats", "1", "--out", str(out_file)])
    assert code == 0
    result = json.loads(out_file.read_text())
    assert result["image"] == [] and result["text"] == []
    assert any("backend 'triton' skipped" in n for n in result["notes"])
    assert any("nothing was run" in n for n in result["notes"])
    assert result["card"]["parameters"] == parameter_count(architecture_config("janus-1.3b"))
    assert "--backends triton" in result["command"]  # the command as given, not what was left of it


def test_parameter_count_is_the_architecture_s() -> None:
    # Janus-Pro-7B: 7.38 B parameters (README); the count allocates nothing (meta device)
    assert parameter_count(architecture_config("janus-pro-7b")) == pytest.approx(7.38e9, rel=0.005)


def test_host_memory_check_refuses_with_what_to_do() -> None:
    params = parameter_count(architecture_config("janus-pro-7b"))
    with pytest.raises(InputError) as e:
        check_host_memory("janus-pro-7b", params, torch.float32, copies=1, available=int(24e9))
    message = str(e.value)
    assert "29.5 GB" in message and "24.0 GB available" in message and "--dtype bf16 (14.8 GB)" in message
    with pytest.raises(InputError, match="--no-hf drops it"):
        check_host_memory("janus-pro-7b", params, torch.bfloat16, copies=2, available=int(24e9))
    check_host_memory("janus-pro-7b", params, torch.bfloat16, copies=1, available=int(24e9))  # 14.8 GB fits
    check_host_memory("janus-pro-7b", params, torch.float32, copies=1, available=None)  # unknown: no refusal


def test_host_bytes_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n")
    assert host_bytes_available(meminfo) == 20000000 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert host_bytes_available(meminfo) is None
    assert host_bytes_available(tmp_path / "absent") is None


def test_bench_cli_refuses_a_model_the_host_cannot_hold(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("the CPU path")
    monkeypatch.setattr("janus_rt.bench.harness.host_bytes_available", lambda: int(8e9))
    code = main(["bench", "--arch", "janus-pro-7b", "--images", "1", "--backends", "torch", "--text-batches", "none",
                 "--no-hf", "--dtype", "fp32"])
    assert code == 2
    err = capsys.readouterr().err
    assert "29.5 GB" in err and "8.0 GB available" in err and "Traceback" not in err
