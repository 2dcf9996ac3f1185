"""The toy model's shape and its tokenizer's corpus (what `janus_rt.toy.train` builds and trains).

About 3 M parameters in the file. About 0.8 M are trained: the 3-layer, 128-wide language model, the vision aligner,
the text head and the generation head's first layer and colour weights (8 x 128, tied across the 576 codes of a
colour while training, written out per code). The rest is written down (`closed_form`): the VQ decoder, the vision
tower, the image-token embedding table and the generation head's cell path. Real grid (24 x 24 image tokens,
384 x 384 images); 8 colours x 576 cells = 4608 image-token codes.
"""

from __future__ import annotations

from janus_rt.checkpoint.tiny import TinySpec
from janus_rt.requests.prompts import UNDERSTANDING_SYSTEM_PROMPT
from janus_rt.toy.scenes import CAPTION_TEMPLATES, COLOURS, QUESTIONS, SHAPES, SIZE_WORDS, SIZES
from janus_rt.toy.closed_form import CELLS

HIDDEN = 128
GEN_HEAD_WIDTH = 128 + 4 * 24 + 1  # the generation head's units: 128 learn each cell's colour, 96 read the cell, 1 guard


def toy_spec() -> TinySpec:
    codes = len(COLOURS) * CELLS
    return TinySpec(
        hidden=HIDDEN, layers=3, heads=4, kv_heads=4, intermediate=384,
        vision_width=96, vision_layers=2, vision_heads=2,
        codes=codes, code_dim=64,
        vq_channels=32, vq_mults=(2, 1, 1, 1, 1), vq_res_blocks=0, z_channels=32,
        max_positions=2048,  # a 630-token chat prompt plus the CLI's default 512 new tokens
        extra={"gen_head_config": {"cls": "vision_head", "model_type": "gen_head",
                                   "params": {"n_embed": HIDDEN, "image_token_embed": GEN_HEAD_WIDTH,
                                              "image_token_size": codes}}},
    )


TOKENIZER_SIZE = 640  # byte-level BPE tokens before the specials: enough for every toy word to be one token


def toy_corpus() -> list[str]:
    """Every word the toy reads or says, for its byte-level BPE: each caption, question and answer word many times
    (with the leading space it has in a sentence), so that each is one token and an answer's first token names it."""
    words = list(COLOURS) + list(SHAPES) + list(SIZES) + [w for ws in SIZE_WORDS.values() for w in ws]
    lines = [t.format(size=s, fg=f, shape=sh, bg=b) for t in CAPTION_TEMPLATES for s in SIZES for f in COLOURS
             for sh in SHAPES for b in COLOURS if f != b]
    lines += [q.format(shape=sh) for q, _ in QUESTIONS for sh in SHAPES] * 20
    lines += [" " + " ".join(words)] * 50
    lines += [UNDERSTANDING_SYSTEM_PROMPT, "User: Assistant: <|User|>: <|Assistant|>:"]
    return lines
