"""The `janus-rt` command line: help, demo, generate, chat, info and its error handling.

Commands run in-process through `janus_rt.cli.main.main` (output captured with capsys); one real subprocess call
proves the console script is installed. Outputs are compared with the library API on the same tiny checkpoint.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

import janus_rt
from janus_rt.cli.main import main


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The tiny model's ops are too small to gain from threads; with 2 intra-op threads on a 2-core machine that
    is busy with anything else, a 576-step generation slows from ~2 s to minutes (threads wait on each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_model(tiny_official: Path) -> Iterator[janus_rt.Janus]:
    """The module's own model: a test patches its backend (the session's `torch_model` is read only)."""
    m = janus_rt.load(tiny_official)
    yield m
    m.close()


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
@pytest.mark.subprocess
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
    "demo": ["--out", "--device", "--random", "RANDOM", "toy"],
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
def test_random_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "demo"
    code, out, err = run(["demo", "--random", "--out", str(work)], capsys)
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
    code, out, err = run(["demo", "--random", "--out", str(work)], capsys)
    assert code == 0, err
    assert "reused" in out
    for path, pixels in zip(printed, first):
        np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)


def test_toy_demo_draws_its_prompts_and_answers_about_its_drawing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`janus-rt demo` runs the shipped toy: each printed prompt's image is checked cell by cell (>= 95 % here, read
    back from the saved PNG, not from the demo's own print), and it answers the colour question about its drawing."""
    from janus_rt.cli.demo import TOY_PROMPTS
    from janus_rt.toy.evaluate import cell_accuracy
    from janus_rt.toy.scenes import scene_of_caption

    work = tmp_path / "demo"
    code, out, err = run(["demo", "--out", str(work)], capsys)
    assert code == 0, err
    assert "toy Janus" in out and "RANDOM" not in out
    saved = sorted(work.glob("images/*.png"))
    assert len(saved) == len(TOY_PROMPTS)
    for prompt, path in zip(TOY_PROMPTS, saved):
        assert prompt in out
        with Image.open(path) as im:
            assert cell_accuracy(np.asarray(im.convert("RGB")), scene_of_caption(prompt)) >= 0.95, path
    assert "-> 'red'" in out  # "What colour is the circle?" about "a large red circle on a blue background"
    assert (work / "toy-janus" / "model.safetensors").is_file()


@pytest.mark.parametrize("flags, folder", [(["--random"], "tiny-janus"), ([], "toy-janus")])
def test_demo_refuses_foreign_folder(flags: list[str], folder: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    clash = tmp_path / "demo" / folder
    clash.mkdir(parents=True)
    (clash / "notes.txt").write_text("not a checkpoint")
    code, out, err = run(["demo", *flags, "--out", str(tmp_path / "demo")], capsys)
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


def test_model_toy_is_the_shipped_toy_unless_a_folder_is_named_so(tiny_official: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from janus_rt.toy.shipped import toy_checkpoint

    monkeypatch.chdir(tmp_path)
    code, out, err = run(["info", "--model", "toy", "--json"], capsys)
    assert code == 0, err
    files = json.loads(out)["checkpoint"]
    assert files["file_bytes"] == (toy_checkpoint() / "model.safetensors").stat().st_size
    (tmp_path / "toy").symlink_to(tiny_official, target_is_directory=True)  # a folder here named `toy` wins
    code, out, err = run(["info", "--model", "toy", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["checkpoint"]["file_bytes"] == (tiny_official / "model.safetensors").stat().st_size


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


# ------------------------------------------------------------------------------------- first-run defects
# Each test below failed before its fix (issue: "First run as a new user").
BOGUS_MODEL = "/nonexistent/dir"  # an error about anything else proves the check ran before the (slow) load


def truncated_copy(tiny_official: Path, tmp_path: Path) -> Path:
    ckpt = tmp_path / "truncated"
    shutil.copytree(tiny_official, ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])  # a cut-off download: half a header
    return ckpt


def fake_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the captured stderr claim to be a terminal, as a user's shell is (progress bars are drawn then)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)


@pytest.mark.parametrize("command", ["info", "generate", "chat"])
def test_truncated_weights_same_error_for_every_command(
    command: str, tiny_official: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ckpt = truncated_copy(tiny_official, tmp_path)
    fake_terminal(monkeypatch)
    argv = {"info": ["info", "--model", str(ckpt)],
            "generate": ["generate", "--model", str(ckpt), "a fox", "--out", str(tmp_path / "o")],
            "chat": ["chat", "--model", str(ckpt), "Hi"]}[command]
    code, out, err = run(argv, capsys)
    gc.collect()  # a progress bar left open would redraw itself when collected
    err += capsys.readouterr().err
    assert_clean_error(code, out, err, str(ckpt / "model.safetensors"), "not a readable safetensors file",
                       "re-download")
    # the error is the last thing printed, on a line of its own: no progress bar drawn over or after it
    assert re.search(r"(^|\n)janus-rt: error: [^\r\n]*\n?$", err), repr(err[-300:])


def test_out_that_is_a_file_is_refused_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "images.png"
    out_file.write_bytes(b"not a folder")
    code, out, err = run(["generate", "--model", BOGUS_MODEL, "a fox", "--out", str(out_file)], capsys)
    assert_clean_error(code, out, err, f"--out {out_file}", "not a folder")
    inside = tmp_path / "images.png" / "sub"
    code, out, err = run(["generate", "--model", BOGUS_MODEL, "a fox", "--out", str(inside)], capsys)
    assert_clean_error(code, out, err, "--out", f"{out_file} is a file")


def test_num_images_is_bounded_and_the_bound_is_in_help(tiny_model: janus_rt.Janus,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from janus_rt.requests.image import MAX_IMAGES_PER_CALL

    code, out, err = run(["generate", "--model", BOGUS_MODEL, "a fox", "-n", str(MAX_IMAGES_PER_CALL + 1)], capsys)
    assert_clean_error(code, out, err, "--num-images", f"{MAX_IMAGES_PER_CALL + 1} images", str(MAX_IMAGES_PER_CALL))
    code, out, _ = run(["generate", "--help"], capsys)
    assert re.search(rf"at most\s+{MAX_IMAGES_PER_CALL}\s+per\s+call", out), out
    # the library holds the same bound, over a list of prompts too, before anything is queued
    with pytest.raises(janus_rt.InputError, match=rf"2 prompts x 200 images .* \({MAX_IMAGES_PER_CALL}"):
        tiny_model.submit_images(["a", "b"], num_images=200)
    assert tiny_model.stats()["queued_requests"] == 0


def test_pixels_are_decoded_in_bounded_chunks(tiny_model: janus_rt.Janus, monkeypatch: pytest.MonkeyPatch) -> None:
    """Device memory of the VQ decode must not grow with the number of images of one call."""
    from janus_rt.api import VQ_DECODE_CHUNK
    from janus_rt.requests.pixels import postprocess

    backend = tiny_model.step_backend
    tokens = torch.randint(0, tiny_model.config.vq.codebook_size, (VQ_DECODE_CHUNK + 3, tiny_model.config.image_tokens_per_image))
    whole = postprocess(backend.decode_pixels(tokens))
    batches: list[int] = []
    original = backend.decode_pixels
    monkeypatch.setattr(backend, "decode_pixels", lambda t: batches.append(t.shape[0]) or original(t))
    chunked = tiny_model.decode_image_tokens(tokens)
    assert batches == [VQ_DECODE_CHUNK, 3]
    assert chunked.shape == whole.shape
    assert np.abs(chunked.astype(int) - whole.astype(int)).max() <= 1  # CPU convolutions may differ by a level


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["generate", "--model", BOGUS_MODEL, ""], ["prompt is empty"]),
        (["generate", "--model", BOGUS_MODEL, "   \n"], ["prompt is empty"]),
        (["chat", "--model", BOGUS_MODEL, " "], ["question is empty"]),
    ],
    ids=["empty-prompt", "whitespace-prompt", "blank-question"],
)
def test_empty_text_is_refused_before_loading(argv: list[str], needles: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert_clean_error(code, out, err, *needles)


def test_bad_image_files_are_refused_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    code, out, err = run(["chat", "--model", BOGUS_MODEL, "--image", str(folder), "What is it?"], capsys)
    assert_clean_error(code, out, err, f"--image {folder}", "is a directory")
    assert "does not exist" not in err and "no such file" not in err

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code, out, err = run(["chat", "--model", BOGUS_MODEL, "--image", str(text), "What is it?"], capsys)
    assert_clean_error(code, out, err, f"--image {text}", "not a readable image")

    missing = tmp_path / "nope.jpg"
    code, out, err = run(["chat", "--model", BOGUS_MODEL, "--image", str(missing), "What is it?"], capsys)
    assert_clean_error(code, out, err, f"--image {missing}", "does not exist")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file whatever its permissions")
def test_unreadable_image_is_refused_before_loading(picture: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture.chmod(0)
    try:
        code, out, err = run(["chat", "--model", BOGUS_MODEL, "--image", str(picture), "What is it?"], capsys)
    finally:
        picture.chmod(0o644)
    assert_clean_error(code, out, err, f"--image {picture}", "cannot be read", "permissions")


@pytest.mark.parametrize("model", ["./exports/pro-1b", "~/no-such-models/pro-1b", "exports/pro-1b/fp16", "exports/pro-1b"])
def test_path_like_model_that_does_not_exist(model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()  # `exports/` is here, `exports/pro-1b` is not: a mistyped path, not a hub id
    code, out, err = run(["info", "--model", model], capsys)
    assert_clean_error(code, out, err, f"{model}: no such directory", "config.json")
    assert "hub" not in err.lower()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["generate", "chat", "demo"])
def test_device_errors_speak_in_flags(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the demo would put its temp folder
    argv = {"generate": ["generate", "--model", BOGUS_MODEL, "a fox"], "chat": ["chat", "--model", BOGUS_MODEL, "Hi"],
            "demo": ["demo"]}[command]
    code, out, err = run(argv + ["--device", "cuda"], capsys)
    assert_clean_error(code, out, err, "--device cuda", "use --device cpu")
    assert "device=" not in err
    assert list(tmp_path.iterdir()) == []  # the demo checked the device before writing anything


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["chat", "--model", BOGUS_MODEL, "hi", "--top-p", "1.5"], "--top-p must be in (0, 1] or left out (off), got 1.5"),
        (["chat", "--model", BOGUS_MODEL, "hi", "--top-k", "-3"], "--top-k must be an integer in [1, 2147483647] or 0 (off), got -3"),
        (["generate", "--model", BOGUS_MODEL, "a fox", "--max-rows", "0"], "--max-rows must be a positive integer"),
        (["generate", "--model", BOGUS_MODEL, "a fox", "--gpu-memory-utilization", "1.5"],
         "--gpu-memory-utilization must be a fraction in (0, 1]"),
    ],
)
def test_option_errors_speak_in_flags(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert_clean_error(code, out, err, expected)
    assert "None" not in err and "_" not in err.split("got")[0]  # no Python spellings (top_p=, None)


def test_chat_draws_a_progress_bar_on_a_terminal_only(
    tiny_official: Path, tiny_model: janus_rt.Janus, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["chat", "--model", str(tiny_official), "Hi", "--max-new-tokens", "24", "--temperature", "0"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "answer" not in err and "it/s" not in err and "tok" not in err  # a log or a pipe: no bar
    expected = tiny_model.chat("Hi", max_new_tokens=24).text
    fake_terminal(monkeypatch)
    code, out_tty, err_tty = run(argv, capsys)
    assert code == 0, err_tty
    assert re.search(r"answer:\s+\d+%.*\d+/24", err_tty), repr(err_tty[-400:])
    assert out == out_tty == expected + "\n"  # the bar goes to stderr; stdout is the answer alone


def test_demo_without_out_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, out, err = run(["demo"], capsys)
    assert code == 0, err
    assert "generate     2 x 576 image tokens" in out and "--out DIR" in out
    assert list(tmp_path.iterdir()) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--version"], capsys)
    assert code == 0, err
    assert re.fullmatch(rf"janus-rt {re.escape(janus_rt.__version__)} \(torch [^,]+, triton [^,]+, Python 3\.\d+\.\d+\)\n",
                        out), out
