"""`janus-rt demo`: build a tiny RANDOM checkpoint and run chat + generate end to end (CPU, no download)."""

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


def add_demo_args(d: argparse.ArgumentParser) -> None:
    d.description = ("Build a tiny checkpoint with RANDOM weights (outputs are noise) and run chat and generate end "
                     "to end; no download needed.")
    d.add_argument("--out", default=None, help="keep the demo checkpoint and images here (default: a temp dir)")
    d.add_argument("--device", default="cpu", help="torch device (default cpu)")


def run_demo_command(args: argparse.Namespace) -> int:
    resolve_device(args.device, CLI)  # before anything is written
    if args.out:
        check_out_folder(Path(args.out))
        return run_demo(args, Path(args.out), kept=True)
    with tempfile.TemporaryDirectory(prefix="janus-rt-demo-") as work:  # removed afterwards, also on failure
        return run_demo(args, Path(work), kept=False)


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
