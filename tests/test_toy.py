"""The shipped toy: its file is the recorded one, its written-down parts are what the training script writes, and
end to end a prompt becomes the picture it names and a question about a picture gets the right word.

Semantic thresholds: an image "is" its scene when >= 95 % of its 576 cells have the scene's colour (decoded pixels
read back per cell); answers are compared as words. On the torch and ONNX Runtime backends, over HTTP, with the
streamed previews, and after every quantization format; the triton backend (in the Triton interpreter, slow on a
CPU) draws the first rows. What holds without trained weights is tested on the written-down parts alone (random
trainable weights); the retraining test (marker `slow`) runs the training script for a few steps only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.toy.closed_form import set_cell_path, set_closed_form
from janus_rt.toy.evaluate import CFG_WEIGHT, ask, cell_accuracy
from janus_rt.toy.scenes import (COLOURS, GRID, Scene, all_scenes, cell_codes, cell_colours, colours_of_image, inside,
                                 render)
from janus_rt.toy.shipped import toy_checkpoint

TOY_SHA256 = "d5731838a967d25e64f5c45fde6a48680af399fd3b76697da1f0ceff95fb2ded"  # sha256 of the shipped model.safetensors (a new toy changes this on purpose)
FOX = Scene("circle", "large", 4, 1)  # "a large red circle on a blue background"
SCENES = (FOX, Scene("square", "large", 2, 7), Scene("triangle", "large", 6, 0), Scene("circle", "small", 7, 5))
MATCH = 0.95


@pytest.fixture(scope="module")
def toy():
    m = janus_rt.load("toy", device="cpu", dtype="float32")
    yield m
    m.close()


def test_shipped_checkpoint_is_the_recorded_one():
    folder = toy_checkpoint()
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    record = json.loads((folder / "toy.json").read_text())
    assert digest == record["weights_sha256"] == TOY_SHA256


def test_the_package_holds_the_weights_packed_and_unpacks_them_once(tmp_path):
    """The package ships `model.safetensors.xz` (no multi-MB file in git); the first use unpacks it whole into the
    cache, checked against the recorded sha256, and later uses reuse that folder."""
    from janus_rt.toy.shipped import PACKED_WEIGHTS, pack, shipped_folder

    assert (shipped_folder() / PACKED_WEIGHTS).stat().st_size < 2_000_000
    folder = toy_checkpoint(cache=tmp_path / "cache")
    assert folder.parent == tmp_path / "cache"
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest() == TOY_SHA256
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert toy_checkpoint(cache=tmp_path / "cache") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not unpacked again

    # Packed weights that are not the recorded ones: refused, and no folder is left in the cache.
    other = tmp_path / "unpacked"
    other.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "toy.json"):
        (other / name).write_bytes((folder / name).read_bytes())
    (other / "model.safetensors").write_bytes(b"not the toy's weights")
    repacked = pack(other, tmp_path / "repacked")
    with pytest.raises(janus_rt.errors.CheckpointError, match="sha256"):
        toy_checkpoint(cache=tmp_path / "cache2", source=repacked)
    assert not (tmp_path / "cache2").exists() or not any((tmp_path / "cache2").iterdir())


def test_written_down_parts_are_the_closed_form(toy):
    """The VQ decoder, vision tower and image-token table in the file are exactly `closed_form`'s, and so are the
    fixed entries of the cell path (in fp16, as shipped)."""
    fresh = janus_rt.load("toy", device="cpu", dtype="float32")
    try:
        set_closed_form(fresh.model)
        fixed = set_cell_path(fresh.model, fresh.tokenizer.special.begin_of_image)
        ours = dict(toy.model.named_parameters())
        for name, param in fresh.model.named_parameters():
            if name.startswith(("vq.", "vision.", "gen_embed.")):
                assert torch.equal(ours[name], param.half().float()), name
            if param in fixed:
                mask = fixed[param]
                assert mask.any() and torch.equal(ours[name][mask], param[mask].half().float()), name
    finally:
        fresh.close()


@pytest.fixture(scope="module")
def untrained_toy():
    """The toy's architecture and tokenizer with its written-down parts set and random trainable weights."""
    from janus_rt.checkpoint.tiny import write_tiny_checkpoint
    from janus_rt.toy.model_spec import TOKENIZER_SIZE, toy_corpus, toy_spec

    with tempfile.TemporaryDirectory(prefix="janus-rt-toy-") as tmp:
        path = write_tiny_checkpoint(Path(tmp) / "toy", toy_spec(), "safetensors", 0, toy_corpus(), TOKENIZER_SIZE)
        m = janus_rt.load(path, device="cpu", dtype="float32")
        set_closed_form(m.model)
        set_cell_path(m.model, m.tokenizer.special.begin_of_image)
        yield m
        m.close()


def test_scenes_are_distinct_and_read_back_from_their_renders():
    scenes = all_scenes()
    assert len(scenes) == 3 * 2 * 8 * 7 and len(set(scenes)) == len(scenes)
    assert len({s.caption for s in scenes}) == len(scenes)
    shapes = {(s.shape, s.size): inside(s.shape, s.size) for s in scenes}
    for (a, mask_a) in shapes.items():
        for (b, mask_b) in shapes.items():
            if a != b and a[1] == b[1] == "large":
                assert (mask_a != mask_b).sum() >= 80  # large shapes differ in >= 14 % of cells
    for scene in scenes[::17]:
        assert np.array_equal(colours_of_image(render(cell_colours(scene))), cell_colours(scene))


def test_vq_decoder_renders_every_code_as_its_flat_cell(untrained_toy):
    """The closed-form decoder: each scene's codes decode to exactly its render, whatever the cell part says."""
    for scene in (FOX, Scene("triangle", "small", 6, 0), Scene("square", "large", 7, 2)):
        codes = torch.from_numpy(cell_codes(cell_colours(scene)))
        assert np.array_equal(untrained_toy.decode_image_tokens(codes)[0], render(cell_colours(scene)))
    colours = torch.arange(8).repeat_interleave(GRID * GRID // 8)  # every colour, on cells that are not its own
    shuffled = colours * GRID * GRID + torch.randperm(GRID * GRID, generator=torch.Generator().manual_seed(0))
    decoded = colours_of_image(untrained_toy.decode_image_tokens(shuffled)[0]).reshape(-1)
    assert torch.equal(torch.from_numpy(decoded), colours)


def test_vision_tower_reports_both_colours_and_the_shape_in_every_patch(untrained_toy):
    """The written-down tower, through the real preprocessing, for every scene: every patch carries the background's
    and the shape's colour bits exactly and a one-hot of the scene's (shape, size), up to the final LayerNorm's scale
    (one per image: every feature is stored as a pair (s, -s), so its mean is 0)."""
    from janus_rt.toy.closed_form import BACKGROUND, SCENE_SHAPE, SHAPE_COLOUR
    from janus_rt.toy.scenes import SHAPES, SIZES

    def signs(colour: int) -> torch.Tensor:
        return torch.tensor([2 * (colour >> (2 - k) & 1) - 1 for k in range(3)], dtype=torch.float32)

    kinds = [(shape, size) for shape in SHAPES for size in SIZES]
    for scene in all_scenes()[::7]:
        request, _ = untrained_toy.chat_inputs("hi", render(cell_colours(scene)))
        features = untrained_toy.model.vision(request.pixel_values)[0]  # [576, width] after the final LayerNorm
        scale = features[:, BACKGROUND].abs().amax()  # the LayerNorm's scale (the same in every patch)
        torch.testing.assert_close(features[:, BACKGROUND] / scale, signs(scene.bg).expand(GRID * GRID, 3), atol=1e-5,
                                   rtol=0)
        torch.testing.assert_close(features[:, SHAPE_COLOUR] / scale, signs(scene.fg).expand(GRID * GRID, 3),
                                   atol=1e-5, rtol=0)
        one_hot = torch.zeros(len(kinds))
        one_hot[kinds.index((scene.shape, scene.size))] = 1.0
        shape = features[:, SCENE_SHAPE] / features[:, SCENE_SHAPE].amax()  # the "on" level is 1 / sigma: scaled
        torch.testing.assert_close(shape, one_hot.expand(GRID * GRID, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("cfg_weight", [1.0, 3.0, 5.0])
def test_the_cell_path_survives_guidance(untrained_toy, cfg_weight):
    """Whatever the (random) colour logits say, each sampled code's cell is the next cell, at any guidance weight:
    the cell path is exact and the same in both CFG rows (a learned one scrambled the cells at weight 3)."""
    tokens = untrained_toy.generate_images(FOX.caption, seed=1, cfg_weight=cfg_weight).tokens[0]
    assert torch.equal(tokens % (GRID * GRID), torch.arange(GRID * GRID))


def test_cell_accuracy_reads_a_drawing():
    image = render(cell_colours(FOX))
    assert cell_accuracy(image, FOX) == 1.0
    assert cell_accuracy(image, Scene("circle", "large", 1, 4)) == 0.0  # swapped colours: no cell right


def test_official_writer_gives_back_the_files_it_was_loaded_from(torch_model, tiny_official):
    """The loader's key map run in reverse: every key of the official layout, equal to the checkpoint's tensor."""
    from safetensors.torch import load_file

    from janus_rt.checkpoint.official_writer import official_state_dict

    written = official_state_dict(torch_model.model)
    on_disk = {}
    for path in sorted(tiny_official.glob("*.safetensors")):
        on_disk.update(load_file(path))
    assert written.keys() == on_disk.keys()
    for key, tensor in on_disk.items():
        assert torch.equal(written[key], tensor.float()), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_backend_draws_what_it_is_asked(toy, seed):
    result = toy.generate_images(FOX.caption, num_images=2, seed=seed, cfg_weight=CFG_WEIGHT)
    for image in result.images:
        assert cell_accuracy(image, FOX) >= MATCH


def test_greedy_drawings_of_several_scenes(toy):
    images = toy.generate_images([s.caption for s in SCENES], temperature=0, cfg_weight=CFG_WEIGHT).images
    for scene, image in zip(SCENES, images):
        assert cell_accuracy(image, scene) >= MATCH, scene.caption
    assert cell_accuracy(images[0], SCENES[1]) < 0.5  # the check can fail: another scene does not pass


def test_answers_colour_and_shape_questions(toy):
    for scene in SCENES:
        assert ask(toy, scene, f"What colour is the {scene.shape}?") == COLOURS[scene.fg]
        assert ask(toy, scene, "What shape is it?") == scene.shape
        assert ask(toy, scene, "What colour is the background?") == COLOURS[scene.bg]


def test_answers_about_its_own_drawing(toy):
    drawing = toy.generate_images(FOX.caption, seed=0, cfg_weight=CFG_WEIGHT).images[0]
    assert ask(toy, drawing, "What colour is the circle?") == "red"
    assert ask(toy, drawing, "What colour is the background?") == "blue"


def test_http_routes_draw_and_answer(toy):
    """Over HTTP (the real server on 127.0.0.1): the image route draws the caption, the chat route answers about an
    image sent as a data: URI."""
    import httpx

    from serve_utils import start_server
    from test_serve import decode_png, image_message

    from janus_rt.serve.image_formats import image_b64

    with start_server(toy) as url:
        body = {"prompt": FOX.caption, "n": 2, "seed": 0, "cfg_weight": CFG_WEIGHT}
        images = httpx.post(f"{url}/v1/images/generations", json=body, timeout=120).json()["data"]
        for item in images:
            assert cell_accuracy(decode_png(item["b64_json"]), FOX) >= MATCH
        png = base64.b64decode(image_b64(render(cell_colours(FOX)), "png", None))
        message = image_message(png, "What colour is the circle?")
        chat = httpx.post(f"{url}/v1/chat/completions", json={"messages": [message], "max_tokens": 8,
                                                             "temperature": 0}, timeout=120).json()
        assert chat["choices"][0]["message"]["content"].strip() == "red"


def test_previews_show_the_final_images_top_rows(toy):
    job = toy.submit_images(FOX.caption, seed=0, cfg_weight=CFG_WEIGHT, partial_images=3)
    previews = list(job.previews())
    final = job.result().images[0]
    assert previews
    for p in previews:
        drawn = final.shape[0] * p.rows_done // GRID
        assert np.array_equal(p.image[:drawn], final[:drawn])


def test_onnxruntime_backend_draws_and_answers(toy, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from janus_rt.export import export_onnx

    folder = export_onnx(toy, tmp_path_factory.mktemp("toy-onnx") / "fp32").path
    m = janus_rt.load(folder, backend="onnxruntime", providers=["CPUExecutionProvider"])
    try:
        image = m.generate_images(FOX.caption, seed=0, cfg_weight=CFG_WEIGHT).images[0]
        assert cell_accuracy(image, FOX) >= MATCH
        assert ask(m, FOX, "What shape is it?") == "circle"
    finally:
        m.close()


@pytest.mark.interpreter
def test_triton_backend_draws_the_first_rows(toy):
    """The Triton interpreter runs ~a step per second here, so the triton backend draws the first 3 rows (72 tokens,
    greedy) and stops; they must be the scene's."""
    from janus_rt.backends.choice import make_backend

    m = janus_rt.Janus(make_backend("triton", toy.model), toy.tokenizer, toy.chat_format, toy.path)
    try:
        job = m.submit_images(FOX.caption, temperature=0, cfg_weight=CFG_WEIGHT, partial_images=GRID - 1)
        for preview in job.previews():
            if preview.rows_done >= 3:
                job.cancel()
                break
        rows = 3 * 16  # pixels of 3 cell rows
        assert np.array_equal(preview.image[:rows], render(cell_colours(FOX))[:rows])
    finally:
        m.close()


@pytest.mark.parametrize("fmt", ["int8", "int4", "fp8"])
def test_quantized_toy_keeps_its_semantics(toy, fmt):
    from janus_rt.toy.evaluate import next_token_kl

    m = janus_rt.load("toy", device="cpu", dtype="float32", quantize=fmt)
    try:
        images = m.generate_images([s.caption for s in SCENES[:2]], temperature=0, cfg_weight=CFG_WEIGHT).images
        for scene, image in zip(SCENES, images):
            assert cell_accuracy(image, scene) >= MATCH, (fmt, scene.caption)
        assert ask(m, FOX, "What colour is the circle?") == "red"
        kl = next_token_kl(toy, m, FOX)
        print(f"{fmt}: mean KL(fp32 || {fmt}) of next-token distributions: image {kl.image:.2e}, text {kl.text:.2e}")
        assert kl.image < 0.1 and kl.text < 0.1
    finally:
        m.close()


@pytest.mark.slow
def test_training_script_still_trains(tmp_path):
    """A few steps of the real script: it writes a checkpoint the strict loader reads, with the written-down parts
    intact, its drawing loss is below chance over the 4608 codes, and a second run writes the same weights."""
    from janus_rt.toy.closed_form import cell_units
    from janus_rt.toy.train import TrainSettings, build

    settings = TrainSettings(steps=6, draw_batch=2, answer_batch=2, whole_answers=1)
    out = build(tmp_path / "toy", settings, progress=False)
    record = json.loads((out / "toy.json").read_text())
    assert record["final_losses"]["draw"] < math.log(8 * GRID * GRID)
    again = json.loads((build(tmp_path / "again", settings, progress=False) / "toy.json").read_text())
    assert again["weights_sha256"] == record["weights_sha256"]  # seeded: the same weights, bit for bit
    m = janus_rt.load(out, device="cpu", dtype="float32")
    try:
        units = cell_units(m.model)  # the fixed cell units: each reads one feature; the last (the guard) none
        reads = m.model.gen_head.proj.weight[units].abs().amax(1)
        assert torch.all(reads[:-1] > 0) and reads[-1] == 0
        codes = torch.from_numpy(cell_codes(cell_colours(FOX)))
        assert np.array_equal(m.decode_image_tokens(codes)[0], render(cell_colours(FOX)))
    finally:
        m.close()
