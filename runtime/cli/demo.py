"""`janus-rt demo`: the shipped toy draws what it is asked and answers a question about its own drawing; `--random`
builds a tiny RANDOM checkpoint instead and runs chat + generate end to end (outputs are noise). CPU, no download."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from janus_rt import load
from janus_rt.backends.choice import resolve_device
from janus_rt.checkpoint.tiny import TinySpec, write_tiny_checkpoint
from janus_rt.cli.common import check_out_folder, opened, save_pngs, show_progress
from janus_rt.errors import InputError
from janus_rt.spelling import CLI
from janus_rt.toy.evaluate import CFG_WEIGHT, cell_accuracy
from janus_rt.toy.scenes import scene_of_caption
from janus_rt.toy.shipped import copy_toy, toy_checkpoint


TOY_PROMPTS = ("a large red circle on a blue background", "a small yellow triangle on a black background")


def add_demo_args(d: argparse.ArgumentParser) -> None:
    d.description = ("Run the toy Janus shipped in the package (a 3 M parameter model trained here on scenes of one "
                     "coloured shape on a coloured background; no download): it draws the prompts it prints and "
                     "answers a question about its own drawing. --random builds a tiny checkpoint with RANDOM weights "
                     "instead (outputs are noise) and runs chat and generate end to end.")
    d.add_argument("--out", default=None, help="keep the demo checkpoint and images here (default: a temp dir)")
    d.add_argument("--device", default="cpu", help="torch device (default cpu)")
    d.add_argument("--random", action="store_true",
                   help="a tiny checkpoint with random weights (DIR/tiny-janus) instead of the trained toy")


def run_demo_command(args: argparse.Namespace) -> int:
    resolve_device(args.device, CLI)  # before anything is written
    if args.out:
        check_out_folder(Path(args.out))
        return (run_demo if args.random else run_toy_demo)(args, Path(args.out), kept=True)
    with tempfile.TemporaryDirectory(prefix="janus-rt-demo-") as work:  # removed afterwards, also on failure
        return (run_demo if args.random else run_toy_demo)(args, Path(work), kept=False)


def run_toy_demo(args: argparse.Namespace, work: Path, kept: bool) -> int:
    """The trained toy: draw TOY_PROMPTS, check the drawings, ask about the first one."""
    print("janus-rt demo: the toy Janus shipped in janus-rt, trained here on procedural scenes (one coloured shape on a")
    print("coloured background). It shows the whole pipeline works; it says nothing about real Janus quality or speed.")
    t0 = time.perf_counter()
    ckpt = toy_checkpoint()
    if kept:
        try:
            ckpt = copy_toy(work / "toy-janus")
        except FileExistsError as e:
            raise InputError(f"{e}") from None
    m = opened(args, load(ckpt, device=args.device, dtype="float32"))  # closed by the CLI, Ctrl-C included
    print(f"checkpoint   {ckpt} ({m.info()['parameters']:,} parameters, official layout)")
    t = time.perf_counter()
    result = m.generate_images(list(TOY_PROMPTS), seed=0, cfg_weight=CFG_WEIGHT, progress=show_progress())
    print(f"generate     {len(TOY_PROMPTS)} x {result.tokens.shape[1]} image tokens + VQ decode in "
          f"{time.perf_counter() - t:.2f}s")
    paths = save_pngs(result.images, work / "images", "demo")
    for prompt, image, path in zip(TOY_PROMPTS, result.images, paths):
        scene = scene_of_caption(prompt)
        shown = f"-> {path}" if kept else ""
        print(f"  {prompt!r}: {cell_accuracy(image, scene):.1%} of its 576 cells as asked {shown}")
    question = f"What colour is the {scene_of_caption(TOY_PROMPTS[0]).shape}?"
    t = time.perf_counter()
    answer = m.chat(question, image=result.images[0], max_new_tokens=8)
    print(f"chat         about the first drawing, {question!r} -> {answer.text.strip()!r} "
          f"({time.perf_counter() - t:.2f}s)")
    if not kept:
        print("             (written to a temp folder, removed at exit: `janus-rt demo --out DIR` keeps the toy's "
              "checkpoint and the images; every command also takes `--model toy`)")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    m.close()
    return 0


def run_demo(args: argparse.Namespace, work: Path, kept: bool) -> int:
    """The demo's work in `work`; `kept` says whether the folder outlives the run (`--out`)."""
    print("janus-rt demo: the weights are RANDOM (a tiny model built here); outputs are noise, but every step of a")
    print("real run executes: checkpoint files -> strict loading -> SigLIP + chat, and CFG image generation -> VQ decode.")
    t0 = time.perf_counter()
    ckpt = work / "tiny-janus"
    if (ckpt / "config.json").is_file():  # an earlier `demo --out` run wrote it (atomically); reuse it
        print(f"checkpoint   {ckpt} (reused from an earlier demo run in {work})")
    else:
        try:
            write_tiny_checkpoint(ckpt, TinySpec(vq_mults=(1, 1, 2, 2, 4)))
        except FileExistsError:
            raise InputError(f"{ckpt} exists and is not a demo checkpoint; pass another --out folder") from None
        print(f"checkpoint   {ckpt} (official layout, safetensors, tokenizer.json)")
    m = opened(args, load(ckpt, device=args.device, dtype="float32"))  # closed by the CLI, Ctrl-C included
    info = m.info()
    print(f"loaded       {info['parameters']:,} parameters, {info['dtype']}, chat format {m.chat_format}")
    image = np.random.default_rng(0).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    t = time.perf_counter()
    answer = m.chat("What is in this picture?", image=image, max_new_tokens=16)
    print(f"chat         {len(answer.token_ids)} tokens in {time.perf_counter() - t:.2f}s: {answer.text!r}")
    t = time.perf_counter()
    result = m.generate_images("a red fox in the snow", num_images=2, seed=0, progress=show_progress())
    paths = save_pngs(result.images, work / "images", "demo")
    print(f"generate     2 x {result.tokens.shape[1]} image tokens + VQ decode in {time.perf_counter() - t:.2f}s "
          f"-> {result.images.shape[1]}x{result.images.shape[2]} px")
    if kept:
        for path in paths:
            print(f"             {path}")
    else:
        print("             (written to a temp folder, removed at exit: `janus-rt demo --out DIR` keeps the checkpoint "
              "and images, to try info, generate, chat, export and serve on)")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    m.close()
    return 0
