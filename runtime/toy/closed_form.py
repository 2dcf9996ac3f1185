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

Vision tower (pixels -> what each patch shows and where): a cell is exactly one 16 x 16 patch; the patch embedding
averages each colour channel (+-1 after the real preprocessing), the position embedding adds the patch's row and
column as one-hot features, every block is an identity (zero output projections), the final LayerNorm stays. The
aligner that maps these features to the language model is trained.

Image-token embedding (`gen_embed`): code (colour, cell) -> the NEXT cell's row and column one-hot, so the language
model knows which cell comes next without counting positions. It deliberately says nothing about the colour just
drawn: a model that can read it learns to copy its neighbours (the cell to the left, the cell above), which teacher
forcing hides (a first version predicted 99.8 % of next tokens right, yet free-running it never started the shape and
drew half the cells right). Without it, each cell's colour is computed from the caption and the cell alone, so one
unlucky draw cannot spread; the sampled code still decides the next cell, so the feedback path is exercised.
"""

from __future__ import annotations

import torch

from janus_rt.model.janus import JanusModel
from janus_rt.toy.scenes import GRID

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


@torch.no_grad()
def set_vision_tower(model: JanusModel) -> None:
    """Write the patch-colour + position vision tower (module docstring) into `model.vision`."""
    tower = model.vision
    width, patch = tower.patch_embed.weight.shape[0], tower.patch_embed.weight.shape[-1]
    if width < 3 + 2 * GRID:
        raise ValueError(f"the toy vision tower needs a width of at least {3 + 2 * GRID}, got {width}")
    tower.patch_embed.weight.zero_()
    tower.patch_embed.bias.zero_()
    for k in range(3):
        tower.patch_embed.weight[k, k] = 1.0 / (patch * patch)  # the patch's mean of channel k
    tower.pos_embed.zero_()
    patches = torch.arange(CELLS)
    tower.pos_embed[0, patches, 3 + patches // GRID] = 1.0  # row one-hot
    tower.pos_embed[0, patches, 3 + GRID + patches % GRID] = 1.0  # column one-hot
    for block in tower.blocks:
        block.attn.proj.weight.zero_()
        block.attn.proj.bias.zero_()
        block.mlp.fc2.weight.zero_()
        block.mlp.fc2.bias.zero_()


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


def set_closed_form(model: JanusModel) -> None:
    set_vq_decoder(model)
    set_vision_tower(model)
    set_gen_embed(model)


CELL_FEATURES = slice(COLOURS, COLOURS + 2 * GRID)  # residual dimensions holding the next cell's row and column
CELL_UNITS = 4 * GRID  # generation-head units that read them: a saturating pair per feature
GAIN, THRESHOLD, STEP = 500.0, 4.0, 8.0  # unit pair k: GELU(GAIN f - THRESHOLD) - GELU(GAIN f - THRESHOLD - STEP)
CELL_LOGIT_SCALE = 25.0  # a matching row (or column) adds STEP x this to a code's logit: 200 each


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
    proj, out = model.gen_head.proj, model.gen_head.out
    pairs = torch.arange(2 * GRID)
    proj.weight[:CELL_UNITS] = 0.0
    proj.weight[2 * pairs, COLOURS + pairs] = GAIN
    proj.weight[2 * pairs + 1, COLOURS + pairs] = GAIN
    proj.bias[:CELL_UNITS:2] = -THRESHOLD
    proj.bias[1:CELL_UNITS:2] = -THRESHOLD - STEP
    fix(proj.weight, slice(0, CELL_UNITS))
    fix(proj.bias, slice(0, CELL_UNITS))
    out.weight[:, :CELL_UNITS] = 0.0
    codes = torch.arange(out.weight.shape[0])
    cells = codes % CELLS
    for feature in (cells // GRID, GRID + cells % GRID):
        out.weight[codes, 2 * feature] = CELL_LOGIT_SCALE
        out.weight[codes, 2 * feature + 1] = -CELL_LOGIT_SCALE
    fix(out.weight, (slice(None), slice(0, CELL_UNITS)))
    seeded = torch.Generator().manual_seed(0)
    learned = slice(CELL_UNITS, out.weight.shape[1])
    out.weight[:, learned] = 0.02 * torch.randn(out.weight.shape[0], out.weight.shape[1] - CELL_UNITS, generator=seeded)
    return fixed
