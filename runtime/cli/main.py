"""The `janus-rt` command line: generate, chat, info, export, warmup, demo, bench, bench-serve, quantize, eval-quant, serve."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from janus_rt.api import MAX_IMAGES_PER_CALL
from janus_rt.errors import InputError, JanusRTError
from janus_rt.spelling import CLI

EPILOG = """examples:
  janus-rt demo                                   # tiny random model, no weights needed
  janus-rt info --model ~/models/Janus-Pro-7B
  janus-rt generate --model ~/models/Janus-Pro-1B "a red fox in the snow" -n 4 --seed 0
  janus-rt chat --model ~/models/Janus-Pro-1B --image photo.jpg "What is in this picture?"

--model takes a local checkpoint directory (official DeepSeek layout or Hugging Face layout). A hub id such
as deepseek-ai/Janus-Pro-1B is fetched only when huggingface_hub is installed and the machine is online.
"""


def version_line() -> str:
    """`janus-rt X (torch Y, triton Z, Python W)`: what a bug report needs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from janus_rt import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"janus-rt {__version__} (torch {installed('torch')}, triton {installed('triton')}, "
            f"Python {platform.python_version()})")


def show_progress() -> bool:
    """Progress bars only on a terminal: in a log or a pipe they are noise."""
    return sys.stderr.isatty()


def _add_model_args(p: argparse.ArgumentParser) -> None:
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


def _add_sampling_args(p: argparse.ArgumentParser, temperature: float, top_k: int | None) -> None:
    p.add_argument("--temperature", type=float, default=temperature, help=f"0 = greedy/argmax (default {temperature})")
    p.add_argument("--top-k", type=int, default=top_k,
                   help=f"keep the k most likely tokens when sampling (default: {top_k or 'off'}; 0 turns it off)")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: off)")
    p.add_argument("--seed", type=int, default=None, help="make sampling reproducible on a given device")
    p.add_argument("--raw", action="store_true", help="use the prompt text as-is (no chat template)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="janus-rt",
        description="Run DeepSeek Janus / Janus-Pro models: text-to-image generation and image understanding.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print janus-rt's version (and torch's, triton's, Python's) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser("generate", help="text -> images (PNG files)", epilog=EPILOG,
                       description="Text -> images: sample images for PROMPT with classifier-free guidance,\n"
                                   "save them as PNG files in --out and print their paths.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(g)
    g.add_argument("prompt", help="what to draw")
    g.add_argument("-n", "--num-images", type=int, default=1,
                   help=f"images to sample (default 1; at most {MAX_IMAGES_PER_CALL} per call: every image is held in "
                        "memory until the call ends, and more images than the engine's rows run in waves)")
    g.add_argument("--cfg-weight", type=float, default=5.0, help="classifier-free guidance weight (default 5)")
    _add_sampling_args(g, temperature=1.0, top_k=None)
    g.add_argument("--out", default="janus-rt-images",
                   help="output folder, created if needed; files are never overwritten (default ./janus-rt-images)")

    c = sub.add_parser("chat", help="answer a question about images", epilog=EPILOG,
                       description="Answer QUESTION about the --image files (greedy by default) and print the answer.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(c)
    c.add_argument("question", help="the question; one <image_placeholder> per image is added when it has none")
    c.add_argument("--image", action="append", default=[], help="image file (repeat for several)")
    c.add_argument("--max-new-tokens", type=int, default=512,
                   help="answer length limit (default 512), in tokens; on a terminal a progress bar counts them")
    c.add_argument("--system-prompt", default=None, help="replace the reference's understanding system prompt")
    _add_sampling_args(c, temperature=0.0, top_k=50)

    i = sub.add_parser("info", help="variant, dimensions, parameter count and bytes of a checkpoint (no weights loaded)",
                       description="Print a checkpoint's variant, dimensions, parameter count and bytes; the weights "
                                   "are not loaded.")
    i.add_argument("--model", required=True, help="checkpoint directory (or a hub id)")
    i.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="report runtime bytes in this dtype (default: as stored)")
    i.add_argument("--json", action="store_true", help="print JSON")

    e = sub.add_parser("export", help="trace the model to ONNX graphs + manifest; optionally check them and build "
                                      "TensorRT engines", epilog=EXPORT_EPILOG,
                       description="Export the vision encoder, the transformer (KV cache in / out), the heads, the "
                                   "image-token embedding and the VQ decoder to ONNX in --out, with manifest.json.\n"
                                   "The folder is written atomically; exporting the same checkpoint again verifies it "
                                   "and skips the work.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", required=True, help="checkpoint directory (or a hub id)")
    e.add_argument("--out", required=True, help="export folder to create (must be new, empty, or an earlier export "
                                                "of the same checkpoint and dtype)")
    e.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="graph dtype (default float32); norms and softmax statistics stay fp32 in every dtype")
    e.add_argument("--check", action="store_true",
                   help="run every graph in ONNX Runtime on random inputs and compare with the torch modules (fp32)")
    e.add_argument("--providers", default=None, help="ONNX Runtime providers for --check, comma-separated (default CPU)")
    e.add_argument("--trt", action="store_true", help="also build TensorRT engines (needs an NVIDIA GPU and tensorrt>=10)")
    e.add_argument("--max-batch", type=int, default=8, help="TensorRT profiles: largest batch (rows; 2 per CFG image)")

    w = sub.add_parser("warmup", help="build every decode bucket and run the common shapes (fills the disk caches)",
                       description="Load a model, build every decode bucket the engine can reach with its planned "
                                   "rows (triton: compile, tune every GEMM tile, capture its CUDA graph; mixed image "
                                   "+ text buckets too), then run each common decode shape for a few steps; it prints "
                                   "how many buckets and how long. Triton compiles "
                                   "and tile choices land in the disk cache (JANUS_RT_CACHE_DIR, default "
                                   "~/.cache/janus-rt), so later processes reach their first image sooner. Servers: "
                                   "`janus-rt serve --warmup` does the same before opening the port.",
                       epilog="examples:\n  janus-rt warmup --model ~/models/Janus-Pro-7B --backend triton\n"
                              "  janus-rt warmup --model demo/tiny-janus --images 1,2 --text 1",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(w)
    w.add_argument("--images", type=_batch_sizes, default=(1, 2, 4, 8), metavar="N1,N2,...",
                   help="image batch sizes to warm (images in flight; 2 KV rows each; default 1,2,4,8; none to skip)")
    w.add_argument("--text", type=_batch_sizes, default=(1, 2, 4), metavar="N1,N2,...",
                   help="answer batch sizes to warm (answers in flight; default 1,2,4; none to skip)")

    d = sub.add_parser("demo", help="build a tiny RANDOM checkpoint and run chat + generate end to end on CPU",
                       description="Build a tiny checkpoint with RANDOM weights (outputs are noise) and run chat and "
                                   "generate end to end; no download needed.")
    d.add_argument("--out", default=None, help="keep the demo checkpoint and images here (default: a temp dir)")
    d.add_argument("--device", default="cpu", help="torch device (default cpu)")

    from janus_rt.bench.cli import add_bench_parser  # the bench subcommand lives in janus_rt.bench

    add_bench_parser(sub)
    from janus_rt.bench.serve_cli import add_bench_serve_parser  # `bench-serve`: load test of a running server

    add_bench_serve_parser(sub)
    from janus_rt.cli.quant import add_quantize_parser  # `quantize` lives in janus_rt.quant

    add_quantize_parser(sub)
    from janus_rt.cli.quant import add_eval_quant_parser  # `eval-quant`: quantized vs float outputs

    add_eval_quant_parser(sub)
    from janus_rt.cli.serve import add_serve_parser  # the serve subcommand lives in janus_rt.serve

    add_serve_parser(sub)
    return parser


EXPORT_EPILOG = """examples:
  janus-rt export --model ~/models/Janus-Pro-1B --out exports/pro-1b --check
  janus-rt export --model ~/models/Janus-Pro-1B --out exports/pro-1b-fp16 --dtype float16 --trt
  janus-rt generate --model exports/pro-1b --backend onnxruntime "a red fox in the snow" --seed 0

needs: pip install 'janus-rt[export]' (onnx, onnxscript, onnxruntime); --trt also needs 'janus-rt[trt]'
(tensorrt>=10) and an NVIDIA GPU. Graphs with over 1 GiB of weights keep them in NAME.onnx.data beside NAME.onnx.
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "image"


def save_pngs(images, out: Path, stem: str) -> list[Path]:
    """Write uint8 HWC images as `stem-K.png` (temp name, then renamed), never overwriting; return the paths."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in out.glob(f"{stem}-*.png") if (m := re.fullmatch(rf"{re.escape(stem)}-(\d+)\.png", p.name))]
    first = max(taken, default=-1) + 1
    paths = []
    for k, image in enumerate(images, start=first):
        path = out / f"{stem}-{k}.png"
        tmp = path.with_suffix(".png.tmp")
        Image.fromarray(image).save(tmp, format="PNG")
        tmp.replace(path)
        paths.append(path)
    return paths


def _load(args):
    from janus_rt import load
    from janus_rt.engine import EngineConfig
    from janus_rt.checkpoint.hub import resolve_model_path

    engine = args.backend in ("onnxruntime", "tensorrt")
    if engine and args.quantize is not None:
        raise InputError(f"--quantize works with --backend torch or triton, not {args.backend} (export a float "
                         "checkpoint instead)")
    providers = args.providers.split(",") if args.providers else None
    config = EngineConfig(max_rows=args.max_rows, max_seq_len=args.max_seq_len,
                          gpu_memory_utilization=args.gpu_memory_utilization)
    m = load(args.model if engine else resolve_model_path(args.model), device=args.device, dtype=args.dtype,
             chat_format=args.chat_format, progress=show_progress(), backend=args.backend, providers=providers,
             engine=config, quantize=args.quantize, fusions=args.fusions)
    from janus_rt.quant.model import weight_format

    fmt = weight_format(m.model) if m.model is not None else None
    print(f"backend      {m.step_backend.describe_mode()}{f'; {fmt} weights' if fmt else ''}", file=sys.stderr)
    return m


def check_out_folder(out: Path) -> None:
    """`--out` must be a folder we can create or write into; checked before any slow work."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder; pass a folder (new or existing)")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"--out {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: no permission to write in {ancestor}")


def _check_before_loading(args: argparse.Namespace) -> list:
    """Every check that needs no model, before the (slow) load, in flag names; returns the decoded --image files."""
    from janus_rt.api import check_chat_args, check_generation_args, resolve_device
    from janus_rt.engine import EngineConfig
    from janus_rt.requests.images import read_image_file

    top_k = args.top_k or None
    if args.command == "generate":
        if not args.prompt.strip():
            raise InputError("the prompt is empty; say what to draw, e.g. janus-rt generate ... \"a red fox\"")
        check_generation_args(args.num_images, args.cfg_weight, args.temperature, top_k, args.top_p, args.seed,
                              spelling=CLI)
        check_out_folder(Path(args.out))
    else:
        if not args.question.strip():
            raise InputError("the question is empty; ask something, e.g. janus-rt chat ... \"What is in this picture?\"")
        check_chat_args(args.max_new_tokens, args.temperature, top_k, args.top_p, args.seed, spelling=CLI)
    EngineConfig(max_rows=args.max_rows, max_seq_len=args.max_seq_len,
                 gpu_memory_utilization=args.gpu_memory_utilization).validate(CLI)
    if args.backend not in ("onnxruntime", "tensorrt"):  # graph backends resolve devices through their providers
        resolve_device(args.device, CLI)
    return [read_image_file(Path(image), "--image") for image in getattr(args, "image", [])]


def cmd_generate(args) -> int:
    _check_before_loading(args)
    m = _load(args)
    result = m.generate_images(args.prompt, num_images=args.num_images, cfg_weight=args.cfg_weight,
                               temperature=args.temperature, seed=args.seed, top_k=args.top_k or None, top_p=args.top_p,
                               raw=args.raw, progress=show_progress())
    for path in save_pngs(result.images, Path(args.out), _slug(args.prompt)):
        print(path)
    return 0


def cmd_chat(args) -> int:
    images = _check_before_loading(args)
    m = _load(args)
    job = m.submit_chat(args.question, image=images or None, max_new_tokens=args.max_new_tokens,
                        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k or None, seed=args.seed,
                        system_prompt=args.system_prompt, raw=args.raw)
    print(job.result(progress=show_progress()).text)
    return 0


def cmd_info(args) -> int:
    import torch

    from janus_rt.checkpoint.hub import resolve_model_path
    from janus_rt.checkpoint.info import checkpoint_info

    info = checkpoint_info(resolve_model_path(args.model), getattr(torch, args.dtype) if args.dtype else None)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    llm, v, vq = info["llm"], info["vision"], info["vq"]
    ck = info["checkpoint"]
    print(f"variant      {info['variant']} ({info['layout']} layout, {info['chat_format']} chat format)")
    print(f"language     hidden {llm['hidden']}, {llm['layers']} layers, {llm['heads']} heads "
          f"({llm['kv_heads']} kv) x {llm['head_dim']}, MLP {llm['intermediate']}, vocab {llm['vocab']}, context {llm['context']}")
    print(f"vision       SigLIP {v['image_size']}px / patch {v['patch']}, width {v['width']}, {v['layers']} layers, {v['heads']} heads")
    print(f"image gen    VQ {vq['codes']} codes x {vq['code_dim']}, {vq['image_tokens']} tokens -> {vq['image_size']}px")
    print(f"parameters   {info['parameters']:,} ({info['parameters'] / 1e9:.2f} B)")
    print(f"bytes        {info['bytes'] / 2**30:.2f} GiB in {info['dtype']}")
    print(f"checkpoint   {', '.join(ck['files'])} ({ck['stored_dtype']}, {ck['file_bytes'] / 2**30:.2f} GiB on disk)")
    q, step = info.get("quantization"), info["step_bytes"]
    if q is not None:
        group = f", groups of {q['group_size']}{' + zero points' if q.get('zero_point') else ''}" if q["format"] == "int4" else ""
        print(f"quantized    {q['format']}{group}: {q['modules']} linears (transformer + heads); the rest in {q['dtype']}")
    print(f"per step     image {step['image'] / 2**20:,.1f} MiB, text {step['text'] / 2**20:,.1f} MiB of weights read "
          f"({'quantized' if q is not None else info['dtype']})")
    return 0


def cmd_demo(args) -> int:
    from janus_rt.api import resolve_device

    resolve_device(args.device, CLI)  # before anything is written
    if args.out:
        check_out_folder(Path(args.out))
        return run_demo(Path(args.out), args.device, kept=True)
    with tempfile.TemporaryDirectory(prefix="janus-rt-demo-") as work:  # removed afterwards, also on failure
        return run_demo(Path(work), args.device, kept=False)


def run_demo(work: Path, device: str, kept: bool) -> int:
    """The demo's work in `work`; `kept` says whether the folder outlives the run (`--out`)."""
    import numpy as np

    from janus_rt import load
    from janus_rt.checkpoint.tiny import TinySpec, write_tiny_checkpoint

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
    m = load(ckpt, device=device, dtype="float32")
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


def cmd_serve(args) -> int:
    from janus_rt.cli.serve import run_serve

    return run_serve(args)


def cmd_bench(args) -> int:
    from janus_rt.bench.cli import run_bench_command

    return run_bench_command(args)


def _batch_sizes(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); 'none' -> () (the bench's list parser)."""
    from janus_rt.bench.cli import _int_list

    return _int_list(text)


def cmd_warmup(args) -> int:
    start = time.perf_counter()
    m = _load(args)
    loaded = time.perf_counter()
    try:
        steps = m.warmup(args.images, args.text, progress=show_progress())
    finally:
        m.close()
    for step in steps:
        what = {"buckets": f"{step.batch} bucket(s)", "image": f"{step.batch} image(s)",
                "text": f"{step.batch} answer(s)", "vq": "VQ decode"}[step.kind]
        print(f"warmed       {what:<14} {step.seconds:8.2f} s")
    print(f"done         load {loaded - start:.2f} s, warm-up {time.perf_counter() - loaded:.2f} s")
    return 0


def cmd_quantize(args) -> int:
    from janus_rt.cli.quant import run_quantize

    return run_quantize(args)


def cmd_eval_quant(args) -> int:
    from janus_rt.cli.quant import run_eval_quant

    return run_eval_quant(args)


def cmd_bench_serve(args) -> int:
    from janus_rt.bench.serve_cli import run_bench_serve_command

    return run_bench_serve_command(args)


def cmd_export(args) -> int:
    from janus_rt import load
    from janus_rt.export import check_export, export_onnx, format_report
    from janus_rt.checkpoint.hub import resolve_model_path

    if args.trt:  # fail before the slow part when TensorRT cannot run here
        from janus_rt.export.trt_builder import gpu_identity, import_tensorrt

        import_tensorrt()
        gpu_identity()
    # --check compares with fp32 torch modules; without it, load in the export dtype (half the memory for fp16)
    m = load(resolve_model_path(args.model), device="cpu", dtype="float32" if args.check else args.dtype, progress=True)
    result = export_onnx(m, Path(args.out), args.dtype, progress=True)
    size = sum(r["bytes"] for r in result.manifest["files"].values())
    verb = "already exported (verified, nothing rewritten)" if result.skipped else "exported"
    print(f"{verb}: {len(result.manifest['graphs'])} {args.dtype} graphs, {size / 2**20:.1f} MiB -> {result.path}")
    status = 0
    if args.check:
        rows = check_export(result.path, m, args.providers.split(",") if args.providers else None)
        print(format_report(rows))
        status = 0 if all(r.ok for r in rows) else 1
    if args.trt:
        from janus_rt.export.trt_builder import build_engines

        for graph, (path, _) in build_engines(result.path, result.manifest, max_batch=args.max_batch,
                                              progress=True).items():
            print(f"engine       {graph}: {path}")
    return status


COMMANDS = {"generate": cmd_generate, "chat": cmd_chat, "info": cmd_info, "demo": cmd_demo, "export": cmd_export,
            "bench": cmd_bench, "serve": cmd_serve, "bench-serve": cmd_bench_serve,
            "quantize": cmd_quantize, "warmup": cmd_warmup, "eval-quant": cmd_eval_quant}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except JanusRTError as e:
        print(f"janus-rt: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("janus-rt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early, e.g. `janus-rt info --model M --json | head -3`
        try:  # send the rest to /dev/null so the flush at interpreter exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):  # stdout is not a real file (e.g. captured)
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
