"""The toy model's world: one flat-coloured shape, centred on a background of another colour, on the 24 x 24 grid.

A scene is (shape, size, shape colour, background colour): 3 shapes x 2 sizes x 8 colours x 7 other colours = 336
scenes. It is drawn on the real image-token grid, one colour per cell, and rendered at 16 pixels per cell (the
real 384 x 384 images; each cell is exactly one SigLIP patch). Captions come from templates with paraphrases;
questions about a scene have one-word answers, and "Describe this image." is answered by the canonical caption.

The procedural tokeniser (what a trained VQ encoder would give): each cell's code is `colour * cells + cell`, its
colour plus where it is, so the model's own token tells it which cell comes next (`janus_rt.toy.closed_form`).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np

GRID = 24  # token rows and columns: the real grid
CELL_PIXELS = 16  # 384 / 24: one cell, one SigLIP patch
COLOURS = ("black", "blue", "green", "cyan", "red", "magenta", "yellow", "white")  # index = 4 R + 2 G + B
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
CAPTION_TEMPLATES = (
    "a {size} {fg} {shape} on a {bg} background",
    "a {size} {fg} {shape} against a {bg} background",
    "{size} {fg} {shape} on {bg}",
    "a {bg} background with a {size} {fg} {shape}",
    "a picture of a {size} {fg} {shape} on a {bg} background",
    "draw a {size} {fg} {shape} on a {bg} background",
)
QUESTIONS = (  # (question template, what the answer is)
    ("What colour is the {shape}?", "fg"),
    ("What color is the {shape}?", "fg"),
    ("What colour is the shape?", "fg"),
    ("What shape is it?", "shape"),
    ("What shape is in the picture?", "shape"),
    ("What colour is the background?", "bg"),
    ("What color is the background?", "bg"),
    ("Is the {shape} large or small?", "size"),
    ("Describe this image.", "caption"),
)


ASKED_WEIGHTS = {"fg": 3, "bg": 3, "shape": 2, "size": 1, "caption": 1}  # how often each kind is asked in training:
# the two colour questions differ in one word, so both are asked as often


def colour_rgb(colour: int) -> tuple[int, int, int]:
    """0/255 per channel of one of the 8 colours (index = 4 R + 2 G + B)."""
    return (255 * (colour >> 2 & 1), 255 * (colour >> 1 & 1), 255 * (colour & 1))


@dataclass(frozen=True)
class Scene:
    shape: str  # SHAPES
    size: str  # SIZES
    fg: int  # the shape's colour (COLOURS index)
    bg: int  # the background's colour, never the shape's

    @property
    def caption(self) -> str:
        """The canonical caption (the answer to "Describe this image.")."""
        return f"a {self.size} {COLOURS[self.fg]} {self.shape} on a {COLOURS[self.bg]} background"

    def caption_variant(self, rng: random.Random) -> str:
        """A paraphrase: one of the templates, one of the size's words."""
        template = rng.choice(CAPTION_TEMPLATES)
        return template.format(size=rng.choice(SIZE_WORDS[self.size]), fg=COLOURS[self.fg], shape=self.shape,
                               bg=COLOURS[self.bg])

    def answer(self, what: str) -> str:
        return {"fg": COLOURS[self.fg], "bg": COLOURS[self.bg], "shape": self.shape, "size": self.size,
                "caption": self.caption}[what]

    def question_answer(self, rng: random.Random) -> tuple[str, str]:
        """A question about the scene and its answer: the kind of answer drawn by ASKED_WEIGHTS, then one template."""
        kinds = list(ASKED_WEIGHTS)
        what = rng.choices(kinds, weights=[ASKED_WEIGHTS[k] for k in kinds])[0]
        template = rng.choice([t for t, kind in QUESTIONS if kind == what])
        return template.format(shape=self.shape), self.answer(what)


def scene_of_caption(caption: str) -> Scene:
    """The scene a canonical caption (`Scene.caption`) names; ValueError for any other text."""
    for scene in all_scenes():
        if scene.caption == caption:
            return scene
    raise ValueError(f"{caption!r} is not a canonical toy caption, e.g. {all_scenes()[0].caption!r}")


def all_scenes() -> list[Scene]:
    """Every scene, in a fixed order."""
    return [Scene(shape, size, fg, bg) for shape, size, fg, bg in itertools.product(SHAPES, SIZES, range(8), range(8))
            if fg != bg]


def inside(shape: str, size: str) -> np.ndarray:
    """bool `[GRID, GRID]`: the cells the shape covers (centred on the grid)."""
    r, c = np.meshgrid(np.arange(GRID) + 0.5, np.arange(GRID) + 0.5, indexing="ij")  # cell centres
    dr, dc = r - GRID / 2, c - GRID / 2
    large = size == "large"
    if shape == "circle":
        radius = 9.5 if large else 5.5
        return dr ** 2 + dc ** 2 <= radius ** 2
    if shape == "square":
        half = 7 if large else 4
        return (np.abs(dr) <= half) & (np.abs(dc) <= half)
    height = 16 if large else 8  # triangle, apex up, base as wide as it is high
    top = GRID / 2 - height / 2
    depth = r - top  # 0 at the apex
    return (depth >= 0) & (depth <= height) & (np.abs(dc) <= depth / 2 + 0.25)


def cell_colours(scene: Scene) -> np.ndarray:
    """int `[GRID, GRID]`: each cell's colour index."""
    return np.where(inside(scene.shape, scene.size), scene.fg, scene.bg)


def cell_codes(colours: np.ndarray) -> np.ndarray:
    """int64 `[GRID * GRID]`: the procedural tokeniser, `colour * cells + cell` in raster order."""
    flat = colours.reshape(-1).astype(np.int64)
    return flat * (GRID * GRID) + np.arange(GRID * GRID)


def code_colours(codes: np.ndarray) -> np.ndarray:
    """The colour of each code (the inverse of `cell_codes`, cell dropped)."""
    return np.asarray(codes) // (GRID * GRID)


def render(colours: np.ndarray) -> np.ndarray:
    """uint8 `[384, 384, 3]`: each cell a flat 16 x 16 square of its colour."""
    palette = np.array([colour_rgb(i) for i in range(len(COLOURS))], dtype=np.uint8)  # [8, 3]
    image = palette[colours]  # [GRID, GRID, 3]
    return image.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)  # [384, 384, 3]


def colours_of_image(image: np.ndarray) -> np.ndarray:
    """int `[GRID, GRID]`: the colour closest to each cell's mean pixel (reads a decoded image back)."""
    cells = image.reshape(GRID, CELL_PIXELS, GRID, CELL_PIXELS, 3).mean(axis=(1, 3))  # [GRID, GRID, 3]
    bits = (cells >= 128).astype(int)  # [GRID, GRID, 3]
    return bits[..., 0] * 4 + bits[..., 1] * 2 + bits[..., 2]
