"""Train the toy Janus: `python -m janus_rt.toy.train --out DIR` (2400 AdamW steps, about 24 minutes on 2 CPU cores, deterministic).

Recipe, and why: the parts a procedural world makes exact are written down (`closed_form`: the VQ decoder renders
codes as flat cells, the vision tower reports the patch's colour and, in every patch, the background's and the
shape's colours and the shape's coverage of each possible mask; the image-token embedding says which cell comes next
and which masks cover it; the cell path to the generation head is fixed), so training only has to learn what is
specific to Janus's language model: reading a paraphrased caption and drawing it cell by cell, and answering questions
about the 576 image embeddings spliced into a chat prompt. The language model (3 layers, 128 wide), the vision aligner,
the text head and the colour half of the generation head are trained together with AdamW on two kinds of sequences,
built with the runtime's own prompt code and run through the runtime's own modules (what is trained is what is served):
    drawing:   the generation prompt of a paraphrased caption, then the scene's 576 codes (teacher forcing); with
               probability CAPTION_DROPOUT the caption's ids are replaced by the pad id exactly as the runtime builds
               its unconditional CFG rows, so classifier-free guidance has an unconditional model to push against;
    answering: the understanding prompt with the scene's render (through the real preprocessing and the vision
               tower) and a question, then the one-word answer (or the canonical caption) and EOS.
Two choices make it cheap. The generation head's colour weights are tied across the 576 codes of a colour during
training (`TiedColourHead`: every drawn cell teaches every cell; written out per code, the official layout). And most
sequences keep a random subset of their image positions, at their true positions (a cell's colour depends only on
the caption and the cell; every patch carries the whole image's summary), so a step sees many captions and scenes for
the cost of a few whole sequences; a few whole sequences per step keep attention right over all 576 positions.
Everything is seeded (`--seed`), so two runs on the same machine give the same weights; the written checkpoint is the
official layout, which `janus_rt.load` reads with the same strict loader as a real release.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import janus_rt
from janus_rt.checkpoint.official_writer import official_state_dict
from janus_rt.checkpoint.tiny import save_weights, write_tiny_checkpoint
from janus_rt.files import staged_folder
from janus_rt.model.janus import JanusModel
from janus_rt.requests.prompts import generation_prompt
from janus_rt.toy.closed_form import CELLS, cell_units, set_cell_path, set_closed_form
from janus_rt.toy.model_spec import TOKENIZER_SIZE, toy_corpus, toy_spec
from janus_rt.toy.scenes import Scene, all_scenes, cell_codes, cell_colours, render
from janus_rt.toy.shipped import pack

CAPTION_DROPOUT = 0.1
TRAINED = ("llm.", "lm_head.", "aligner.", "gen_head.proj.")  # parameter name prefixes that learn (the generation
# aligner is written down: `closed_form.set_cell_path`)
WEIGHTS_DTYPE = torch.float16  # the written file: half the size (the written-down values are exact in fp16)


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2400
    draw_batch: int = 16  # drawings per step, each on a random subset of `draw_cells` image positions ...
    draw_cells: int = 64
    answer_batch: int = 32  # ... and answers per step, each seeing `answer_patches` of the 576 image embeddings;
    answer_patches: int = 32
    whole_draws: int = 1  # plus whole sequences, every position as served (attention must not be diluted by all
    whole_answers: int = 4  # 576 image positions at inference when it learned on a subset)
    lr: float = 3e-3
    warmup: int = 30
    seed: int = 0


class TrainingCache:
    """One key / value tensor per layer, so the model's in-place cache writes stay differentiable."""

    def __init__(self, model: janus_rt.Janus, batch: int, length: int):
        c = model.config.llm
        shape = (batch, c.num_kv_heads, length, c.head_dim)
        self.keys = [torch.zeros(shape) for _ in range(c.num_layers)]
        self.values = [torch.zeros(shape) for _ in range(c.num_layers)]
        self.max_len = length


class Examples:
    """Drawing and answering sequences, as input embeddings and targets."""

    def __init__(self, m: janus_rt.Janus):
        self.m = m
        self.model = m.model
        self.scenes = all_scenes()
        self.codes = {s: torch.from_numpy(cell_codes(cell_colours(s))) for s in self.scenes}  # [576] each
        self.pad = m.tokenizer.special.pad
        self.eos = m.tokenizer.special.eos
        self.placeholder = m.tokenizer.special.image_placeholder
        self._features: dict[Scene, torch.Tensor] = {}
        self._question_ids: dict[str, list[int]] = {}

    def features(self, scene: Scene) -> torch.Tensor:
        """The frozen vision tower's features of the scene's render `[576, width]` (computed once)."""
        if scene not in self._features:
            _, pixels = self._prompt(scene, "")
            with torch.no_grad():
                self._features[scene] = self.model.vision(pixels)[0]
        return self._features[scene]

    def _prompt(self, scene: Scene, question: str) -> tuple[list[int], torch.Tensor]:
        request, _ = self.m.chat_inputs(question or "Describe this image.", render(cell_colours(scene)))
        return request.ids, request.pixel_values

    def question_ids(self, question: str) -> list[int]:
        if question not in self._question_ids:
            self._question_ids[question] = self._prompt(self.scenes[0], question)[0]
        return self._question_ids[question]

    def drawing(self, scene: Scene, rng: random.Random, cells: int | None = None) -> Example:
        """The generation prompt of a paraphrase, then the scene's codes, teacher-forced: inputs `[L + 575, D]`, the
        codes as targets after the prompt. With `cells`, only that many image positions (a random subset, at their
        true positions) are kept: each cell's colour depends on the caption and the cell alone (the embedding says
        which cell comes next, never a colour), so a subset teaches the same function at a fraction of the cost."""
        text = generation_prompt(scene.caption_variant(rng), self.m.chat_format)
        ids = self.m.tokenizer.encode(text)
        if rng.random() < CAPTION_DROPOUT:
            ids = [ids[0]] + [self.pad] * (len(ids) - 2) + [ids[-1]]  # the runtime's unconditional row
        codes = self.codes[scene]
        image_slots = torch.arange(CELLS - 1)  # slot j holds code j and predicts code j + 1
        if cells is not None:
            image_slots = torch.tensor(sorted(rng.sample(range(CELLS - 1), cells)))
        embeds = torch.cat([self.model.llm.embed_tokens(torch.tensor(ids)),
                            self.model.gen_token_embeddings(codes[image_slots])])  # [L + n, D]
        targets = torch.cat([torch.full((len(ids) - 1,), -100), codes[:1], codes[image_slots + 1]])  # [L + n]
        positions = torch.cat([torch.arange(len(ids)), len(ids) + image_slots])  # [L + n]
        return Example(embeds, targets, positions)

    def answering(self, scene: Scene, rng: random.Random, patches: int | None = None) -> Example:
        """The understanding prompt with the render's 576 embeddings and a question, then the answer and EOS. With
        `patches`, only that many image embeddings (a random subset, at their true positions) are kept: the vision
        tower puts the whole image's summary into every patch, so any subset still holds the answer."""
        question, answer = scene.question_answer(rng)
        ids = self.question_ids(question)
        answer_ids = self.m.tokenizer._tok.encode(" " + answer, add_special_tokens=False).ids + [self.eos]
        full = torch.tensor(ids + answer_ids)
        embeds = self.model.llm.embed_tokens(full).clone()  # [T, D]
        slots = torch.nonzero(full == self.placeholder).flatten()  # [576] the image embeddings' positions
        embeds[slots] = self.model.aligner(self.features(scene))
        targets = torch.full((len(full),), -100, dtype=torch.long)
        targets[len(ids) - 1:-1] = torch.tensor(answer_ids)
        positions = torch.arange(len(full))
        if patches is not None:
            keep = torch.ones(len(full), dtype=torch.bool)
            keep[slots] = False
            keep[slots[torch.tensor(rng.sample(range(len(slots)), patches))]] = True
            embeds, targets, positions = embeds[keep], targets[keep], positions[keep]
        return Example(embeds, targets, positions)


@dataclass
class Example:
    """One training sequence: input embeddings `[T, D]`, targets `[T]` (-100 where nothing is predicted) and RoPE
    positions `[T]` (not contiguous when a subset of the image positions is kept)."""

    embeds: torch.Tensor
    targets: torch.Tensor
    positions: torch.Tensor


class TiedColourHead(torch.nn.Module):
    """The generation head as it is trained: its code logits are the fixed cell part (`closed_form.set_cell_path`)
    plus a colour part that all 576 codes of a colour share (one row per colour instead of one per code, so every
    drawn cell teaches every cell). `write_back` expands it into the head's per-code rows, the official layout."""

    def __init__(self, model: JanusModel, seed: int):
        super().__init__()
        head = model.gen_head
        self.proj = head.proj  # the head's own first layer (its cell units stay fixed through the gradient masks)
        self.cells = cell_units(model)
        codes = head.out.weight.shape[0]
        self.register_buffer("cell_weight", head.out.weight[:, self.cells].detach().clone())  # [codes, CELL_UNITS]
        self.register_buffer("colour_of_code", torch.arange(codes) // CELLS)  # [codes]
        seeded = torch.Generator().manual_seed(seed)
        self.colour_weight = torch.nn.Parameter(0.02 * torch.randn(codes // CELLS, self.cells.start, generator=seeded))
        self.colour_bias = torch.nn.Parameter(torch.zeros(codes // CELLS))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        units = F.gelu(self.proj(hidden))  # [N, width]
        colour = units[:, :self.cells.start] @ self.colour_weight.T + self.colour_bias  # [N, colours]
        return units[:, self.cells] @ self.cell_weight.T + colour[:, self.colour_of_code]  # [N, codes]

    @torch.no_grad()
    def write_back(self, head: torch.nn.Module) -> None:
        head.out.weight[:, :self.cells.start] = self.colour_weight[self.colour_of_code]
        head.out.bias.copy_(self.colour_bias[self.colour_of_code])


def padded(examples: list[Example]) -> Example:
    """Right-padded batch `[B, T, D]`, `[B, T]`, `[B, T]` (padding comes after every real position: causal attention
    never reads it, and it predicts nothing)."""
    length = max(len(e.targets) for e in examples)
    return Example(torch.stack([F.pad(e.embeds, (0, 0, 0, length - len(e.targets))) for e in examples]),
                   torch.stack([F.pad(e.targets, (0, length - len(e.targets)), value=-100) for e in examples]),
                   torch.stack([F.pad(e.positions, (0, length - len(e.targets))) for e in examples]))


def loss_of(m: janus_rt.Janus, batch: Example, head: torch.nn.Module) -> torch.Tensor:
    b, t, _ = batch.embeds.shape
    hidden = m.model.llm(batch.embeds, batch.positions, TrainingCache(m, b, t), 0)  # [B, T, D]
    keep = batch.targets != -100
    return F.cross_entropy(head(hidden[keep]), batch.targets[keep])


def mean_loss(m: janus_rt.Janus, batches: list[list[Example]], head: torch.nn.Module) -> torch.Tensor:
    """The mean of the batches' losses, each batch padded on its own (short subsets are not padded to full length)."""
    losses = [loss_of(m, padded(batch), head) for batch in batches if batch]
    return torch.stack(losses).mean()


def train(m: janus_rt.Janus, settings: TrainSettings, fixed: dict[torch.nn.Parameter, torch.Tensor] | None = None,
          progress: bool = True) -> dict:
    """Train `m`'s learnable parts in place, leaving the `fixed` entries (mask True) of those parameters as they are
    (their gradients are zeroed; AdamW without weight decay then never moves them); returns the last losses."""
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    examples = Examples(m)
    gen_head = TiedColourHead(m.model, settings.seed)
    params = [p for name, p in m.model.named_parameters() if name.startswith(TRAINED)]
    params += [gen_head.colour_weight, gen_head.colour_bias]
    for name, p in m.model.named_parameters():
        p.requires_grad_(name.startswith(TRAINED))
    hooks = [param.register_hook(lambda grad, mask=mask: grad.masked_fill(mask, 0.0))
             for param, mask in (fixed or {}).items() if param.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.98), weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < settings.warmup:
            return (step + 1) / settings.warmup
        done = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    losses = {"draw": float("nan"), "answer": float("nan")}
    with torch.enable_grad(), tqdm(range(settings.steps), desc="training the toy", disable=not progress) as bar:
        for _ in bar:
            draw = [examples.drawing(rng.choice(examples.scenes), rng, settings.draw_cells)
                    for _ in range(settings.draw_batch)]
            whole_draw = [examples.drawing(rng.choice(examples.scenes), rng) for _ in range(settings.whole_draws)]
            answer = [examples.answering(rng.choice(examples.scenes), rng, settings.answer_patches)
                      for _ in range(settings.answer_batch)]
            whole_answer = [examples.answering(rng.choice(examples.scenes), rng) for _ in range(settings.whole_answers)]
            draw_loss = mean_loss(m, [draw, whole_draw], gen_head)
            answer_loss = mean_loss(m, [answer, whole_answer], m.model.lm_head)
            opt.zero_grad(set_to_none=True)
            (draw_loss + answer_loss).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses = {"draw": draw_loss.item(), "answer": answer_loss.item()}
            bar.set_postfix(draw=f"{losses['draw']:.3f}", answer=f"{losses['answer']:.3f}")
    for hook in hooks:
        hook.remove()
    gen_head.write_back(m.model.gen_head)
    for p in m.model.parameters():
        p.requires_grad_(False)
    return losses


def weights_digest(folder: Path) -> str:
    """sha256 of the checkpoint's weight file (recorded in toy.json, so a shipped copy can be checked)."""
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def build(out: Path, settings: TrainSettings, progress: bool = True) -> Path:
    """Write the initial checkpoint, set its closed-form parts, train, and write the trained one to `out`."""
    with tempfile.TemporaryDirectory(prefix="janus-rt-toy-") as tmp:
        start = write_tiny_checkpoint(Path(tmp) / "init", toy_spec(), "safetensors", settings.seed, toy_corpus(),
                                      TOKENIZER_SIZE)
        m = janus_rt.load(start, device="cpu", dtype="float32")
        try:
            set_closed_form(m.model)
            fixed = set_cell_path(m.model, m.tokenizer.special.begin_of_image)
            losses = train(m, settings, fixed, progress)
            with staged_folder(out) as staging:
                for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
                    (staging / name).write_bytes((start / name).read_bytes())
                save_weights(official_state_dict(m.model, WEIGHTS_DTYPE), staging, "safetensors")
                record = {"settings": settings.__dict__, "final_losses": losses,
                          "weights_sha256": weights_digest(staging), "torch": torch.__version__}
                (staging / "toy.json").write_text(json.dumps(record, indent=2) + "\n")
        finally:
            m.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m janus_rt.toy.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write the checkpoint to (must not exist, or be empty)")
    p.add_argument("--steps", type=int, default=TrainSettings.steps, help=f"optimizer steps (default {TrainSettings.steps})")
    p.add_argument("--seed", type=int, default=TrainSettings.seed, help="seed of everything (default 0)")
    p.add_argument("--ship", action="store_true",
                   help="also pack the result into the package as the shipped toy (weights xz-compressed), replacing "
                        "it; then pin the new sha256 (toy.json) in tests/test_toy.py")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        p.error(f"--out {out} exists and is not empty; give a new folder")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    build(out, TrainSettings(steps=args.steps, seed=args.seed), progress=True)
    print(f"wrote {out}")
    if args.ship:
        print(f"shipped as {pack(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
