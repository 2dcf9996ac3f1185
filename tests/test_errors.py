"""Bad inputs and broken checkpoints fail early with a `janus_rt.InputError` / `janus_rt.CheckpointError` that
names the offending argument, file, key or shape.

API errors are checked with the model's work functions replaced by a sentinel that raises `ModelWorkStarted`:
an InputError proves validation happened before any model work, and a valid boundary case reaching the
sentinel proves the check is not over-eager. Checkpoint errors found before the weights are read (config,
tokenizer, file discovery) are checked the same way against building the model. Every broken checkpoint is a
copy of a tiny checkpoint edited on disk.

Images in RGBA / L / P / CMYK mode and 1-channel arrays are accepted and give exactly the pixels and the
answer of their RGB conversion (PIL `convert("RGB")`, as the reference does).
"""

from __future__ import annotations

import importlib
import json
import math
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import janus_rt
from janus_rt import CheckpointError, InputError
from janus_rt.model.config_loading import load_config
from janus_rt.requests.pixels import preprocess
from janus_rt.checkpoint.tiny import TinySpec

api = importlib.import_module("janus_rt.api")
engine_core = importlib.import_module("janus_rt.engine.core")
torch_backend = importlib.import_module("janus_rt.backends.eager")


class ModelWorkStarted(Exception):
    """Raised by the stand-ins of the model's work functions."""


def _refuse(*_args: object, **_kwargs: object) -> None:
    raise ModelWorkStarted


@pytest.fixture
def no_model_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace everything of the API that queues model work, runs the model or builds it by `_refuse`."""
    for name in ("submit_images", "submit_text"):
        monkeypatch.setattr(engine_core.Engine, name, _refuse)
    for name in ("prefill", "decode", "decode_pixels"):
        monkeypatch.setattr(torch_backend.TorchBackend, name, _refuse)
    monkeypatch.setattr(api, "build_empty_model", _refuse)


@pytest.fixture(scope="module")
def m(torch_model: janus_rt.Janus) -> janus_rt.Janus:
    return torch_model  # the session's tiny model: these tests only read it


@pytest.fixture(scope="module")
def m600(tiny_checkpoint) -> Iterator[janus_rt.Janus]:
    """Context of 600 positions: room for 576 image tokens plus a 25-token prompt."""
    m = janus_rt.load(tiny_checkpoint(TinySpec(max_positions=600)), device="cpu", dtype="float32")
    yield m
    m.close()


def rgb_array(seed: int = 0, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------ generate_images
@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt(m: janus_rt.Janus, no_model_work: None, prompt: str) -> None:
    with pytest.raises(InputError, match=r"prompt must be a non-empty string"):
        m.generate_images(prompt)


@pytest.mark.parametrize("num_images", [0, -1, 1.5, True, "2"])
def test_bad_num_images(m: janus_rt.Janus, no_model_work: None, num_images: object) -> None:
    with pytest.raises(InputError, match=rf"num_images must be an integer >= 1, got {re.escape(repr(num_images))}"):
        m.generate_images("a fox", num_images=num_images)  # type: ignore[arg-type]


@pytest.mark.parametrize("cfg_weight", [-1.0, -1e-9, math.nan, math.inf, 1e308, 10_000.5])
def test_bad_cfg_weight(m: janus_rt.Janus, no_model_work: None, cfg_weight: float) -> None:
    with pytest.raises(InputError, match=r"cfg_weight must be a number in \[0, 10000\]"):
        m.generate_images("a fox", cfg_weight=cfg_weight)


SAMPLING_ERRORS = [
    ({"temperature": -0.5}, r"temperature must be 0 \(greedy\) or a number in \[0\.0001, 10000\], got -0\.5"),
    ({"temperature": math.nan}, r"temperature must be 0 \(greedy\) or a number in .*got nan"),
    ({"temperature": 1e-300}, r"temperature must be 0 \(greedy\) or a number in \[0\.0001, 10000\], got 1e-300"),
    ({"temperature": 1e308}, r"temperature must be 0 \(greedy\) or a number in .*got 1e\+308"),
    ({"seed": 2**64}, r"seed must be an integer in \[0, 2\*\*64 - 1\] or None, got 18446744073709551616"),
    ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*64 - 1\] or None, got -1"),
    ({"top_p": 0}, r"top_p must be in \(0, 1\] or None, got 0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\] or None, got 1\.5"),
    ({"top_k": 0}, r"top_k must be an integer in \[1, 2147483647\] or None, got 0"),
    ({"top_k": -3}, r"top_k must be an integer in \[1, 2147483647\] or None, got -3"),
    ({"top_k": 2.5}, r"top_k must be an integer in \[1, 2147483647\] or None, got 2\.5"),
    ({"top_k": 2**31}, r"top_k must be an integer in \[1, 2147483647\] or None, got 2147483648"),
]


@pytest.mark.parametrize("kwargs, message", SAMPLING_ERRORS)
def test_bad_sampling_parameters(m: janus_rt.Janus, no_model_work: None, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        m.generate_images("a fox", **kwargs)
    with pytest.raises(InputError, match=message):
        m.chat("what is it?", **kwargs)


def test_valid_arguments_reach_the_model(m: janus_rt.Janus, no_model_work: None) -> None:
    """The sentinel is reached when the arguments are fine: the checks above are not over-eager."""
    with pytest.raises(ModelWorkStarted):
        m.generate_images("a fox", num_images=2, cfg_weight=0, temperature=0, top_k=1, top_p=1.0)
    with pytest.raises(ModelWorkStarted):
        m.chat("what is it?", max_new_tokens=1, temperature=0.7, top_k=5, top_p=0.9)
    with pytest.raises(ModelWorkStarted):
        m.decode_image_tokens(np.zeros((2, 576), dtype=np.int32))


def prompt_of_length(m: janus_rt.Janus, n_tokens: int) -> str:
    """A generation prompt whose formatted ids are exactly `n_tokens` long."""
    for words in range(1, 60):
        prompt = " ".join(["fox"] * words)
        if len(m.tokenizer.encode(m.image_prompt(prompt))) == n_tokens:
            return prompt
    pytest.fail(f"no prompt of {n_tokens} tokens")


def test_prompt_longer_than_context(m600: janus_rt.Janus, no_model_work: None) -> None:
    # 600 positions hold a prompt of L tokens plus 576 - 1 fed-back image tokens: L <= 25.
    with pytest.raises(ModelWorkStarted):
        m600.generate_images(prompt_of_length(m600, 25))
    with pytest.raises(InputError, match=r"prompt is 26 tokens; with 576 image tokens it needs 601 cache slots, more "
                                         r"than the 600 cache slots .*: shorten the prompt \(to at most 25 tokens\)"):
        m600.generate_images(prompt_of_length(m600, 26))


# ----------------------------------------------------------------------------------------------- chat
@pytest.mark.parametrize("question", ["", "  \n"])
def test_empty_question(m: janus_rt.Janus, no_model_work: None, question: str) -> None:
    with pytest.raises(InputError, match=r"question must be a non-empty string"):
        m.chat(question)


def test_image_count_must_match_placeholders(m: janus_rt.Janus, no_model_work: None) -> None:
    img = rgb_array()
    with pytest.raises(InputError, match=r"the prompt has 1 <image_placeholder> tag\(s\) but 2 image\(s\) were given"):
        m.chat("<image_placeholder> compare these", image=[img, img])
    with pytest.raises(InputError, match=r"the prompt has 1 <image_placeholder> tag\(s\) but 0 image\(s\) were given"):
        m.chat("<image_placeholder> what is this?")
    with pytest.raises(ModelWorkStarted):  # two explicit tags for two images are fine, and so is none at all
        m.chat("<image_placeholder> and <image_placeholder>: which is brighter?", image=[img, img])
    with pytest.raises(ModelWorkStarted):
        m.chat("compare these", image=[img, img])


@pytest.mark.parametrize("max_new_tokens", [0, -1, 1.5, True])
def test_bad_max_new_tokens(m: janus_rt.Janus, no_model_work: None, max_new_tokens: object) -> None:
    with pytest.raises(InputError, match=rf"max_new_tokens must be an integer in \[1, 1048576\], got {re.escape(repr(max_new_tokens))}"):
        m.chat("what is it?", max_new_tokens=max_new_tokens)  # type: ignore[arg-type]


def test_question_plus_max_new_tokens_beyond_context(m600: janus_rt.Janus, no_model_work: None) -> None:
    # n prompt tokens and N sampled ones fill n + N - 1 cache slots (the last token is never fed back): N <= 601 - n
    n = len(m600.chat_inputs("hi")[0].ids)
    with pytest.raises(ModelWorkStarted):
        m600.chat("hi", max_new_tokens=601 - n)
    with pytest.raises(InputError, match=rf"prompt is {n} tokens \(images included\); with max_new_tokens={602 - n} "
                                         rf"it needs 601 cache slots, more than the 600 cache slots .*ask for at most {601 - n} tokens"):
        m600.chat("hi", max_new_tokens=602 - n)
    # One image alone takes 578 positions, so a question about an image cannot fit with the system prompt.
    with pytest.raises(InputError, match=r"leaves no room for an answer in the 600 cache slots .*: shorten the prompt"):
        m600.chat("hi", image=rgb_array(), max_new_tokens=1)


def test_batched_chat_image_list_length(m: janus_rt.Janus, no_model_work: None) -> None:
    img = rgb_array()
    with pytest.raises(InputError, match=r"2 questions but 1 image entries; give one entry \(or None\) per question"):
        m.chat(["what is it?", "and this?"], image=[img])
    with pytest.raises(InputError, match=r"2 questions but 3 image entries"):
        m.chat(["what is it?", "and this?"], image=[img, None, img])
    with pytest.raises(InputError, match=r"question list is empty"):
        m.chat([])
    with pytest.raises(ModelWorkStarted):
        m.chat(["what is it?", "and this?"], image=[img, None])


# -------------------------------------------------------------------------------- decode_image_tokens
@pytest.mark.parametrize(
    "tokens, message",
    [
        (torch.zeros(1, 575, dtype=torch.long), r"image tokens must have shape \[N, 576\], got \[1, 575\]"),
        (torch.zeros(2, 24, 24, dtype=torch.long), r"image tokens must have shape \[N, 576\], got \[2, 24, 24\]"),
        (torch.zeros(0, 576, dtype=torch.long), r"image tokens must have shape \[N, 576\], got \[0, 576\]"),
        (torch.full((1, 576), 16384), r"image tokens must lie in \[0, 16384\), got values in \[16384, 16384\]"),
        (torch.full((1, 576), -1), r"image tokens must lie in \[0, 16384\), got values in \[-1, -1\]"),
        (torch.zeros(1, 576), r"image tokens must be integers, got dtype torch\.float32"),
        (np.zeros((1, 576), dtype=np.float64), r"image tokens must be integers, got dtype torch\.float64"),
        (torch.zeros(1, 576, dtype=torch.bool), r"image tokens must be integers, got dtype torch\.bool"),
    ],
    ids=["short", "grid", "empty", "too-big", "negative", "float32", "float64-numpy", "bool"],
)
def test_bad_image_tokens(m: janus_rt.Janus, no_model_work: None, tokens: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        m.decode_image_tokens(tokens)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ images
def test_unreadable_image_file(m: janus_rt.Janus, no_model_work: None, tmp_path: Path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG but not really" + bytes(range(256)))
    with pytest.raises(InputError, match=rf"image file {re.escape(str(bad))} is not a readable image"):
        m.chat("what is it?", image=bad)
    with pytest.raises(InputError, match=r"x\.png is not a readable image"):
        m.chat("what is it?", image=str(bad))


def test_missing_image_file(m: janus_rt.Janus, no_model_work: None, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=rf"image file {re.escape(str(tmp_path / 'nope.jpg'))} does not exist"):
        m.chat("what is it?", image=tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((0, 0, 3), dtype=np.uint8), r"image is empty \(0x0\)"),
        (np.zeros((0, 0), dtype=np.uint8), r"image is empty \(0x0\)"),
        (np.zeros((8, 0, 3), dtype=np.uint8), r"image is empty"),
        (np.zeros((8, 8, 3), dtype=np.float32), r"image array must be uint8 HWC, got dtype float32"),
        (np.zeros((8, 8, 3), dtype=np.int64), r"image array must be uint8 HWC, got dtype int64"),
        (np.zeros((8, 8, 2), dtype=np.uint8), r"1, 3 or 4 channels, got shape \[8, 8, 2\]"),
        (np.zeros((1, 8, 8, 3), dtype=np.uint8), r"1, 3 or 4 channels, got shape \[1, 8, 8, 3\]"),
    ],
    ids=["0x0x3", "0x0", "8x0x3", "float32", "int64", "2-channel", "4-d"],
)
def test_bad_image_array(m: janus_rt.Janus, no_model_work: None, array: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        m.chat("what is it?", image=array)


def test_unsupported_image_type(m: janus_rt.Janus, no_model_work: None) -> None:
    with pytest.raises(InputError, match=r"image must be a path, a PIL image or a uint8 HWC numpy array, got int"):
        m.chat("what is it?", image=5)  # type: ignore[arg-type]


def image_variants(tmp_path: Path) -> list[tuple[str, object, np.ndarray]]:
    """(name, image in some other mode, the RGB uint8 array it must be treated as)."""
    rgb = rgb_array(7)
    rgba = np.concatenate([rgb, np.random.default_rng(8).integers(0, 256, rgb.shape[:2] + (1,), dtype=np.uint8)], 2)
    gray = rgb[:, :, 1]
    pil_p = Image.fromarray(rgb).convert("P")
    pil_cmyk = Image.fromarray(rgb).convert("CMYK")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    as_rgb = lambda im: np.asarray(im.convert("RGB"))  # noqa: E731
    return [
        ("RGBA PIL", Image.fromarray(rgba, mode="RGBA"), rgb),  # convert("RGB") drops alpha
        ("RGBA array", rgba, rgb),
        ("RGBA png file", tmp_path / "rgba.png", rgb),
        ("L PIL", Image.fromarray(gray, mode="L"), np.repeat(gray[:, :, None], 3, axis=2)),
        ("HxW array", gray, np.repeat(gray[:, :, None], 3, axis=2)),
        ("HxWx1 array", gray[:, :, None], np.repeat(gray[:, :, None], 3, axis=2)),
        ("P PIL", pil_p, as_rgb(pil_p)),
        ("CMYK PIL", pil_cmyk, as_rgb(pil_cmyk)),
    ]


def test_other_image_modes_equal_their_rgb_conversion(m: janus_rt.Janus, tmp_path: Path) -> None:
    proc = m.config.image_processor
    question = "What is in the picture?"
    variants = image_variants(tmp_path)
    for name, image, rgb in variants:
        assert rgb.dtype == np.uint8 and rgb.shape == (40, 56, 3), name
        same_pixels = torch.equal(preprocess(image, proc), preprocess(rgb, proc))
        assert same_pixels, f"{name}: pixel values differ from those of its RGB conversion"
        ours = m.chat(question, image=image, max_new_tokens=4, temperature=0).token_ids
        assert ours == m.chat(question, image=rgb, max_new_tokens=4, temperature=0).token_ids, name
    # The pixel comparison is sensitive: the grey and RGB versions of one picture differ.
    grey_expected = dict((name, rgb) for name, _, rgb in variants)["L PIL"]
    assert not torch.equal(preprocess(grey_expected, proc), preprocess(rgb_array(7), proc))


# ------------------------------------------------------------------ odd types and non-finite numbers
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.generate_images("a fox", temperature=math.inf), r"temperature must be"),
        (lambda m: m.generate_images("a fox", cfg_weight=math.inf), r"cfg_weight must be"),
        (lambda m: m.generate_images("a fox", temperature=True), r"temperature must be"),
        (lambda m: m.generate_images("a fox", cfg_weight=True), r"cfg_weight must be"),
        (lambda m: m.chat("what is it?", top_k=True), r"top_k must be"),
        (lambda m: m.chat("what is it?", top_p=True), r"top_p must be"),
        (lambda m: m.chat(["what is it?", "and this?"], image=rgb_array()), r"image must be a list"),
        (lambda m: m.chat(5), r"question must be"),
        (lambda m: m.chat("what is it?", system_prompt=5), r"system_prompt must be"),
        (lambda m: m.decode_image_tokens([[1, 2], [3]]), r"image tokens"),
        (lambda m: m.decode_image_tokens([["a"] * 576]), r"image tokens"),
        (lambda m: m.decode_image_tokens(None), r"image tokens"),
    ],
    ids=["temperature-inf", "cfg-inf", "temperature-bool", "cfg-bool", "top_k-bool", "top_p-bool",
         "batch-single-image", "question-int", "system-prompt-int", "ragged-tokens", "str-tokens", "none-tokens"],
)
def test_odd_types_and_non_finite_numbers(m: janus_rt.Janus, no_model_work: None, call: Callable, message: str) -> None:
    with pytest.raises(InputError, match=message):
        call(m)


# ------------------------------------------------------------------------------------------- load() args
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"chat_format": "deepseek"}, r"chat_format must be 'auto', 'pro' or 'legacy', got 'deepseek'"),
        ({"backend": "tensorrt"}, r"backend 'tensorrt' is not available"),
        ({"dtype": "int8"}, r"dtype 'int8' is not supported"),
        ({"device": "banana"}, r"device='banana': not a valid torch device"),
    ],
)
def test_bad_load_arguments(tiny_official: Path, no_model_work: None, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        janus_rt.load(tiny_official, **kwargs)


# ------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope="module")
def bin_ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint(weights_format="bin")


@pytest.fixture(scope="module")
def sharded_bin_ckpt(tiny_checkpoint) -> Path:
    return tiny_checkpoint(weights_format="sharded-bin")


def copy_of(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "ckpt"))


def edit_config(path: Path, edit: Callable[[dict], None]) -> Path:
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    return path


def edit_safetensors(path: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    state = load_file(path / "model.safetensors")
    edit(state)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def load_fails(path: Path, message: str, exc: type[Exception] = CheckpointError) -> str:
    with pytest.raises(exc, match=message) as info:
        janus_rt.load(path, device="cpu", dtype="float32")
    return str(info.value)


def test_missing_directory(tmp_path: Path, no_model_work: None) -> None:
    missing = tmp_path / "nowhere"
    load_fails(missing, rf"{re.escape(str(missing))}: no such directory; pass the")
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(missing))}: no such directory"):
        load_config(missing)


def test_file_instead_of_directory(tiny_official: Path, no_model_work: None) -> None:
    load_fails(tiny_official / "config.json", r"config\.json: not a directory")


def test_directory_without_config(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(tiny_official, tmp_path)
    (path / "config.json").unlink()
    load_fails(path, rf"{re.escape(str(path / 'config.json'))}: not found")


def test_config_not_json(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(tiny_official, tmp_path)
    (path / "config.json").write_text('{"model_type": "multi_modality",')
    load_fails(path, r"config\.json: not valid JSON")


def test_unknown_model_type(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = edit_config(copy_of(tiny_official, tmp_path), lambda c: c.update(model_type="llava"))
    load_fails(path, r"config\.json: model_type is 'llava'; janus-rt reads official Janus checkpoints \('multi_modality'\)")


def test_unknown_vision_model_without_dims(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    def edit(c: dict) -> None:
        c["vision_config"]["params"] = {"model_name": "siglip_huge_patch8_512", "image_size": 384, "select_layer": -1}

    path = edit_config(copy_of(tiny_official, tmp_path), edit)
    load_fails(path, r"config\.json: vision_config model_name 'siglip_huge_patch8_512' is not a known SigLIP tower .*"
                     r"give its dimensions explicitly in vision_config\.params")


def test_unknown_vq_model_without_dims(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    def edit(c: dict) -> None:
        c["gen_vision_config"] = {"cls": "VQ-32", "params": {"image_token_size": 16384, "n_embed": 8}}

    path = edit_config(copy_of(tiny_official, tmp_path), edit)
    load_fails(path, r"config\.json: gen_vision_config\.cls 'VQ-32' is not a known VQ model")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(language_config=7), r"'language_config' in config\.json must be a JSON object, got int"),
        (lambda c: c.pop("gen_head_config"), r"missing 'gen_head_config' in config\.json"),
        (lambda c: c["language_config"].update(num_attention_heads=0),
         r"language_config\.num_attention_heads is 0; it must be a positive integer"),
        (lambda c: c["language_config"].update(hidden_size="wide"), r"malformed config \(ValueError: .*'wide'"),
        (lambda c: c["language_config"].update(rope_scaling={"type": "linear", "factor": 4.0}),
         r"language_config uses RoPE scaling 'linear'"),
        (lambda c: c["aligner_config"]["params"].update(input_dim=1024),
         r"aligner input_dim is 1024 but vision width is 32; they must be equal"),
        (lambda c: c["gen_head_config"]["params"].update(image_token_size=8192),
         r"gen_head image_token_size is 8192 but VQ codebook_size is 16384"),
        (lambda c: c["gen_vision_config"]["params"].update(ch=48),
         r"VQ channel widths \[48, 96\] must be multiples of 32"),
    ],
    ids=["section-not-object", "missing-section", "zero-heads", "non-integer", "rope-scaling", "aligner-vs-vision",
         "gen-head-vs-codebook", "groupnorm-channels"],
)
def test_malformed_config(tiny_official: Path, tmp_path: Path, no_model_work: None, edit: Callable, message: str) -> None:
    load_fails(edit_config(copy_of(tiny_official, tmp_path), edit), r"config\.json: .*" + message)


def test_missing_weights_file(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(tiny_official, tmp_path)
    (path / "model.safetensors").unlink()
    load_fails(path, r"no weights found; expected one of model\.safetensors, pytorch_model\.bin.*found: config\.json")


def test_tokenizer_larger_than_the_embedding(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = edit_config(copy_of(tiny_official, tmp_path), lambda c: c["language_config"].update(vocab_size=64))
    load_fails(path, r"tokenizer\.json: has \d+ tokens but the language model's embedding has only 64 rows")


def test_missing_tokenizer(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(tiny_official, tmp_path)
    (path / "tokenizer.json").unlink()
    load_fails(path, rf"{re.escape(str(path / 'tokenizer.json'))}: not found; janus-rt needs the checkpoint's tokenizer\.json")


def test_tokenizer_without_begin_of_image(tiny_official: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(tiny_official, tmp_path)
    tok = json.loads((path / "tokenizer.json").read_text(encoding="utf-8"))
    before = len(tok["added_tokens"])
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "<begin_of_image>"]
    assert len(tok["added_tokens"]) == before - 1
    (path / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    load_fails(path, r"tokenizer\.json: has no token '<begin_of_image>', which Janus prompts need")


def test_index_names_missing_shard(sharded_bin_ckpt: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(sharded_bin_ckpt, tmp_path)
    (path / "pytorch_model-00002-of-00002.bin").unlink()
    load_fails(path, r"pytorch_model\.bin\.index\.json: lists shard\(s\) that are not in .*: "
                     r"pytorch_model-00002-of-00002\.bin; the download is incomplete")


def test_index_points_to_unknown_shard(sharded_bin_ckpt: Path, tmp_path: Path, no_model_work: None) -> None:
    path = copy_of(sharded_bin_ckpt, tmp_path)
    index = json.loads((path / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["gen_embed.weight"] = "pytorch_model-00003-of-00003.bin"
    (path / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    load_fails(path, r"lists shard\(s\) that are not in .*: pytorch_model-00003-of-00003\.bin")


def test_truncated_safetensors(tiny_official: Path, tmp_path: Path) -> None:
    path = copy_of(tiny_official, tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    load_fails(path, rf"{re.escape(str(path / 'model.safetensors'))}: not a readable safetensors file .*re-download it")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_bin(bin_ckpt: Path, tmp_path: Path, damage: str) -> None:
    path = copy_of(bin_ckpt, tmp_path)
    weights = path / "pytorch_model.bin"
    data = weights.read_bytes()
    weights.write_bytes({"garbage": b"not a pickle at all " * 50, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    where = re.escape(str(weights))
    if damage == "empty":
        load_fails(path, rf"{where}: the file is empty \(0 bytes\)")
        return
    message = load_fails(path, rf"{where}: not a readable PyTorch weights file \(.+\); it is truncated, corrupt")
    # torch's generic advice to retry with weights_only=False would be wrong (and unsafe) here: it is dropped.
    assert "weights_only` set to `False`" not in message
    assert len(message) < 600


def test_missing_key_names_checkpoint_key_and_parameter(tiny_official: Path, tmp_path: Path) -> None:
    path = edit_safetensors(copy_of(tiny_official, tmp_path),
                            lambda s: s.pop("language_model.model.layers.1.self_attn.k_proj.weight"))
    load_fails(path, r"model\.safetensors: the checkpoint does not provide 1 janus-rt parameter\(s\): "
                     r"llm\.layers\.1\.attn\.qkv_proj\.weight \(from checkpoint key "
                     r"language_model\.model\.layers\.1\.self_attn\.k_proj\.weight\)")


def test_missing_keys_in_bin(bin_ckpt: Path, tmp_path: Path) -> None:
    path = copy_of(bin_ckpt, tmp_path)
    state = torch.load(path / "pytorch_model.bin", weights_only=True)
    for key in ("gen_head.vision_head.bias", "language_model.lm_head.weight"):
        del state[key]
    torch.save(state, path / "pytorch_model.bin")
    message = load_fails(path, r"pytorch_model\.bin: the checkpoint does not provide 2 janus-rt parameter\(s\)")
    assert "lm_head.weight (from checkpoint key language_model.lm_head.weight)" in message
    assert "gen_head.out.bias (from checkpoint key gen_head.vision_head.bias)" in message
    assert "tie_word_embeddings" in message  # says why lm_head is not taken from embed_tokens


def test_unexpected_extra_key(tiny_official: Path, tmp_path: Path) -> None:
    extra = "language_model.model.layers.7.mlp.up_proj.weight"  # the config has 2 layers
    path = edit_safetensors(copy_of(tiny_official, tmp_path), lambda s: s.update({extra: torch.zeros(128, 64)}))
    load_fails(path, rf"{re.escape(str(path / 'model.safetensors'))}: unexpected key '{re.escape(extra)}' "
                     r"\(shape \[128, 64\]\); it is not part of an official-layout Janus checkpoint")


def test_wrong_shaped_tensor(tiny_official: Path, tmp_path: Path) -> None:
    path = edit_safetensors(copy_of(tiny_official, tmp_path),
                            lambda s: s.update({"aligner.layers.0.weight": torch.zeros(64, 31)}))
    load_fails(path, rf"{re.escape(str(path / 'model.safetensors'))}: key 'aligner\.layers\.0\.weight' has shape "
                     r"\[64, 31\], expected \[64, 32\] \(for aligner\.layers\.0\.weight\); config\.json and the weights disagree")


def test_integer_tensor(tiny_official: Path, tmp_path: Path) -> None:
    path = edit_safetensors(copy_of(tiny_official, tmp_path),
                            lambda s: s.update({"gen_embed.weight": s["gen_embed.weight"].to(torch.int32)}))
    load_fails(path, r"key 'gen_embed\.weight' has dtype torch\.int32, expected a floating-point tensor")


def test_intact_copy_loads(tiny_official: Path, tmp_path: Path) -> None:
    """The copies above are broken only by their edits: an unedited copy loads."""
    path = edit_safetensors(copy_of(tiny_official, tmp_path), lambda s: None)
    assert janus_rt.load(path, device="cpu", dtype="float32").chat_format == "pro"
