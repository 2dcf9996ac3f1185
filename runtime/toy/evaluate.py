"""Does the toy draw what it is asked and say what it sees? Measured through the public API (any backend).

`cell_accuracy` reads a decoded image back into cells (`scenes.colours_of_image`) and compares them with the scene's
render; `ask` puts a question about an image to the model; `report` runs a fixed set of both
(`python -m janus_rt.toy.evaluate DIR` prints it for a trained checkpoint); `next_token_kl` compares two models'
next-token distributions (a quantized toy against fp32).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import janus_rt
from janus_rt.model.llm import KVCache
from janus_rt.model.prefill import text_embeddings
from janus_rt.quant.eval_measure import teacher_forced_image_logits
from janus_rt.toy.scenes import COLOURS, Scene, cell_codes, cell_colours, colours_of_image, render

CFG_WEIGHT = 3.0  # the toy's guidance weight: its unconditional model is weak, so a moderate weight suffices
PROBE_SCENES = (Scene("circle", "large", 4, 1), Scene("square", "large", 2, 7), Scene("triangle", "large", 6, 0),
                Scene("circle", "small", 7, 5), Scene("square", "small", 1, 6))


def cell_accuracy(image: np.ndarray, scene: Scene) -> float:
    """Fraction of the 576 cells of a decoded uint8 image whose colour is the scene's."""
    return float((colours_of_image(image) == cell_colours(scene)).mean())


def ask(m: janus_rt.Janus, scene: Scene | np.ndarray, question: str, max_new_tokens: int = 16) -> str:
    """The greedy answer (stripped) to `question` about a scene's render (or an image)."""
    image = render(cell_colours(scene)) if isinstance(scene, Scene) else scene
    return m.chat(question, image=image, max_new_tokens=max_new_tokens, temperature=0.0).text.strip()


@dataclass(frozen=True)
class ToyReport:
    drawn: dict[str, float]  # caption -> cell accuracy of its greedy image
    answers: dict[str, tuple[str, str]]  # question about a scene -> (answer, expected)

    @property
    def draw_accuracy(self) -> float:
        return float(np.mean(list(self.drawn.values())))

    @property
    def answer_accuracy(self) -> float:
        return float(np.mean([got == want for got, want in self.answers.values()]))


def report(m: janus_rt.Janus, scenes: tuple[Scene, ...] = PROBE_SCENES) -> ToyReport:
    images = m.generate_images([s.caption for s in scenes], temperature=0.0, cfg_weight=CFG_WEIGHT).images
    drawn = {s.caption: cell_accuracy(image, s) for s, image in zip(scenes, images)}
    answers = {}
    for s in scenes:
        for question, want in ((f"What colour is the {s.shape}?", COLOURS[s.fg]), ("What shape is it?", s.shape),
                               ("What colour is the background?", COLOURS[s.bg])):
            answers[f"{s.caption}: {question}"] = (ask(m, s, question), want)
    return ToyReport(drawn, answers)


@dataclass(frozen=True)
class NextTokenKL:
    image: float  # mean KL(reference || other) over the 576 CFG-mixed image-token distributions of a scene
    text: float  # mean KL(reference || other) over the answer's token distributions, image in the prompt


def _kl(reference: torch.Tensor, other: torch.Tensor) -> float:
    """Mean over rows of KL(softmax(reference) || softmax(other)), logits `[n, V]` in fp32."""
    log_p, log_q = F.log_softmax(reference.float(), -1), F.log_softmax(other.float(), -1)
    return float((log_p.exp() * (log_p - log_q)).sum(-1).mean())


@torch.inference_mode()
def _answer_logits(m: janus_rt.Janus, scene: Scene, question: str, answer: str) -> torch.Tensor:
    """Teacher-forced `lm_head` logits `[n, V]` at the positions that sample " answer" + EOS."""
    request, _ = m.chat_inputs(question, render(cell_colours(scene)))
    targets = m.tokenizer._tok.encode(" " + answer, add_special_tokens=False).ids + [m.tokenizer.special.eos]
    ids = request.ids + targets[:-1]
    embeds = text_embeddings(m.model, ids, request.pixel_values, m.tokenizer.special.image_placeholder)  # [1, T, D]
    total = embeds.shape[1]
    cache = KVCache.allocate(m.config.llm, 1, total, m.device, m.dtype)
    hidden = m.model.llm(embeds, torch.arange(total, device=m.device)[None], cache, 0)[0, len(request.ids) - 1:]
    return m.model.lm_head(hidden).float().cpu()  # [n, V]


def next_token_kl(reference: janus_rt.Janus, other: janus_rt.Janus, scene: Scene) -> NextTokenKL:
    """How far `other`'s next-token distributions are from `reference`'s on one scene: its drawing (teacher-forced
    with the scene's codes, CFG-mixed) and the answer to a colour question about its render."""
    codes = torch.from_numpy(cell_codes(cell_colours(scene)))
    image = _kl(teacher_forced_image_logits(reference, scene.caption, codes, CFG_WEIGHT),
                teacher_forced_image_logits(other, scene.caption, codes, CFG_WEIGHT))
    question, answer = f"What colour is the {scene.shape}?", COLOURS[scene.fg]
    text = _kl(_answer_logits(reference, scene, question, answer), _answer_logits(other, scene, question, answer))
    return NextTokenKL(image, text)


def main(argv: list[str] | None = None) -> int:
    """`python -m janus_rt.toy.evaluate DIR`: the probe scenes' cell accuracy and answers of a trained toy."""
    p = argparse.ArgumentParser(prog="python -m janus_rt.toy.evaluate", description=main.__doc__)
    p.add_argument("checkpoint", help="a folder written by `python -m janus_rt.toy.train` (or `toy`: the shipped one)")
    p.add_argument("--quantized", action="store_true",
                   help="also load it as int8, int4 and fp8 and print each one's cell accuracy, answers and KL of "
                        "next-token distributions against fp32")
    args = p.parse_args(argv)
    m = janus_rt.load(args.checkpoint, device="cpu", dtype="float32")
    try:
        result = report(m)
    finally:
        m.close()
    for caption, accuracy in result.drawn.items():
        print(f"draw   {accuracy:6.1%}  {caption}")
    for question, (got, want) in result.answers.items():
        print(f"answer {'ok   ' if got == want else 'WRONG'}  {question} -> {got!r} (want {want!r})")
    print(f"cells right {result.draw_accuracy:.1%} (greedy, cfg {CFG_WEIGHT:g}), answers right {result.answer_accuracy:.1%}")
    if args.quantized:
        reference = janus_rt.load(args.checkpoint, device="cpu", dtype="float32")
        try:
            for fmt in ("int8", "int4", "fp8"):
                m = janus_rt.load(args.checkpoint, device="cpu", dtype="float32", quantize=fmt)
                try:
                    result, kl = report(m), next_token_kl(reference, m, PROBE_SCENES[0])
                finally:
                    m.close()
                print(f"{fmt:5s}: cells right {result.draw_accuracy:.1%}, answers right {result.answer_accuracy:.1%}, "
                      f"KL(fp32 || {fmt}) per next token: image {kl.image:.2e}, text {kl.text:.2e} "
                      f"({PROBE_SCENES[0].caption})")
        finally:
            reference.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
