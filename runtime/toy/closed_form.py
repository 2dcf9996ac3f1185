"""The toy model's parts that are written down rather than trained: the VQ decoder, the vision tower, the image-token
embedding table. Everything else (the language model, both aligners, both heads) is trained (`janus_rt.toy.train`).

VQ decoder (codes -> flat-colour cells, exactly): code `colour * cells + cell` has the codebook row e_colour. The
colour's 3 bits travel as +-1 through every layer, each of which is made an identity: 3 x 3 convolutions keep only
their centre tap (an identity matrix), each ResNet block's second convolution and each attention block's output
projection are zero (so the block returns its input), nearest upsampling copies each cell into 2 x 2. The decoder's
last GroupNorm normalises over whole groups of channels and pixels, so its statistics must not depend on the picture:
each bit b is carried by a pair of channels (b, -b) (mean 0, variance 1, whatever the picture), the unused groups hold
(1, -1), and the last convolution reads `swish(b) - swish(-b) = b` back out, times 1.01 so that the uint8 conversion
(which truncates) lands exactly on 0 or 255.

Vision tower (pixels -> what each patch shows, and what the whole image shows): a cell is exactly one 16 x 16 patch;
the patch embedding averages each colour channel (+-1 after the real preprocessing). Block 1's two heads attend, by
position, to the 4 corner patches (always background) and the 4 centre patches (always the shape) and copy their
colour into every patch; block 2's head attends to the patches of the shape's colour and averages, for each of the 6
(shape, size) masks, whether they lie inside it: 1 for the scene's own mask (and any larger one that contains it),
less for the others. So every patch holds the answer to every question the toy is asked; the aligner that maps these
features to the language model, and the language model that reads them, are trained.

Image-token embedding (`gen_embed`): code (colour, cell) -> the NEXT cell's row and column one-hot, so the language
model knows which cell comes next without counting positions, and whether each of the 6 (shape, size) masks covers it,
so drawing comes down to reading the caption (which colour, which mask). It deliberately says nothing about the colour just
drawn: a model that can read it learns to copy its neighbours (the cell to the left, the cell above), which teacher
forcing hides (a first version predicted 99.8 % of next tokens right, yet free-running it never started the shape and
drew half the cells right). Without it, each cell's colour is computed from the caption and the cell alone, so one
unlucky draw cannot spread; the sampled code still decides the next cell, so the feedback path is exercised.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from janus_rt.model.janus import JanusModel
from janus_rt.toy.scenes import GRID, SHAPES, SIZES, inside

COLOURS = 8
OUT_SCALE = 1.01  # the last convolution's gain: +-1.01 clips to exactly 0 / 255 after the truncating conversion
CELLS = GRID * GRID


def _centre_identity(conv: torch.nn.Conv2d) -> None:
    """A 3 x 3 (or 1 x 1) convolution that returns its input (channels in = out)."""
    conv.weight.zero_()
    centre = conv.weight.shape[-1] // 2
    conv.weight[:, :, centre, centre] = torch.eye(conv.weight.shape[0], conv.weight.shape[1])
    conv.bias.zero_()


def _identity_resnet(block: torch.nn.Module) -> None:
    block.conv2.weight.zero_()
    block.conv2.bias.zero_()


@torch.no_grad()
def set_vq_decoder(model: JanusModel) -> None:
    """Write the flat-colour decoder (module docstring) into `model.vq`."""
    vq = model.vq
    bits = torch.tensor([[(c >> (2 - k)) & 1 for k in range(3)] for c in range(COLOURS)], dtype=torch.float32)
    signs = bits * 2 - 1  # [8, 3] +-1 per colour bit (R, G, B)
    vq.codebook.zero_()
    colour_of_code = torch.arange(vq.codebook.shape[0]) // CELLS
    vq.codebook[torch.arange(vq.codebook.shape[0]), colour_of_code] = 1.0  # row (colour, cell) = e_colour
    vq.post_quant_conv.weight.zero_()
    vq.post_quant_conv.bias.zero_()
    vq.post_quant_conv.weight[:3, :COLOURS, 0, 0] = signs.T  # channel k = bit k of the code's colour
    _centre_identity(vq.conv_in)
    for module in vq.modules():
        if type(module).__name__ == "ResnetBlock":
            _identity_resnet(module)
            if module.nin_shortcut is not None:  # the narrow body -> the wide last level: bit k -> (b, -b)
                shortcut = module.nin_shortcut
                shortcut.weight.zero_()
                shortcut.bias.zero_()
                for k in range(3):
                    shortcut.weight[2 * k, k, 0, 0], shortcut.weight[2 * k + 1, k, 0, 0] = 1.0, -1.0
                shortcut.bias[6::2], shortcut.bias[7::2] = 1.0, -1.0  # unused groups: (1, -1)
        elif type(module).__name__ == "AttnBlock":
            module.proj_out.weight.zero_()
            module.proj_out.bias.zero_()
        elif type(module).__name__ == "Upsample":
            _centre_identity(module.conv)
    vq.norm_out.weight.fill_(1.0)
    vq.norm_out.bias.zero_()
    vq.conv_out.weight.zero_()
    vq.conv_out.bias.zero_()
    for k in range(3):
        vq.conv_out.weight[k, 2 * k, 1, 1], vq.conv_out.weight[k, 2 * k + 1, 1, 1] = OUT_SCALE, -OUT_SCALE


def _pairs(start: int, count: int) -> tuple[slice, slice]:
    """`count` signed features stored as pairs (s, -s): the + halves, then the - halves."""
    return slice(start, start + count), slice(start + count, start + 2 * count)


# Vision features. Every feature the blocks read is a sign (+-1) stored as a pair (s, -s), so each patch's features sum
# to 0 and their squares to the same constant in every patch and every image: each LayerNorm before an attention is
# then one fixed scaling, and the attention weights below are exact.
COLOUR, COLOUR_NEG = _pairs(0, 3)  # the patch's colour bits (R, G, B)
CORNER, CORNER_NEG = _pairs(6, 1)  # + at the 4 corner patches (background in every scene)
CENTRE, CENTRE_NEG = _pairs(8, 1)  # + at the 4 centre patches (the shape in every scene)
MASK, MASK_NEG = _pairs(10, len(SHAPES) * len(SIZES))  # + where each (shape, size) would cover the patch
BACKGROUND, BACKGROUND_NEG = _pairs(22, 3)  # the background's colour bits (block 1 writes them into every patch)
SHAPE_COLOUR, SHAPE_COLOUR_NEG = _pairs(28, 3)  # the shape's colour bits (block 1)
COVERAGE, COVERAGE_NEG = _pairs(34, len(SHAPES) * len(SIZES))  # mean MASK sign over the shape's patches (block 2)
UNCOVERED, UNCOVERED_NEG = _pairs(46, len(SHAPES) * len(SIZES))  # ... and over the background's patches (block 2)
ONE, ONE_NEG = _pairs(58, 1)  # the constant 1 (a threshold's offset after a LayerNorm)
SCENE_SHAPE, SCENE_SHAPE_NEG = _pairs(60, len(SHAPES) * len(SIZES))  # one-hot (shape, size) of the scene (block 2)


def _width(*features: slice) -> int:
    return sum(f.stop - f.start for f in features)


# how many +-1 features each written attention's LayerNorm sees (its sigma): the position and colour signs, and then
# the two colours block 1 writes
SIGNS_BEFORE_BLOCK_1 = 2 * _width(COLOUR, CORNER, CENTRE, MASK, ONE)
SIGNS_BEFORE_BLOCK_2 = SIGNS_BEFORE_BLOCK_1 + 2 * _width(BACKGROUND, SHAPE_COLOUR)
MARGIN = 0.09  # about the smallest gap, over all scenes, between the scene's own mask and any other in COVERAGE -
# UNCOVERED (0.0896, `shape_masks`); the threshold sits at MARGIN / 2, so both sides keep >= 0.044 of it
SHARP = 100.0  # query x key gain of the written attentions: the attended patches outscore the rest by >= 35


def _pair_reader(weight: torch.Tensor, row: int, plus: int, minus: int, gain: float) -> None:
    """Row `row` of a linear after a LayerNorm reads `gain` x the sign stored at (plus, minus)."""
    weight[row, plus] = gain / 2
    weight[row, minus] = -gain / 2


def _write_pairs(proj: torch.Tensor, plus: slice, minus: slice, source: int) -> None:
    """An output projection that writes attention outputs `source..source+n` as pairs (s, -s)."""
    for k in range(plus.stop - plus.start):
        proj[plus.start + k, source + k] = 1.0
        proj[minus.start + k, source + k] = -1.0


@torch.no_grad()
def set_vision_tower(model: JanusModel) -> None:
    """Write the vision tower (module docstring) into `model.vision`: what each patch shows, and in every patch the
    background's colour, the shape's colour and how much of each (shape, size) the shape covers."""
    tower = model.vision
    width, patch = tower.patch_embed.weight.shape[0], tower.patch_embed.weight.shape[-1]
    heads = tower.blocks[0].attn.heads if tower.blocks else 0
    if width < SCENE_SHAPE_NEG.stop or len(tower.blocks) < 2 or heads < 2:
        raise ValueError(f"the toy vision tower needs a width of at least {SCENE_SHAPE_NEG.stop}, 2 blocks and 2 heads, "
                         f"got width {width}, {len(tower.blocks)} blocks, {heads} heads")
    head_dim = width // heads
    tower.patch_embed.weight.zero_()
    tower.patch_embed.bias.zero_()
    for k in range(3):  # the patch's mean of channel k (+-1 for a flat cell after the real preprocessing)
        tower.patch_embed.weight[COLOUR.start + k, k] = 1.0 / (patch * patch)
        tower.patch_embed.weight[COLOUR_NEG.start + k, k] = -1.0 / (patch * patch)
    rows, cols = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
    corner = ((rows == 0) | (rows == GRID - 1)) & ((cols == 0) | (cols == GRID - 1))
    centre = ((rows == GRID // 2 - 1) | (rows == GRID // 2)) & ((cols == GRID // 2 - 1) | (cols == GRID // 2))
    signs = torch.cat([corner[..., None], centre[..., None], torch.from_numpy(shape_masks())], -1)  # [24, 24, 8]
    signs = signs.reshape(CELLS, -1).float() * 2 - 1  # [576, 8]
    tower.pos_embed.zero_()
    tower.pos_embed[0, :, CORNER_NEG.start:CORNER_NEG.stop] = -signs[:, :1]
    tower.pos_embed[0, :, CENTRE_NEG.start:CENTRE_NEG.stop] = -signs[:, 1:2]
    tower.pos_embed[0, :, MASK_NEG] = -signs[:, 2:]
    tower.pos_embed[0, :, CORNER.start] = signs[:, 0]
    tower.pos_embed[0, :, CENTRE.start] = signs[:, 1]
    tower.pos_embed[0, :, MASK] = signs[:, 2:]
    tower.pos_embed[0, :, ONE.start], tower.pos_embed[0, :, ONE_NEG.start] = 1.0, -1.0
    for block in tower.blocks:  # every block starts as an identity (zero output projections)
        for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc2):
            linear.weight.zero_()
            linear.bias.zero_()
        block.norm1.weight.fill_(1.0)
        block.norm1.bias.zero_()
    q, k, v = 0, width, 2 * width  # qkv row offsets; head h owns rows h * head_dim .. of each
    # Block 1: head 0 attends to the corners and copies their colour (the background's), head 1 to the centre (the
    # shape's). Constant queries (the bias), keys from the position signs.
    sigma = math.sqrt(SIGNS_BEFORE_BLOCK_1 / width + tower.blocks[0].norm1.eps)
    first = tower.blocks[0].attn
    for head, (plus, minus), (out, out_neg) in ((0, (CORNER.start, CORNER_NEG.start), (BACKGROUND, BACKGROUND_NEG)),
                                                (1, (CENTRE.start, CENTRE_NEG.start), (SHAPE_COLOUR, SHAPE_COLOUR_NEG))):
        base = head * head_dim
        first.qkv.bias[q + base] = 1.0
        _pair_reader(first.qkv.weight, k + base, plus, minus, SHARP * sigma)
        for c in range(3):
            _pair_reader(first.qkv.weight, v + base + c, COLOUR.start + c, COLOUR_NEG.start + c, sigma)
        _write_pairs(first.proj.weight, out, out_neg, base)
    # Block 2: head 0's query is the shape's colour, its keys each patch's colour, so it attends to the patches of
    # the shape's colour (the shape) and averages their MASK signs: 1 for the scene's (shape, size) and any larger
    # mask that contains it. Head 1 does the same over the background's patches: -1 for the scene's mask and any
    # smaller one. Only the scene's own mask has both, so COVERAGE - UNCOVERED is 2 there and at most 2 - MARGIN
    # elsewhere; the MLP turns that into a one-hot (its LayerNorm scales by 1 / sigma, sigma in [0.7, 1] here, which
    # the threshold, read from the ONE feature, shares).
    sigma = math.sqrt(SIGNS_BEFORE_BLOCK_2 / width + tower.blocks[1].norm1.eps)
    second = tower.blocks[1].attn
    for head, (plus, minus), (out, out_neg) in (
            (0, (SHAPE_COLOUR.start, SHAPE_COLOUR_NEG.start), (COVERAGE, COVERAGE_NEG)),
            (1, (BACKGROUND.start, BACKGROUND_NEG.start), (UNCOVERED, UNCOVERED_NEG))):
        base = head * head_dim
        for c in range(3):
            _pair_reader(second.qkv.weight, q + base + c, plus + c, minus + c, sigma)
            _pair_reader(second.qkv.weight, k + base + c, COLOUR.start + c, COLOUR_NEG.start + c, SHARP * sigma)
        for j in range(MASK.stop - MASK.start):
            _pair_reader(second.qkv.weight, v + base + j, MASK.start + j, MASK_NEG.start + j, sigma)
        _write_pairs(second.proj.weight, out, out_neg, base)
    mlp, norm2 = tower.blocks[1].mlp, tower.blocks[1].norm2
    norm2.weight.fill_(1.0)
    norm2.bias.zero_()
    mlp.fc1.weight.zero_()
    mlp.fc1.bias.zero_()
    gain = 2000.0
    for j in range(MASK.stop - MASK.start):
        _pair_reader(mlp.fc1.weight, j, COVERAGE.start + j, COVERAGE_NEG.start + j, gain)
        _pair_reader(mlp.fc1.weight, j, UNCOVERED_NEG.start + j, UNCOVERED.start + j, gain)
        _pair_reader(mlp.fc1.weight, j, ONE.start, ONE_NEG.start, gain * (MARGIN / 2 - 2))
    _write_pairs(mlp.fc2.weight, SCENE_SHAPE, SCENE_SHAPE_NEG, 0)
    mlp.fc2.weight[SCENE_SHAPE] /= gain * MARGIN / 2  # "on" is then 1 / sigma
    mlp.fc2.weight[SCENE_SHAPE_NEG] /= gain * MARGIN / 2
    tower.norm.weight.fill_(1.0)
    tower.norm.bias.zero_()


MASK_FEATURES = slice(0, len(SHAPES) * len(SIZES))  # image-token embedding: is the next cell inside each shape?


@torch.no_grad()
def set_gen_embed(model: JanusModel) -> None:
    """Write the next-cell embedding table (module docstring) into `model.gen_embed`."""
    table = model.gen_embed.weight
    if table.shape[1] < COLOURS + 2 * GRID:
        raise ValueError(f"the toy image-token embedding needs a width of at least {COLOURS + 2 * GRID}")
    table.zero_()
    codes = torch.arange(table.shape[0])
    following = codes % CELLS + 1  # the next cell (none after the last)
    has_next = following < CELLS
    table[codes[has_next], COLOURS + following[has_next] // GRID] = 1.0
    table[codes[has_next], COLOURS + GRID + following[has_next] % GRID] = 1.0
    masks = torch.from_numpy(shape_masks()).reshape(CELLS, -1).float()  # [576, 6]
    table[codes[has_next], MASK_FEATURES] = masks[following[has_next]]


def shape_masks() -> np.ndarray:
    """bool `[GRID, GRID, 6]`: which cells each (shape, size) covers, in SHAPES x SIZES order."""
    return np.stack([inside(shape, size) for shape in SHAPES for size in SIZES], axis=-1)


def set_closed_form(model: JanusModel) -> None:
    set_vq_decoder(model)
    set_vision_tower(model)
    set_gen_embed(model)


CELL_FEATURES = slice(COLOURS, COLOURS + 2 * GRID)  # residual dimensions holding the next cell's row and column
CELL_UNITS = 4 * GRID + 1  # generation-head units that read them (a saturating pair per feature), and one guard
GAIN, THRESHOLD, STEP = 2500.0, 4.0, 40.0  # unit pair k: GELU(GAIN f - THRESHOLD) - GELU(GAIN f - THRESHOLD - STEP)
CELL_LOGIT_SCALE = 5.0  # a matching row (or column) adds STEP x this to a code's logit: 200 each
# Why these magnitudes: the head's rows are quantized per row (int8, fp8) or in groups of 128 inputs (int4), so the
# fixed weights in the second layer stay small (5, near the learned colour weights), the gain sits in the first layer
# (one weight per row: exact in every format), and the fixed units come last, after 128 learned ones, so no int4
# group mixes them. "On" needs GAIN x feature >= THRESHOLD + STEP + 5 (feature 0.84 / RMS of the last hidden state:
# any RMS up to 43), and the largest input stays far inside float16 (2500 x 0.84 / 0.1).
# The pair only cancels (a logit independent of the unit's input) if both weights quantize to the same magnitude:
# symmetric formats (int8, fp8) do; int4 with zero points fits [min, max] of the group in 15 steps, and for [-5, 5]
# the zero falls between two steps (-5 -> -5.33, +5 -> 4.67: a logit that grows with the input, enough to pick a
# wrong cell). The guard unit is always off (zero weights, bias -GUARD_OFF: exactly 0 out) and its weight in every
# row, GUARD_WEIGHT = 5 x 8 / 7, stretches the group's range to [-5, 40/7], whose 15 steps put 0 and +-5 on the grid.
GUARD_OFF = 1000.0
GUARD_WEIGHT = CELL_LOGIT_SCALE * 8 / 7


def cell_units(model: JanusModel) -> slice:
    """The generation head's units that read the next cell: its last CELL_UNITS (the others learn the colour)."""
    width = model.gen_head.proj.weight.shape[0]
    return slice(width - CELL_UNITS, width)


@torch.no_grad()
def set_cell_path(model: JanusModel, begin_of_image: int) -> dict[torch.nn.Parameter, torch.Tensor]:
    """The path that carries "which cell comes next" from the image-token embedding to the generation head's choice
    of code, and the masks (True = fixed) of the entries training must leave alone: `{parameter: mask}`.

    Classifier-free guidance mixes the two rows' logits as `u + w (c - u)`, so any difference between the
    conditional and unconditional rows' cell logits is amplified w times: a learned cell path (an earlier version)
    drew the right cells unguided and scrambled them at w = 3. So the path is exact and the same in both rows:
    the generation aligner and the first residual dimensions' writers are fixed (the aligner passes the embedding
    through; no attention or MLP output writes the CELL_FEATURES dimensions, which hold the one-hot row and column of
    the next cell from the input to the last layer; `<begin_of_image>` holds cell 0), the final norm leaves them
    unscaled, and the head reads each with a saturating pair of GELU units, which turns "on" into exactly STEP
    whatever the row's RMS and "off" into 0. Each code's logit adds CELL_LOGIT_SCALE x STEP per matching row and
    column. The head's other units (as many again) learn the colour of each cell."""
    llm, features = model.llm, CELL_FEATURES
    fixed: dict[torch.nn.Parameter, torch.Tensor] = {}

    def fix(param: torch.nn.Parameter, index) -> None:
        mask = fixed.setdefault(param, torch.zeros_like(param, dtype=torch.bool))
        mask[index] = True

    for layer in model.gen_aligner.layers:
        width = layer.weight.shape[1]
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[:width, :width] = torch.eye(width)
        fix(layer.weight, slice(None))
        fix(layer.bias, slice(None))
    for block in llm.layers:  # nothing writes the cell features
        for writer in (block.attn.o_proj.weight, block.mlp.down_proj.weight):
            writer[features] = 0.0
            fix(writer, features)
    llm.norm.weight[features] = 1.0
    fix(llm.norm.weight, features)
    begin = llm.embed_tokens.weight
    begin[begin_of_image, features] = 0.0
    begin[begin_of_image, COLOURS] = begin[begin_of_image, COLOURS + GRID] = 1.0  # next: row 0, column 0
    fix(begin, (begin_of_image, features))
    begin[begin_of_image, MASK_FEATURES] = torch.from_numpy(shape_masks()[0, 0]).float()  # cell 0's masks
    fix(begin, (begin_of_image, MASK_FEATURES))
    proj, out = model.gen_head.proj, model.gen_head.out
    units = cell_units(model)
    first, guard = units.start, units.stop - 1
    pairs = torch.arange(2 * GRID)
    proj.weight[units] = 0.0
    proj.weight[first + 2 * pairs, COLOURS + pairs] = GAIN
    proj.weight[first + 2 * pairs + 1, COLOURS + pairs] = GAIN
    proj.bias[first + 2 * pairs] = -THRESHOLD
    proj.bias[first + 2 * pairs + 1] = -THRESHOLD - STEP
    proj.bias[guard] = -GUARD_OFF
    fix(proj.weight, units)
    fix(proj.bias, units)
    out.weight[:, units] = 0.0
    codes = torch.arange(out.weight.shape[0])
    cells = codes % CELLS
    for feature in (cells // GRID, GRID + cells % GRID):
        out.weight[codes, first + 2 * feature] = CELL_LOGIT_SCALE
        out.weight[codes, first + 2 * feature + 1] = -CELL_LOGIT_SCALE
    out.weight[:, guard] = GUARD_WEIGHT
    fix(out.weight, (slice(None), units))
    seeded = torch.Generator().manual_seed(0)
    out.weight[:, :first] = 0.02 * torch.randn(out.weight.shape[0], first, generator=seeded)
    return fixed
