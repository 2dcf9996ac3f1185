"""`janus-rt generate` (text -> PNG files) and `janus-rt chat` (a question about images -> the answer).

Both check everything that needs no model first (in flag names), then load the model and take the library's one
request path once: `prepare_images` / `prepare_chat` (janus_rt.requests), then `Janus.submit_prepared`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from janus_rt.backends.choice import resolve_device
from janus_rt.cli.common import (EPILOG, GRAPH_BACKENDS, add_model_args, check_out_folder, engine_config, load_model,
                                 printable, save_pngs, show_progress, slug)
from janus_rt.engine import EngineConfig, SamplingParams
from janus_rt.engine.params import CHAT_DEFAULTS, IMAGE_DEFAULTS
from janus_rt.errors import InputError
from janus_rt.requests.chat import Conversation, check_chat_args, prepare_chat
from janus_rt.requests.image import MAX_IMAGES_PER_CALL, check_generation_args, prepare_images
from janus_rt.requests.pixels import read_image_file
from janus_rt.spelling import CLI


def _add_sampling_args(p: argparse.ArgumentParser, defaults: SamplingParams) -> None:
    temperature, top_k = defaults.temperature, defaults.top_k
    p.add_argument("--temperature", type=float, default=temperature, help=f"0 = greedy/argmax (default {temperature})")
    p.add_argument("--top-k", type=int, default=top_k,
                   help=f"keep the k most likely tokens when sampling (default: {top_k or 'off'}; 0 turns it off)")
    p.add_argument("--top-p", type=float, default=defaults.top_p, help="nucleus sampling mass (default: off)")
    p.add_argument("--seed", type=int, default=None, help="make sampling reproducible on a given device")
    p.add_argument("--raw", action="store_true", help="use the prompt text as-is (no chat template)")


def add_generate_args(g: argparse.ArgumentParser) -> None:
    g.description = ("Text -> images: sample images for PROMPT with classifier-free guidance,\n"
                     "save them as PNG files in --out and print their paths.")
    g.epilog, g.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter
    add_model_args(g)
    g.add_argument("prompt", help="what to draw")
    g.add_argument("-n", "--num-images", type=int, default=1,
                   help=f"images to sample (default 1; at most {MAX_IMAGES_PER_CALL} per call: every image is held in "
                        "memory until the call ends, and more images than the engine's rows run in waves)")
    g.add_argument("--cfg-weight", type=float, default=IMAGE_DEFAULTS.cfg_weight,
                   help=f"classifier-free guidance weight (default {IMAGE_DEFAULTS.cfg_weight:g})")
    g.add_argument("--negative-prompt", default=None, metavar="TEXT",
                   help="what the images should not look like, e.g. \"blurry, low quality\": guidance steers away "
                        "from it (default: none, the reference's guidance against an empty prompt)")
    _add_sampling_args(g, IMAGE_DEFAULTS)
    g.add_argument("--out", default="janus-rt-images",
                   help="output folder, created if needed; files are never overwritten (default ./janus-rt-images)")


def add_chat_args(c: argparse.ArgumentParser) -> None:
    c.description = "Answer QUESTION about the --image files (greedy by default) and print the answer."
    c.epilog, c.formatter_class = EPILOG, argparse.RawDescriptionHelpFormatter
    add_model_args(c)
    c.add_argument("question", help="the question; one <image_placeholder> per image is added when it has none")
    c.add_argument("--image", action="append", default=[], help="image file (repeat for several)")
    c.add_argument("--max-new-tokens", type=int, default=CHAT_DEFAULTS.max_new_tokens,
                   help=f"answer length limit (default {CHAT_DEFAULTS.max_new_tokens}), in tokens; on a terminal a "
                        "progress bar counts them")
    c.add_argument("--system-prompt", default=None, help="replace the reference's understanding system prompt")
    _add_sampling_args(c, CHAT_DEFAULTS)


def _check_engine_and_device(args: argparse.Namespace) -> EngineConfig:
    config = engine_config(args)
    if args.backend not in GRAPH_BACKENDS:  # graph backends resolve devices through their providers
        resolve_device(args.device, CLI)
    return config


def run_generate(args: argparse.Namespace) -> int:
    if not args.prompt.strip():
        raise InputError("the prompt is empty; say what to draw, e.g. janus-rt generate ... \"a red fox\"")
    params = check_generation_args(args.num_images, args.cfg_weight, args.temperature, args.top_k or None, args.top_p,
                                   args.seed, spelling=CLI)  # `--top-k 0` is the CLI's "off"
    check_out_folder(Path(args.out))
    config = _check_engine_and_device(args)
    if args.max_rows is not None and args.max_rows < 2:  # the engine's own refusal comes after loading
        raise InputError(f"--max-rows {args.max_rows}: one image needs 2 KV rows (classifier-free guidance runs the "
                         "prompt with and without its text); pass --max-rows 2 or more, or leave it out", "--max-rows")
    m = load_model(args, config)
    job = m.submit_prepared(prepare_images(args.prompt, args.num_images, params, m.request_context, args.raw, CLI,
                                           negative_prompt=args.negative_prompt))
    result = job.result(progress=show_progress())
    save_pngs(result.images, Path(args.out), slug(args.prompt), on_saved=print)  # each path once it is written
    return 0


def run_chat(args: argparse.Namespace) -> int:
    if not args.question.strip():
        raise InputError("the question is empty; ask something, e.g. janus-rt chat ... \"What is in this picture?\"")
    params = check_chat_args(args.max_new_tokens, args.temperature, args.top_k or None, args.top_p, args.seed,
                             spelling=CLI)
    config = _check_engine_and_device(args)
    images = [read_image_file(Path(image), "--image") for image in args.image]
    conversation = (Conversation.preformatted(args.question, images) if args.raw
                    else Conversation.question(args.question, images, args.system_prompt))
    m = load_model(args, config)
    job = m.submit_prepared(prepare_chat(conversation, params, m.request_context, spelling=CLI))
    print(printable(job.result(progress=show_progress()).text))  # no raw control bytes on the terminal
    return 0
