"""CLI hardening (issue 20, items 7, 10, 11, 12): Ctrl-C, `--out` failures, a missing relative `--model`, file
modes, and the small items of 12. Each test failed before its fix (or proves an item that already held).

Commands run in-process through `janus_rt.cli.main.main` (tests/test_cli.py's `run` helper, captured with capsys);
Ctrl-C is sent to a real subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

import janus_rt.cli.common as cli_common
from janus_rt.checkpoint.tiny import TinySpec, write_tiny_checkpoint
from janus_rt.files import staged_folder
from test_cli import run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """As in tests/test_cli.py: the tiny model's ops gain nothing from threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def no_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a model fails the test: the refusal must come before the slow work."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the refusal")
    monkeypatch.setattr(cli_common, "load", refuse)


@pytest.fixture()
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    yield
    os.umask(before)


def default_sigint() -> None:
    """In a child before exec: Ctrl-C at its default, as in a terminal. A suite started in the background by a
    non-interactive shell ignores SIGINT, and an ignored signal stays ignored across exec (Python then installs no
    KeyboardInterrupt handler): the child would finish its work and exit 0 (seen once in a backgrounded fresh run)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("janus-rt: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ 7. Ctrl-C
@pytest.mark.subprocess
def test_ctrl_c_during_demo_generation_exits_130_with_one_line(tmp_path: Path) -> None:
    """SIGINT while the engine thread generates: was "terminate called without an active exception", exit 134. (The
    random demo: it chats first, then generates 576 steps, so the "chat" line marks the generation's start.)"""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "janus_rt.cli.main", "demo", "--random"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, preexec_fn=default_sigint)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the "chat" line comes just before the 576-step generation starts
            line = proc.stdout.readline()
            if not line or line.startswith("chat"):
                break
        assert line.startswith("chat"), line
        time.sleep(0.5)  # inside the generation, the engine thread busy in torch's C++ code
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    assert err == "janus-rt: interrupted\n", err
    assert list(tmp.iterdir()) == []  # the demo's temp folder was removed


def test_ctrl_c_while_the_subcommand_imports(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGINT during the lazy import of the subcommand's module: was a traceback."""
    import janus_rt.cli.main as cli_main

    def interrupted(name: str) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(cli_main.importlib, "import_module", interrupted)
    code, out, err = run(["demo"], capsys)
    assert (code, out, err) == (130, "", "janus-rt: interrupted\n")


def test_models_are_closed_when_the_command_is_interrupted(monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    closed: list[str] = []

    def interrupted(args: argparse.Namespace) -> int:
        cli_common.opened(args, SimpleNamespace(close=lambda: closed.append("model")))  # a model the command loaded
        raise KeyboardInterrupt
    monkeypatch.setattr("janus_rt.cli.info.run_info", interrupted)
    code, _, err = run(["info", "--model", "x"], capsys)
    assert (code, err, closed) == (130, "janus-rt: interrupted\n", ["model"])


# ------------------------------------------------------------------------------------------- 10. --out
def test_out_that_cannot_be_created_is_refused_before_loading(tiny_official: Path, no_load: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`--out /proc/x`: the folder checks passed (/proc is writable to root), the error came after generating."""
    code, out, err = run(["generate", "--model", str(tiny_official), "a fox", "--out", "/proc/x"], capsys)
    assert code == 2 and out == ""
    assert "--out /proc/x: cannot write there" in one_error_line(err)


def test_out_probe_file_is_removed(tmp_path: Path) -> None:
    cli_common.check_out_folder(tmp_path / "new" / "images")
    assert list((tmp_path / "new" / "images").iterdir()) == []


def test_full_disk_reports_the_saved_images(tiny_official: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC on the second PNG: was a traceback, the first path unreported."""
    save = Image.Image.save
    calls = []

    def second_fails(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        calls.append(fp)
        if len(calls) == 2:
            Path(fp).write_bytes(b"half a png")
            raise OSError(errno.ENOSPC, "No space left on device")
        save(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", second_fails)
    out_dir = tmp_path / "out"
    code, out, err = run(["generate", "--model", str(tiny_official), "a fox", "-n", "2", "--seed", "0",
                          "--out", str(out_dir)], capsys)
    first = out_dir / "a-fox-0.png"
    assert code == 1, err
    assert out.splitlines() == [str(first)]
    assert "after 1 of 2: the disk is full" in one_error_line(err)
    assert f"saved before the error: {first}" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["a-fox-0.png"]  # no half-written file, no temp file


# --------------------------------------------------------------------------- 11. a relative --model not here
def test_relative_model_not_here_says_so_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def unreachable(**kwargs: object) -> None:
        raise OSError("Cannot reach the hub.\nRequest id: 1234\nhttps://huggingface.co/api/models/demo/tiny-janus")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["info", "--model", "demo/tiny-janus"], capsys)
    line = one_error_line(err)
    assert code == 2 and err == line + "\n"
    assert line.startswith(f"janus-rt: error: demo/tiny-janus: no such folder here ({tmp_path})")
    assert "hub (OSError: Cannot reach the hub.)" in line and "Request id" not in line


# ------------------------------------------------------------------------------- 12. modes, texts, hints
def test_demo_checkpoint_files_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    """safetensors writes its file 0600: the demo's model.safetensors was private in an ordinary folder."""
    ckpt = tmp_path / "tiny"
    write_tiny_checkpoint(ckpt, TinySpec())
    assert stat.S_IMODE((tmp_path / "tiny").stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in ckpt.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_quantized_checkpoint_files_follow_the_umask(tiny_official: Path, tmp_path: Path, umask_022: None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "int8"
    code, _, err = run(["quantize", "--model", str(tiny_official), "--out", str(out_dir), "--format", "int8",
                        "--device", "cpu"], capsys)
    assert code == 0, err
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out_dir.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_staged_folder_widens_private_files_only(tmp_path: Path, umask_022: None) -> None:
    with staged_folder(tmp_path / "out") as staging:
        (staging / "private").write_bytes(b"")
        (staging / "private").chmod(0o600)
        (staging / "script").write_bytes(b"")
        (staging / "script").chmod(0o700)
        (staging / "shared").write_bytes(b"")
        (staging / "shared").chmod(0o640)  # not private: left as the writer chose
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    assert modes == {"private": 0o644, "script": 0o755, "shared": 0o640}


def test_info_parameter_count_does_not_read_as_bytes(tiny_official: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was "parameters   3,628,451 (0.00 B)"."""
    code, out, err = run(["info", "--model", str(tiny_official)], capsys)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith("parameters"))
    assert line.endswith(" million)") and " B)" not in line, line
    assert "0.00 GiB" not in out and "0.01 GiB" not in out, out


def test_chat_answer_control_bytes_are_escaped(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A model's answer with ESC / BEL bytes went to the terminal raw."""
    job = SimpleNamespace(result=lambda progress: SimpleNamespace(text="red\x1b[2J fox\x07\nline 2\tend"))
    model = SimpleNamespace(submit_prepared=lambda prepared: job, request_context=None, close=lambda: None)
    monkeypatch.setattr("janus_rt.cli.inference.load_model", lambda args, config: model)
    monkeypatch.setattr("janus_rt.cli.inference.prepare_chat", lambda *args, **kwargs: None)
    code, out, err = run(["chat", "--model", "unused", "--device", "cpu", "What is it?"], capsys)
    assert code == 0, err
    assert out == "red\\x1b[2J fox\\x07\nline 2\tend\n"


def test_max_rows_is_spelled_as_the_flag(tiny_official: Path, tmp_path: Path, no_load: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Was "one image needs 2 KV rows but the engine has max_rows=1; raise max_rows", after loading."""
    code, _, err = run(["generate", "--model", str(tiny_official), "a fox", "--max-rows", "1",
                        "--out", str(tmp_path / "o")], capsys)
    line = one_error_line(err)
    assert code == 2 and "--max-rows 1" in line and "max_rows" not in line, line


@pytest.mark.parametrize("flag, value", [("--max-rows", "0"), ("--max-seq-len", "-1")])
def test_engine_flags_refused_in_flag_names(flag: str, value: str, tiny_official: Path, no_load: None,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Already held (janus_rt.spelling.CLI): a bad engine size names the flag, never the keyword."""
    code, _, err = run(["chat", "--model", str(tiny_official), "Hi", flag, value], capsys)
    line = one_error_line(err)
    assert code == 2 and flag in line and flag.lstrip("-").replace("-", "_") not in line, line


def test_too_long_image_prompt_states_the_largest_that_fits(tiny_official: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Already held (runtime/engine/capacity.py): 600 slots - 576 image tokens + 1 = 25 tokens at most."""
    code, _, err = run(["generate", "--model", str(tiny_official), "fox " * 60, "--max-seq-len", "600",
                        "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "shorten the prompt (to at most 25 tokens)" in one_error_line(err)


def test_too_long_chat_prompt_states_the_largest_that_fits(tiny_official: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 'no room for an answer' branch said only "shorten the prompt"."""
    code, _, err = run(["chat", "--model", str(tiny_official), "fox " * 200, "--max-seq-len", "100"], capsys)
    assert code == 2 and "shorten the prompt (to at most 100 tokens, images included)" in one_error_line(err)


def test_export_folder_on_the_torch_backend_hints_at_onnxruntime(tmp_path: Path, no_load: None,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    export_dir = tmp_path / "export"
    export_dir.mkdir()
    (export_dir / "manifest.json").write_text("{}")
    code, _, err = run(["chat", "--model", str(export_dir), "Hi", "--device", "cpu"], capsys)
    assert code == 2 and "add --backend onnxruntime" in one_error_line(err)


def test_providers_fall_back_to_the_cpu_provider_they_list() -> None:
    """`--providers CUDAExecutionProvider,CPUExecutionProvider` on a CPU-only onnxruntime was refused."""
    ort = pytest.importorskip("onnxruntime")
    from janus_rt.export.ort_engine import resolve_providers
    if "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available():
        pytest.skip("CUDA is usable here: both providers are kept")
    assert resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], None) == ["CPUExecutionProvider"]


def test_gitignore_covers_demo_and_eval_quant_outputs() -> None:
    lines = (REPO / ".gitignore").read_text().splitlines()
    assert "demo/" in lines and "eval-quant-*/" in lines


def test_eval_quant_measurement_shows_progress(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The reference and quantized measurements ran for minutes without a sign of life."""
    from janus_rt.quant import eval_measure
    from janus_rt.quant.eval_inputs import EvalSettings, PromptSet

    def generate_images(chunk: list[str], cfg_weight: float, temperature: float = 1.0, seed: int = 0):
        return SimpleNamespace(tokens=torch.zeros(len(chunk), 4, dtype=torch.long),
                               images=np.zeros((len(chunk), 2, 2, 3), dtype=np.uint8))
    model = SimpleNamespace(step_backend=SimpleNamespace(describe_mode=lambda: "fake"),
                            config=SimpleNamespace(image_tokens_per_image=4), generate_images=generate_images,
                            chat=lambda qs, **kw: [SimpleNamespace(token_ids=[1], finished=True) for _ in qs],
                            tokenizer=SimpleNamespace(special=SimpleNamespace(eos=0)))
    monkeypatch.setattr(eval_measure, "teacher_forced_image_logits", lambda *a: torch.zeros(4, 8))
    monkeypatch.setattr(eval_measure, "teacher_forced_text_logits", lambda *a: torch.zeros(2, 8))
    prompts = PromptSet(image_prompts=("a fox",), chat_questions=("why?",))
    reference = eval_measure.measure_reference(model, prompts, EvalSettings(image_tokens=4), progress=True)
    eval_measure.compare(reference, model, progress=True)
    err = capsys.readouterr().err
    assert "reference" in err and "quantized" in err and "/5 " in err, err


def test_bench_serve_level_shows_progress(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`bench-serve --kind image` was silent for minutes per level."""
    pytest.importorskip("httpx")
    from janus_rt.bench import serve_load

    async def send_one(client: object, spec: object, index: int) -> serve_load.Outcome:
        return serve_load.Outcome("ok", 0.01, images=1)
    monkeypatch.setattr(serve_load, "send_one", send_one)
    spec = serve_load.LoadSpec(url="http://127.0.0.1:9", requests=3)
    level = asyncio.run(serve_load.run_level(spec, 2, progress=True))
    assert level["ok"] == 3
    err = capsys.readouterr().err
    assert "concurrency 2" in err and "/3 " in err, err


def test_ctrl_c_while_janus_rt_itself_imports(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """SIGINT while `janus_rt` (torch) still imports, before any code of the package runs: was Python's 40-line
    traceback. The console command starts in `janus_rt_entry`, outside the package, which catches it."""
    import importlib.abc

    import janus_rt_entry

    class InterruptedImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "janus_rt.cli.main":
                raise KeyboardInterrupt  # as if Ctrl-C landed inside this import
            return None

    monkeypatch.delitem(sys.modules, "janus_rt.cli.main", raising=False)
    monkeypatch.setattr(sys, "meta_path", [InterruptedImport(), *sys.meta_path])
    assert janus_rt_entry.main() == 130
    out, err = capsys.readouterr()
    assert (out, err) == ("", "janus-rt: interrupted\n")


def test_the_console_command_starts_outside_the_package() -> None:
    """`janus-rt` is `janus_rt_entry:main` (so the catch above is what a user's Ctrl-C meets)."""
    from importlib.metadata import entry_points

    (command,) = [e for e in entry_points(group="console_scripts") if e.name == "janus-rt"]
    assert command.value == "janus_rt_entry:main"
