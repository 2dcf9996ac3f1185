"""What the `janus-rt` subcommands share: the model flags (and the examples under their help), loading a model
from them (and closing it when the command ends, Ctrl-C included), `--out` checks (a probe file written before any
slow work), PNG files (each written atomically; a write error reports what was saved), text safe to print, and the
comma-separated list parser. The subcommand modules import this
module, never each other; `janus_rt.bench`'s subcommands import it too (the CLI and the benchmarks sit on top).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import re
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from janus_rt import Janus, load
from janus_rt.engine import EngineConfig
from janus_rt.errors import InputError
from janus_rt.export.manifest import MANIFEST
from janus_rt.files import atomic_write
from janus_rt.files import check_out_folder as out_folder_rules
from janus_rt.quant.model import weight_format
from janus_rt.spelling import CLI

EPILOG = """examples:
  janus-rt demo                                   # tiny random model, no weights needed
  janus-rt info --model ~/models/Janus-Pro-7B
  janus-rt generate --model ~/models/Janus-Pro-1B "a red fox in the snow" -n 4 --seed 0
  janus-rt chat --model ~/models/Janus-Pro-1B --image photo.jpg "What is in this picture?"

--model takes a local checkpoint directory (official DeepSeek layout or Hugging Face layout). A hub id such
as deepseek-ai/Janus-Pro-1B is fetched only when huggingface_hub is installed and the machine is online.
"""

GRAPH_BACKENDS = ("onnxruntime", "tensorrt")  # run a `janus-rt export` folder, not the checkpoint's torch modules
PROBE_NAME = ".janus-rt-write-probe"  # written into an `--out` folder and removed before the model loads


class SaveError(Exception):
    """Writing an output file failed after the work was done; `saved` lists the files written before the error
    (the CLI reports both and exits 1)."""

    def __init__(self, message: str, saved: list[Path]) -> None:
        super().__init__(message)
        self.saved = saved


def show_progress() -> bool:
    """Progress bars only on a terminal: in a log or a pipe they are noise."""
    return sys.stderr.isatty()


def int_list(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16); 'none' or '' -> (): the CLI's comma-separated sizes (batch sizes, levels)."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,4,16, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be >= 1, got {text!r}")
    return values


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The flags that say which model to load and how (generate, chat, warmup, serve)."""
    p.add_argument("--model", required=True, help="checkpoint directory (or a hub id, see below)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="weights/activations dtype (default: bfloat16 on CUDA, float32 on CPU)")
    p.add_argument("--chat-format", default="auto", choices=["auto", "pro", "legacy"],
                   help="prompt roles: pro '<|User|>'/'<|Assistant|>', legacy 'User'/'Assistant' (Janus-1.3B); "
                        "auto detects from the tokenizer")
    p.add_argument("--backend", default="torch", choices=["torch", "triton", "onnxruntime", "tensorrt"],
                   help="torch (default, eager reference) or triton (fused kernels, CUDA-graph decode; the Triton "
                        "interpreter without a GPU) run the checkpoint; onnxruntime / tensorrt run a `janus-rt export` folder "
                        "(a checkpoint given to them is exported once into the export cache)")
    p.add_argument("--providers", default=None,
                   help="ONNX Runtime providers, comma-separated, e.g. CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--quantize", default=None, choices=["int8", "int4", "fp8"],
                   help="quantize the transformer's linears and heads while loading (torch / triton backends; "
                        "`janus-rt quantize` writes a quantized folder once instead)")
    p.add_argument("--fusions", default=None, metavar="LIST",
                   help="--backend triton only: optional fused decode kernels, not yet the default (README, 'The fast "
                        "path'): all, none, or norm, silu, attn joined by ','")
    e = p.add_argument_group("engine", "KV memory of the engine that batches requests (see README, 'The engine')")
    e.add_argument("--max-rows", type=int, default=None,
                   help="KV rows (2 per image in flight, 1 per answer); default: from --gpu-memory-utilization on "
                        "CUDA, 16 on CPU. More images than rows/2 run in waves")
    e.add_argument("--max-seq-len", type=int, default=None,
                   help="cache slots per row: prompt + generated tokens (default: the model's context, at most 2048)")
    e.add_argument("--gpu-memory-utilization", type=float, default=0.9,
                   help="fraction of the GPU's memory janus-rt may use, weights and KV rows together (default 0.9)")


def engine_config(args: argparse.Namespace) -> EngineConfig:
    """The engine flags as an `EngineConfig`, built and checked once, in flag names (before the model loads)."""
    return EngineConfig.checked(CLI, max_rows=args.max_rows, max_seq_len=args.max_seq_len,
                                gpu_memory_utilization=args.gpu_memory_utilization)


def load_model(args: argparse.Namespace, config: EngineConfig | None = None) -> Janus:
    """The model the `add_model_args` flags name, loaded with `config` (built from the flags when not given);
    prints the backend (and weight format) on stderr."""
    if args.backend in GRAPH_BACKENDS and args.quantize is not None:
        raise InputError(f"--quantize works with --backend torch or triton, not {args.backend} (export a float "
                         "checkpoint instead)")
    if args.backend not in GRAPH_BACKENDS and (Path(args.model).expanduser() / MANIFEST).is_file():
        raise InputError(f"--model {args.model} is a `janus-rt export` folder ({MANIFEST}): the {args.backend} backend "
                         "runs a checkpoint; add --backend onnxruntime (or tensorrt) to run the export", "--backend")
    providers = args.providers.split(",") if args.providers else None
    m = load(args.model, device=args.device, dtype=args.dtype, chat_format=args.chat_format, progress=show_progress(),
             backend=args.backend, providers=providers, engine=engine_config(args) if config is None else config,
             quantize=args.quantize, fusions=args.fusions)
    opened(args, m)
    fmt = weight_format(m.model) if m.model is not None else None
    print(f"backend      {m.step_backend.describe_mode()}{f'; {fmt} weights' if fmt else ''}", file=sys.stderr)
    return m


def opened(args: argparse.Namespace, m: Janus) -> Janus:
    """Register `m` on the command's `args` (`args.open_models`), to be closed by `close_models` when the command
    ends; returns `m`."""
    vars(args).setdefault("open_models", []).append(m)
    return m


def close_models(args: argparse.Namespace) -> None:
    """Close every model the command loaded, newest first: their engine threads stop and are joined, so the
    interpreter never exits (Ctrl-C included) while a thread still runs torch's C++ code, which aborts it with
    "terminate called without an active exception"."""
    models = vars(args).get("open_models", [])
    while models:
        with contextlib.suppress(Exception):
            models.pop().close()


def check_out_folder(out: Path, flag: str = "--out") -> None:
    """`--out` must be a folder we can create and write into: checked before any slow work by the rules of
    `janus_rt.files` (files are added into it: any folder), then by creating it and a probe file (removed again),
    so a folder the system refuses (`/proc/x`, a read-only mount) fails now, not after the images are made."""
    out_folder_rules(out, flag=flag)
    probe = out / PROBE_NAME
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"{flag} {out}: cannot write there ({e.strerror or e}); choose another folder", flag) from None


def slug(text: str) -> str:
    """A file-name stem from a prompt: lower case, runs of other characters as '-', at most 40 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "image"


def save_pngs(images, out: Path, stem: str, on_saved: Callable[[Path], None] | None = None) -> list[Path]:
    """Write uint8 HWC images as `stem-K.png` (each atomically: whole or not at all), never overwriting; call
    `on_saved(path)` after each; return the paths. A write error (a full disk, ...) raises SaveError listing the
    files written before it."""
    paths: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        taken = [int(m.group(1)) for p in out.glob(f"{stem}-*.png")
                 if (m := re.fullmatch(rf"{re.escape(stem)}-(\d+)\.png", p.name))]
        for k, image in enumerate(images, start=max(taken, default=-1) + 1):
            path = out / f"{stem}-{k}.png"
            atomic_write(path, lambda tmp, image=image: Image.fromarray(image).save(tmp, format="PNG"))
            paths.append(path)
            if on_saved is not None:
                on_saved(path)
    except OSError as e:
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise SaveError(f"writing the images in {out} failed after {len(paths)} of {len(images)}: {reason}",
                        paths) from e
    return paths


def printable(text: str) -> str:
    """`text` with control characters (other than newline and tab) shown as escapes (`\\x1b`), so a model's
    answer cannot move the cursor, clear the terminal or ring the bell when printed."""
    return "".join(ch if ch in "\n\t" or (ch.isprintable() and ch != "\x7f") else ascii(ch)[1:-1] for ch in text)
