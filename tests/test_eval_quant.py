"""`janus-rt eval-quant` mechanics on a tiny RANDOM checkpoint: the numbers are checked for range and for
properties that hold whatever the weights (a model against itself is exact, int8 is closer than int4, the
teacher-forced positions line up with the greedy tokens), never for quality.

The library-level tests run a 6x6 image-token grid (36 steps an image); the CLI tests load the checkpoint
as it is (24x24) with one image prompt and a few positions.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.cli.main import main
from janus_rt.errors import InputError
from janus_rt.quant.eval_inputs import EvalSettings, PromptSet
from janus_rt.quant.eval_measure import compare, evaluate_pair, measure_reference, relative_errors, token_agreement
from janus_rt.quant.eval_report import format_table, summary, table_rows, write_side_by_sides
from serve_utils import with_image_grid

GRID = 6
PROMPTS = PromptSet(("a red fox in the snow", "a bowl of fruit on a table"),
                    ("What is the capital of France?", "List three colours."))
SETTINGS = EvalSettings(image_tokens=12, max_new_tokens=10, seed=3)


def _loaded(checkpoint, quantize: str | None = None) -> janus_rt.Janus:
    m = janus_rt.load(checkpoint, device="cpu", dtype="float32", quantize=quantize)
    m.close()  # with_image_grid gives it a fresh engine over the same weights
    return with_image_grid(m, GRID)


@pytest.fixture(scope="module")
def float_model(small_grid_model):
    m = with_image_grid(small_grid_model, GRID)  # the session's weights, an engine of its own
    yield m
    m.close()


@pytest.fixture(scope="module")
def reference(float_model):
    return measure_reference(float_model, PROMPTS, SETTINGS)


@pytest.fixture(scope="module")
def comparisons(tiny_small_grid, reference):
    out = {}
    for fmt in ("int8", "int4"):
        m = _loaded(tiny_small_grid, fmt)
        try:
            out[fmt] = compare(reference, m)
        finally:
            m.close()
    return out


def _check_ranges(report: dict, kinds=("image", "text")) -> None:
    for kind in kinds:
        metrics = report[kind]
        rows = [metrics, *metrics["per_prompt"]]
        for row in rows:
            for key in ("logits_rel_error_mean", "logits_rel_error_max"):
                assert math.isfinite(row[key]) and row[key] >= 0, (kind, key, row[key])
            assert row["logits_rel_error_mean"] <= row["logits_rel_error_max"] + 1e-12
            for key in ("teacher_forced_top1_agreement", "greedy_token_agreement"):
                assert 0 <= row[key] <= 1, (kind, key, row[key])
        first = metrics["greedy_first_divergence_min"]
        assert first is None or 0 <= first < metrics["greedy_positions"]
        assert len(metrics["per_prompt"]) == metrics["prompts"]
    if "image" in kinds:
        assert 0 <= report["image"]["sampled_pixel_mean_abs_diff"] <= 255


def test_reference_positions_line_up_with_greedy_tokens(float_model, reference):
    """Teacher-forced logits at position i are the ones that chose greedy token i (no off-by-one): their argmax
    is the reference's own greedy token, for images (CFG-mixed) and answers (EOS included when it ended)."""
    assert len(reference.image_logits) == len(PROMPTS.image_prompts)
    for tokens, logits in zip(reference.image_greedy, reference.image_logits):
        assert tokens.shape == (GRID * GRID,)
        assert logits.shape == (SETTINGS.image_tokens, float_model.config.vq.codebook_size)
        assert logits.dtype == torch.float32 and logits.device.type == "cpu"
        assert torch.equal(logits.argmax(-1), tokens[: SETTINGS.image_tokens])
    for answer, logits in zip(reference.chat_greedy, reference.chat_logits):
        assert 1 <= len(answer) <= SETTINGS.max_new_tokens + 1
        assert logits.shape[0] == len(answer)
        assert logits.argmax(-1).tolist() == answer
    assert reference.images.shape == (len(PROMPTS.image_prompts), 12, 12, 3)


def test_model_against_itself_is_exact(float_model):
    """Comparing a model with itself: every error 0, every agreement 1, no divergence, identical images."""
    _, comparison = evaluate_pair(float_model, float_model, PROMPTS, SETTINGS)
    report = comparison.report
    _check_ranges(report)
    for kind in ("image", "text"):
        m = report[kind]
        assert m["logits_rel_error_mean"] == 0 and m["logits_rel_error_max"] == 0
        assert m["teacher_forced_top1_agreement"] == 1 and m["greedy_token_agreement"] == 1
        assert m["greedy_first_divergence_min"] is None
        assert all(p["greedy_first_divergence"] is None for p in m["per_prompt"])
    assert report["image"]["positions_measured"] == len(PROMPTS.image_prompts) * SETTINGS.image_tokens
    assert report["image"]["greedy_positions"] == len(PROMPTS.image_prompts) * GRID * GRID
    assert report["image"]["sampled_pixel_mean_abs_diff"] == 0


def test_quantized_metrics_in_range_and_int8_closer_than_int4(comparisons):
    """On the same checkpoint int8 (per-channel, 8 bits) perturbs the logits much less than int4 (4 bits)."""
    for fmt, comparison in comparisons.items():
        _check_ranges(comparison.report)
        for kind in ("image", "text"):
            assert comparison.report[kind]["logits_rel_error_mean"] > 0, (fmt, kind)
    i8, i4 = comparisons["int8"].report, comparisons["int4"].report
    for kind in ("image", "text"):
        assert i8[kind]["logits_rel_error_mean"] < i4[kind]["logits_rel_error_mean"], kind
        assert i8[kind]["logits_rel_error_max"] < i4[kind]["logits_rel_error_max"], kind
    rows = table_rows(i8)
    assert {(k, m) for k, m, _ in rows} >= {("image", "greedy token agreement"), ("text", "greedy token agreement")}
    assert format_table(i8).splitlines()[0].split() == ["kind", "metric", "value"]
    json.dumps(summary(i8))  # JSON-clean


def test_side_by_side_png(reference, comparisons, tmp_path):
    from PIL import Image

    paths = write_side_by_sides(reference.images, comparisons["int8"].images, tmp_path / "out")
    assert [p.name for p in paths] == ["side_by_side_0.png", "side_by_side_1.png"]
    for k, path in enumerate(paths):
        with Image.open(path) as im:
            assert im.size == (2 * reference.images.shape[2], reference.images.shape[1])
            pixels = np.asarray(im.convert("RGB"))
        width = reference.images.shape[2]
        assert np.array_equal(pixels[:, :width], reference.images[k])
        assert np.array_equal(pixels[:, width:], comparisons["int8"].images[k])
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_relative_errors_and_token_agreement():
    ref = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    other = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    assert relative_errors(other, ref).tolist() == [0.0, 1.0]
    assert relative_errors(ref, ref).tolist() == [0.0, 0.0]
    a = token_agreement([1, 2, 3, 4], [1, 2, 9, 4])
    assert (a.equal, a.compared, a.first_divergence, a.fraction) == (3, 4, 2, 0.75)
    a = token_agreement([1, 2, 3], [1, 2])  # the shorter answer ended: its missing position differs
    assert (a.equal, a.compared, a.first_divergence) == (2, 3, 2)
    a = token_agreement([5, 6], [5, 6])
    assert (a.fraction, a.first_divergence) == (1.0, None)


def test_prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# my set\na red fox\nimage: a blue car\n\nchat: What is 2+2?\nCHAT: Why?\n")
    prompts = PromptSet.from_file(path)
    assert prompts.image_prompts == ("a red fox", "a blue car")
    assert prompts.chat_questions == ("What is 2+2?", "Why?")
    path.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="no prompts"):
        PromptSet.from_file(path)
    path.write_text("chat:   \n")
    with pytest.raises(InputError, match="line 1"):
        PromptSet.from_file(path)
    with pytest.raises(InputError, match="cannot read"):
        PromptSet.from_file(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="image-tokens"):
        EvalSettings(image_tokens=0)
    with pytest.raises(InputError, match="at most"):
        EvalSettings(image_tokens=40).image_positions(36)


@pytest.fixture(scope="module")
def quantized_folder(tiny_official, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalq") / "tiny-int4"
    assert main(["quantize", "--model", str(tiny_official), "--out", str(out), "--format", "int4",
                 "--device", "cpu"]) == 0
    return out


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_cli_eval_quant(tiny_official, tmp_path, capsys):
    """The command on the checkpoint as it is (24x24 grid): table, one JSON line, the PNG and report.json."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox in the snow\nchat: What is the capital of France?\n")
    out = tmp_path / "eval"
    rc = main(["eval-quant", "--model", str(tiny_official), "--format", "int8", "--out", str(out), "--prompts",
               str(prompts), "--image-tokens", "4", "--max-new-tokens", "4", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "kind" in captured.out and "logits rel. error, mean (teacher-forced)" in captured.out
    line = _last_json(captured.out)
    assert line["format"] == "int8" and line["dtype"] == "float32" and line["quantized"] is None
    assert line["settings"]["image_tokens"] == 4
    assert line["image"]["positions_measured"] == 4 and line["image"]["greedy_positions"] == 576
    assert line["text"]["prompts"] == 1
    report = json.loads((out / "report.json").read_text())
    _check_ranges(report)
    assert report["prompts"] == {"image": ["a red fox in the snow"], "chat": ["What is the capital of France?"]}
    from PIL import Image

    with Image.open(out / "side_by_side_0.png") as im:
        assert im.size == (2 * 48, 48)  # the tiny checkpoint's images are 48 px
    assert sorted(line["files"]) == ["report.json", "side_by_side_0.png"]


def test_cli_eval_quant_quantized_folder(tiny_official, quantized_folder, tmp_path, capsys):
    """--quantized takes a `janus-rt quantize` folder; its format comes from the folder."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("chat: What is the capital of France?\nchat: List three colours.\n")
    out = tmp_path / "eval"
    rc = main(["eval-quant", "--model", str(tiny_official), "--quantized", str(quantized_folder), "--out", str(out),
               "--prompts", str(prompts), "--max-new-tokens", "6", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    line = _last_json(captured.out)
    assert line["format"] == "int4" and line["quantized"] == str(quantized_folder)
    assert "image" not in line and line["text"]["prompts"] == 2
    assert line["text"]["logits_rel_error_mean"] > 0
    _check_ranges(json.loads((out / "report.json").read_text()), kinds=("text",))


@pytest.mark.parametrize("case", ["out-is-file", "model-quantized", "format-mismatch", "no-format",
                                  "too-many-image-tokens", "bad-max-new-tokens", "not-quantized"])
def test_cli_refusals_before_loading(case, tiny_official, quantized_folder, tmp_path, capsys, monkeypatch):
    """Bad arguments fail with exit 2 and a message naming the flag, before any model is loaded."""
    def no_load(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(janus_rt, "load", no_load)
    base = ["eval-quant", "--model", str(tiny_official), "--device", "cpu", "--out", str(tmp_path / "o")]
    file = tmp_path / "file.txt"
    file.write_text("x")
    args, expect = {
        "out-is-file": (["eval-quant", "--model", str(tiny_official), "--format", "int8", "--out", str(file)],
                        "is a file"),
        "model-quantized": (["eval-quant", "--model", str(quantized_folder), "--format", "int8"], "--quantized"),
        "format-mismatch": (base + ["--format", "int8", "--quantized", str(quantized_folder)], "int4"),
        "no-format": (base, "--format is required"),
        "too-many-image-tokens": (base + ["--format", "int8", "--image-tokens", "1000"], "--image-tokens"),
        "bad-max-new-tokens": (base + ["--format", "int8", "--max-new-tokens", "0"], "--max-new-tokens"),
        "not-quantized": (base + ["--quantized", str(tiny_official)], "not a quantized checkpoint"),
    }[case]
    assert main(args) == 2
    assert expect in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
