"""Image pre-processing (understanding input) and post-processing (decoded VQ output), as reference §3.

Oracles:
- transformers' PIL-backed `JanusImageProcessorPil`, configured like the real checkpoints' preprocessor_config.json.
  It differs from the reference in one place: it sizes the short side with `round()`, the reference
  (deepseek-ai/Janus image_processing_vlm.py) with `int()`. janus-rt follows the reference, so the HF parity
  cases are sizes where both agree (asserted), and `test_hf_rounds_where_reference_truncates` pins the difference.
- `reference_preprocess` below, re-derived from reference §3.1 with PIL + numpy only, for every size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from janus_rt.model.config import ImageProcessorConfig
from janus_rt.requests.pixels import postprocess, preprocess
from oracle import transformers_oracle

CFG = ImageProcessorConfig()  # image_size 384, min_size 14, mean/std 0.5, rescale 1/255, normalize, background 127
PAD_VALUE = (127 / 255 - 0.5) / 0.5  # what a padded pixel becomes, about -0.0039
# Tolerance vs. both oracles: the same PIL bicubic resize and uint8 padding give identical bytes; the only
# difference left is float32 vs float64 arithmetic in (x / 255 - 0.5) / 0.5, well under 1e-6.
ATOL = 1e-6

SIZES = {  # (width, height)
    "wide": (500, 300),
    "tall": (200, 384),
    "square": (256, 256),
    "tiny-min-size": (3, 60),  # 3 / 60 * 384 = 19.2 -> 19; and 60 x 3 below hits min_size 14
    "odd": (333, 517),
}
# Sizes where the reference's int() and HF's round() disagree, or min_size clamps: re-derivation only.
EXTRA_SIZES = {"wide-round-up": (500, 299), "tall-round-up": (299, 500), "flat-min-size": (60, 3), "one-pixel": (1, 1)}


def noise_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8), mode=mode)


def reference_sizes(width: int, height: int) -> tuple[int, int]:
    """(new_w, new_h) as reference §3.1 step 2: int() truncation, floor min_size."""
    m = max(width, height)
    return max(int(width / m * 384), 14), max(int(height / m * 384), 14)


def reference_preprocess(image: Image.Image) -> np.ndarray:
    """Reference §3.1 with PIL + numpy: RGB, bicubic resize, expand2square with 127, /255, (x - 0.5) / 0.5."""
    image = image.convert("RGB")
    new_w, new_h = reference_sizes(*image.size)
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BICUBIC))  # [h, w, 3]
    side = max(new_w, new_h)
    canvas = np.full((side, side, 3), 127, dtype=np.uint8)
    top, left = ((new_w - new_h) // 2, 0) if new_w > new_h else (0, (new_h - new_w) // 2)
    canvas[top:top + new_h, left:left + new_w] = resized
    x = canvas.transpose(2, 0, 1).astype(np.float64) / 255.0
    return (x - 0.5) / 0.5


@pytest.fixture(scope="module")
def hf_processor():
    transformers_oracle()
    from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

    proc = JanusImageProcessorPil(
        size={"height": 384, "width": 384}, min_size=14, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
        rescale_factor=1 / 255, do_rescale=True, do_normalize=True, do_resize=True, do_pad=True, do_convert_rgb=True,
    )
    assert tuple(proc.background_color) == (127, 127, 127)
    return proc


def hf_pixels(proc, image: Image.Image) -> np.ndarray:
    return proc.preprocess(image, return_tensors="np")["pixel_values"][0]


def hf_sizes(width: int, height: int) -> tuple[int, int]:
    """(new_w, new_h) as JanusImageProcessorPil.resize computes them (round, floor min_size)."""
    delta = 384 / max(width, height)
    return max(round(width * delta), 14), max(round(height * delta), 14)


# ----------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("width,height", list(SIZES.values()), ids=list(SIZES))
def test_matches_hf_image_processor(hf_processor, width: int, height: int) -> None:
    assert hf_sizes(width, height) == reference_sizes(width, height), "HF's round() differs here; not a parity case"
    image = noise_image(width, height, seed=width * 1000 + height)
    ours = preprocess(image, CFG)
    assert ours.dtype == torch.float32 and ours.shape == (3, 384, 384)
    theirs = hf_pixels(hf_processor, image)
    assert theirs.shape == (3, 384, 384)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=ATOL)


@pytest.mark.parametrize("width,height", [*SIZES.values(), *EXTRA_SIZES.values()], ids=[*SIZES, *EXTRA_SIZES])
def test_matches_reference_rederivation(width: int, height: int) -> None:
    image = noise_image(width, height, seed=width + 7 * height)
    ours = preprocess(image, CFG).numpy()
    expected = reference_preprocess(image)
    assert ours.shape == expected.shape == (3, 384, 384)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)
    assert ours.min() >= -1 and ours.max() <= 1


def test_hf_rounds_where_reference_truncates(hf_processor) -> None:
    """500x299: 299 / 500 * 384 = 229.63 -> the reference keeps 229 rows, HF's processor 230. janus-rt follows the reference."""
    assert reference_sizes(500, 299) == (384, 229) and hf_sizes(500, 299) == (384, 230)
    image = Image.new("RGB", (500, 299), (255, 255, 255))
    ours = preprocess(image, CFG).numpy()
    content_rows = np.flatnonzero(np.abs(ours[0, :, 192] - 1.0) < 1e-6)
    assert len(content_rows) == 229 and content_rows[0] == (384 - 229) // 2  # 77: floor, extra pad row at the bottom
    theirs = hf_pixels(hf_processor, image)
    assert np.count_nonzero(np.abs(theirs[0, :, 192] - 1.0) < 1e-6) == 230


# --------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize(
    "width,height,first,count",
    [
        (300, 100, 128, 128),  # 384 x 128, offset (384 - 128) // 2 = 128, symmetric bands
        (301, 100, 128, 127),  # 100 / 301 * 384 = 127.57 -> 127 rows, offset (384 - 127) // 2 = 128: bottom band 129
        (100, 300, 128, 128),  # tall: the bands are columns
    ],
)
def test_solid_colour_band_geometry(width: int, height: int, first: int, count: int) -> None:
    colour = (200, 30, 90)
    x = preprocess(Image.new("RGB", (width, height), colour), CFG).numpy()
    if height > width:  # look at columns as rows
        x = x.transpose(0, 2, 1)
    content = x[:, first:first + count, :]
    bands = np.concatenate([x[:, :first, :], x[:, first + count:, :]], axis=1)
    assert bands.shape[1] == 384 - count
    np.testing.assert_allclose(bands, np.float32(PAD_VALUE), rtol=0, atol=1e-7)
    for c, value in enumerate(colour):
        np.testing.assert_allclose(content[c], (value / 255 - 0.5) / 0.5, rtol=0, atol=1e-6)
    # The rows right at the borders: last band row, first and last content row, first lower band row.
    assert abs(x[0, first - 1, 0] - PAD_VALUE) < 1e-6 and abs(x[0, first + count, 0] - PAD_VALUE) < 1e-6
    assert abs(x[0, first, 0] - (200 / 255 - 0.5) / 0.5) < 1e-6
    assert abs(x[0, first + count - 1, 0] - (200 / 255 - 0.5) / 0.5) < 1e-6


def test_padding_value_is_reference_grey() -> None:
    assert CFG.background_color == (127, 127, 127)
    x = preprocess(Image.new("RGB", (384, 20), (0, 0, 0)), CFG)
    assert float(x[1, 0, 0]) == pytest.approx(PAD_VALUE, abs=1e-7)
    assert float(x[1, 190, 0]) == pytest.approx(-1.0, abs=1e-7)


# ----------------------------------------------------------------------------------------------- inputs
def test_path_pil_and_array_inputs_agree(tmp_path: Path) -> None:
    image = noise_image(97, 61, seed=5)
    array = np.asarray(image).copy()
    png = tmp_path / "pic.png"
    image.save(png)
    expected = preprocess(image, CFG)
    for source in (png, str(png), array, Image.open(png)):
        torch.testing.assert_close(preprocess(source, CFG), expected, rtol=0, atol=0)
    np.testing.assert_allclose(expected.numpy(), reference_preprocess(image), rtol=0, atol=ATOL)

    jpeg = tmp_path / "pic.jpg"
    image.save(jpeg, quality=90)
    decoded = Image.open(jpeg).convert("RGB")
    from_path = preprocess(jpeg, CFG)
    torch.testing.assert_close(from_path, preprocess(decoded, CFG), rtol=0, atol=0)
    torch.testing.assert_close(from_path, preprocess(np.asarray(decoded).copy(), CFG), rtol=0, atol=0)
    assert not torch.equal(from_path, expected)  # JPEG is lossy: the comparison above is not vacuous


def _image_in_mode(mode: str) -> Image.Image:
    rgba = noise_image(45, 70, seed=11, mode="RGBA")
    if mode == "P":
        return rgba.convert("RGB").quantize(colors=64)
    if mode == "LA":
        return rgba.convert("LA")
    return rgba.convert(mode) if mode != "RGBA" else rgba


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "CMYK", "L"])
def test_other_modes_match_convert_rgb(mode: str, tmp_path: Path) -> None:
    image = _image_in_mode(mode)
    assert image.mode == mode
    expected = preprocess(image.convert("RGB"), CFG)
    torch.testing.assert_close(preprocess(image, CFG), expected, rtol=0, atol=0)
    if mode != "CMYK":  # PNG cannot store CMYK
        path = tmp_path / f"pic-{mode}.png"
        image.save(path)
        torch.testing.assert_close(preprocess(path, CFG), expected, rtol=0, atol=0)


def test_alpha_is_dropped_not_composited() -> None:
    rgba = np.asarray(noise_image(40, 30, seed=3, mode="RGBA")).copy()
    rgba[..., 3] = 0  # fully transparent: the reference's .convert("RGB") keeps the colour channels as they are
    torch.testing.assert_close(preprocess(rgba, CFG), preprocess(rgba[..., :3].copy(), CFG), rtol=0, atol=0)


def test_grey_array_inputs() -> None:
    grey = np.random.default_rng(2).integers(0, 256, size=(50, 80), dtype=np.uint8)
    expected = preprocess(Image.fromarray(grey, mode="L").convert("RGB"), CFG)
    torch.testing.assert_close(preprocess(grey, CFG), expected, rtol=0, atol=0)
    torch.testing.assert_close(preprocess(grey[:, :, None].copy(), CFG), expected, rtol=0, atol=0)
    assert torch.equal(expected[0], expected[1]) and torch.equal(expected[1], expected[2])


# ---------------------------------------------------------------------------------------------- post
def _decoded_for(values: list[float]) -> torch.Tensor:
    """float32 decoded values that map to `values` under (x + 1) / 2 * 255."""
    return torch.tensor([v * 2 / 255 - 1 for v in values], dtype=torch.float32)


def test_postprocess_truncates() -> None:
    targets = [254.9, 0.4, 127.5, 1.99, 100.6, 255.0, 0.0]
    x = _decoded_for(targets)
    mapped = ((x.numpy() + 1) / 2 * 255).tolist()
    assert mapped[0] > 254.5 and mapped[1] > 0.3 and mapped[2] == 127.5  # rounding would give 255, 0 / 1, 128
    decoded = x.view(1, 1, 1, -1).expand(1, 3, 1, len(targets)).contiguous()  # [1, 3, 1, 7]
    out = postprocess(decoded)
    assert out.dtype == np.uint8 and out.shape == (1, 1, len(targets), 3)
    assert out[0, 0, :, 0].tolist() == [254, 0, 127, 1, 100, 255, 0]


def test_postprocess_clips_out_of_range() -> None:
    x = torch.tensor([1.0, 1.0001, 1.7, 100.0, -1.0, -1.0001, -1.3, -100.0], dtype=torch.float32)
    out = postprocess(x.view(1, 1, 1, -1).expand(1, 3, 1, 8).contiguous())
    assert out[0, 0, :, 0].tolist() == [255, 255, 255, 255, 0, 0, 0, 0]


def test_postprocess_layout_and_formula() -> None:
    g = torch.Generator().manual_seed(0)
    decoded = torch.rand(2, 3, 5, 7, generator=g) * 2.4 - 1.2  # some values beyond [-1, 1]
    decoded[1, 2, 4, 6] = 0.5  # -> 191.25 -> 191 at image 1, row 4, column 6, channel 2 (blue)
    out = postprocess(decoded)
    assert out.dtype == np.uint8 and out.shape == (2, 5, 7, 3)
    assert out[1, 4, 6, 2] == 191
    # Reference §3.2 in float32 numpy: NHWC, clip((dec + 1) / 2 * 255, 0, 255), assigned into a uint8 array.
    dec = decoded.permute(0, 2, 3, 1).numpy()
    expected = np.zeros(dec.shape, dtype=np.uint8)
    expected[:] = np.clip((dec + 1) / 2 * 255, 0, 255)
    np.testing.assert_array_equal(out, expected)
    bf16 = decoded.bfloat16()
    np.testing.assert_array_equal(postprocess(bf16), postprocess(bf16.float()))
