"""The `janus-rt` command line: help, demo, generate, chat, info and its error handling.

Commands run in-process through `janus_rt.cli.main` (output captured with capsys); one real subprocess call
proves the console script is installed. Outputs are compared with the library API on the same tiny checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

import janus_rt
from janus_rt.cli import main


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model's ops are too small to gain from threads; with 2 intra-op threads on a 2-core machine that
    is busy with anything else, a 576-step generation slows from ~2 s to minutes (threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tiny_official: Path) -> janus_rt.Janus:
    return janus_rt.load(tiny_official)


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "picture.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)).save(path)
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's own exits (--help, usage errors) included."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (code, out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("janus-rt: error: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ------------------------------------------------------------------------------------------------- help
def test_console_script_installed() -> None:
    exe = shutil.which("janus-rt")
    assert exe is not None, "the janus-rt console script is not on PATH (pip install -e .)"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: janus-rt")
    for command in ("generate", "chat", "info", "demo"):
        assert command in proc.stdout


HELP_MENTIONS = {
    "": ["generate", "chat", "info", "demo", "--model", "hub id"],
    "generate": ["--model", "--num-images", "--cfg-weight", "--seed", "--temperature", "--top-k", "--top-p",
                 "--out", "--chat-format", "--dtype", "--device", "prompt", "PNG files"],
    "chat": ["--model", "--image", "--max-new-tokens", "--chat-format", "--seed", "--temperature",
             "--system-prompt", "question", "Answer QUESTION"],
    "info": ["--model", "--json", "--dtype", "not loaded"],
    "demo": ["--out", "--device", "RANDOM"],
}


@pytest.mark.parametrize("command", list(HELP_MENTIONS), ids=[c or "top" for c in HELP_MENTIONS])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([command, "--help"] if command else ["--help"], capsys)
    assert code == 0, err
    assert out.startswith(f"usage: janus-rt {command}".rstrip())
    for option in HELP_MENTIONS[command]:
        assert option in out, option
    if command == "" or command == "demo":
        return
    # Each option's help states its default where it has one.
    if command == "generate":
        assert re.search(r"--cfg-weight CFG_WEIGHT\s+classifier-free guidance weight \(default 5\)", out)
    if command == "chat":
        assert re.search(r"--max-new-tokens MAX_NEW_TOKENS\s+answer length limit \(default 512\)", out)


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run([], capsys)
    assert code == 2 and out == ""
    assert "usage: janus-rt" in err and "COMMAND" in err


# ------------------------------------------------------------------------------------------------- demo
def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "demo"
    code, out, err = run(["demo", "--out", str(work)], capsys)
    assert code == 0, err
    assert "weights are RANDOM" in out
    printed = [Path(line.strip()) for line in out.splitlines() if line.strip().endswith(".png")]
    assert sorted(printed) == sorted(work.glob("images/*.png"))
    assert len(printed) == 2
    for path in printed:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (384, 384)
            assert len(np.unique(np.asarray(im))) > 1  # an image, not a blank
    assert (work / "tiny-janus" / "config.json").is_file()

    # A second run into the same folder reuses the checkpoint and redraws the same (seeded) images.
    first = [np.asarray(Image.open(path)) for path in printed]
    code, out, err = run(["demo", "--out", str(work)], capsys)
    assert code == 0, err
    assert "reused" in out
    for path, pixels in zip(printed, first):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)


def test_demo_refuses_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clash = tmp_path / "demo" / "tiny-janus"
    clash.mkdir(parents=True)
    (clash / "notes.txt").write_text("not a checkpoint")
    code, out, err = run(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"janus-rt: error: {clash} exists" in err and "--out" in err
    assert (clash / "notes.txt").read_text() == "not a checkpoint"


# --------------------------------------------------------------------------------------------- generate
def test_generate_matches_api(
    tiny_official: Path, tiny_model: janus_rt.Janus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run(
        ["generate", "--model", str(tiny_official), "a red fox", "-n", "2", "--seed", "3", "--out", str(out_dir)], capsys
    )
    assert code == 0, err
    paths = [Path(line) for line in out.splitlines()]
    assert paths == [out_dir / "a-red-fox-0.png", out_dir / "a-red-fox-1.png"]
    assert out == "".join(f"{p}\n" for p in paths)  # stdout holds exactly the paths (progress goes to stderr)
    assert sorted(out_dir.iterdir()) == paths  # no temp files left behind
    expected = tiny_model.generate_images("a red fox", num_images=2, seed=3).images  # cfg 5, temperature 1
    assert expected.shape[0] == 2 and not np.array_equal(expected[0], expected[1])
    for path, image in zip(paths, expected):
        with Image.open(path) as im:
            assert im.mode == "RGB"
            np.testing.assert_array_equal(np.asarray(im), image)


def test_generate_never_overwrites_earlier_images(tiny_official: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "out"
    argv = ["generate", "--model", str(tiny_official), "a red fox", "-n", "1", "--seed", "3", "--out", str(out_dir)]
    first = run(argv, capsys)
    second = run(argv[:-4] + ["--seed", "4", "--out", str(out_dir)], capsys)
    assert first[0] == second[0] == 0
    assert first[1].strip() == str(out_dir / "a-red-fox-0.png") and second[1].strip() == str(out_dir / "a-red-fox-1.png")
    with Image.open(out_dir / "a-red-fox-0.png") as a, Image.open(out_dir / "a-red-fox-1.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_generate_num_images_zero(tiny_official: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["generate", "--model", str(tiny_official), "a fox", "-n", "0", "--out", str(tmp_path / "o")], capsys)
    assert_clean_error(code, out, err, "--num-images", "got 0")
    assert not (tmp_path / "o").exists()


def test_generate_checks_num_images_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    # The model path is bogus: a num-images error proves the count is checked before any (slow) load.
    code, out, err = run(["generate", "--model", "/nonexistent/dir", "a fox", "-n", "-1"], capsys)
    assert_clean_error(code, out, err, "--num-images", "got -1")


@pytest.mark.parametrize(
    "argv, option, detail",
    [
        (["generate", "--model", "/nonexistent/dir", "a fox", "--cfg-weight", "-1"], "--cfg-weight", "got -1.0"),
        (["generate", "--model", "/nonexistent/dir", "a fox", "--temperature", "-0.5"], "--temperature", "got -0.5"),
        (["chat", "--model", "/nonexistent/dir", "hi", "--top-p", "1.5"], "--top-p", "got 1.5"),
        (["chat", "--model", "/nonexistent/dir", "hi", "--top-k", "-3"], "--top-k", "got -3"),
    ],
)
def test_sampling_options_checked_before_loading(argv: list[str], option: str, detail: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # The model path is bogus: an error naming the option proves the API's checks ran before any load.
    code, out, err = run(argv, capsys)
    assert_clean_error(code, out, err, option, detail)


# ------------------------------------------------------------------------------------------------- chat
def test_chat_matches_api(
    tiny_official: Path, tiny_model: janus_rt.Janus, picture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        ["chat", "--model", str(tiny_official), "--image", str(picture), "What is this?", "--max-new-tokens", "8"],
        capsys,
    )
    assert code == 0, err
    answer = tiny_model.chat("What is this?", image=str(picture), max_new_tokens=8)
    assert len(answer.token_ids) > 0
    assert out == answer.text + "\n"


def test_chat_missing_image(tiny_official: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jpg"
    code, out, err = run(["chat", "--model", str(tiny_official), "--image", str(missing), "What is this?"], capsys)
    assert_clean_error(code, out, err, str(missing), "--image")


def test_chat_max_new_tokens_zero(tiny_official: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["chat", "--model", str(tiny_official), "Hi", "--max-new-tokens", "0"], capsys)
    assert_clean_error(code, out, err, "--max-new-tokens", "got 0")


# ------------------------------------------------------------------------------------------------- info
def test_info_text(tiny_official: Path, tiny_model: janus_rt.Janus, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["info", "--model", str(tiny_official)], capsys)
    assert code == 0, err
    parameters = tiny_model.info()["parameters"]
    assert parameters > 1_000_000
    match = re.search(r"^parameters\s+([\d,]+) \(", out, flags=re.MULTILINE)
    assert match is not None, out
    assert match.group(1) == f"{parameters:,}"
    assert re.search(r"^checkpoint\s+model\.safetensors \(float32, ", out, flags=re.MULTILINE), out


def test_info_json(tiny_official: Path, tiny_model: janus_rt.Janus, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["info", "--model", str(tiny_official), "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert {"variant", "parameters", "bytes", "llm", "checkpoint"} <= set(info)
    parameters = tiny_model.info()["parameters"]
    assert info["parameters"] == parameters
    assert info["bytes"] == 4 * parameters  # stored as float32
    assert info["llm"]["hidden"] == tiny_model.config.llm.hidden_size
    assert info["checkpoint"]["files"] == ["model.safetensors"]
    assert info["checkpoint"]["file_bytes"] == (tiny_official / "model.safetensors").stat().st_size

    code, out, err = run(["info", "--model", str(tiny_official), "--json", "--dtype", "bfloat16"], capsys)
    assert code == 0, err
    assert json.loads(out)["bytes"] == 2 * parameters


def test_info_closed_stdout_is_quiet(
    tiny_official: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`janus-rt info --json | head -1`: the reader goes away; no BrokenPipeError traceback."""

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["info", "--model", str(tiny_official), "--json"]) == 1
    monkeypatch.undo()
    assert "Traceback" not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "argv",
    [
        ["info", "--model", "/nonexistent/dir"],
        ["generate", "--model", "/nonexistent/dir", "a fox"],
        ["chat", "--model", "/nonexistent/dir", "Hi"],
    ],
    ids=["info", "generate", "chat"],
)
def test_missing_model_dir(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert_clean_error(code, out, err, "/nonexistent/dir", "config.json")


def test_hub_id_offline(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(["info", "--model", "someorg/some-model"], capsys)
    assert_clean_error(code, out, err, "someorg/some-model", "hf download someorg/some-model", "--model DIR")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return  # the message then says to install it or download first (checked above)
    assert "offline" in err and "HF_HUB_OFFLINE" in err
