"""The toy Janus's building blocks (issue 22, in progress: no trained checkpoint is shipped yet).

What holds without trained weights: the scenes and their renders, the written-down parts (the VQ decoder renders
every code as its flat cell exactly; the cell path picks the right cell under classifier-free guidance at any weight),
the official-layout writer (the loader's key map in reverse), and the training script (a few steps: it writes a
checkpoint the strict loader reads, and its loss fell).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import janus_rt
from janus_rt.toy.evaluate import cell_accuracy
from janus_rt.toy.scenes import GRID, Scene, all_scenes, cell_codes, cell_colours, colours_of_image, inside, render

FOX = Scene("circle", "large", 4, 1)  # "a large red circle on a blue background"


@pytest.fixture(scope="module")
def untrained_toy():
    """The toy's architecture and tokenizer with its written-down parts set and random trainable weights."""
    from janus_rt.checkpoint.tiny import write_tiny_checkpoint
    from janus_rt.toy.closed_form import set_cell_path, set_closed_form
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


@pytest.mark.slow
def test_training_script_still_trains(tmp_path):
    """A few steps of the real script: it writes a checkpoint the strict loader reads, with the written-down parts
    intact, and its drawing loss is below chance over the 4608 codes."""
    from janus_rt.toy.closed_form import cell_units
    from janus_rt.toy.train import TrainSettings, build

    out = build(tmp_path / "toy", TrainSettings(steps=6, draw_batch=2, answer_batch=2), progress=False)
    record = json.loads((out / "toy.json").read_text())
    assert record["final_losses"]["draw"] < math.log(8 * GRID * GRID)
    m = janus_rt.load(out, device="cpu", dtype="float32")
    try:
        assert torch.all(m.model.gen_head.proj.weight[cell_units(m.model)].abs().amax(1) > 0)  # the fixed cell units
        codes = torch.from_numpy(cell_codes(cell_colours(FOX)))
        assert np.array_equal(m.decode_image_tokens(codes)[0], render(cell_colours(FOX)))
    finally:
        m.close()
