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


@torch.no_grad()
def init_cell_path(model: JanusModel, begin_of_image: int) -> None:
    """A starting point for training (not a fixed part): the path that copies "which cell comes next" from the
    image-token embedding to the generation head's choice of code. The generation aligner passes the embedding's
    64 features to the first 64 residual dimensions, `<begin_of_image>` says "cell 0 next", and the head's output
    row of code (colour, cell) reads that cell's row and column features. Training then only has to learn the
    colour of each cell (and may reshape this path); without it, the model spends most of its steps learning to
    count to 576."""
    width = model.gen_embed.weight.shape[1]  # 64
    first, second = model.gen_aligner.layers[0], model.gen_aligner.layers[1]
    first.weight.zero_()
    first.bias.zero_()
    first.weight[:width, :width] = torch.eye(width)
    second.weight.zero_()
    second.bias.zero_()
    second.weight[:width, :width] = torch.eye(width)
    begin = model.llm.embed_tokens.weight[begin_of_image]
    begin.zero_()
    begin[COLOURS] = begin[COLOURS + GRID] = 1.0  # next: row 0, column 0
    proj, out = model.gen_head.proj, model.gen_head.out
    proj.weight.zero_()
    proj.bias.zero_()
    proj.weight[:width, :width] = torch.eye(width)
    out.weight.zero_()
    out.bias.zero_()
    codes = torch.arange(out.weight.shape[0])
    cells = codes % CELLS
    out.weight[codes, COLOURS + cells // GRID] = 1.0
    out.weight[codes, COLOURS + GRID + cells % GRID] = 1.0
