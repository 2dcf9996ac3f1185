"""The `janus-rt` command line: generate, chat, info, export, warmup, demo, bench, bench-serve, quantize, eval-quant, serve.

`main` (the console command enters through `janus_rt_entry.main`) lists every subcommand by name and help line, and imports only the
module of the subcommand that runs (start-up time: `janus-rt --help` imports no benchmark, server or quantization
evaluation). Each subcommand's module defines its flags (`add_*_args(parser)`) and its handler (`run_*(args)`);
what they share lives in `common.py`. Nothing in the library imports this package.

How a command ends: an InputError or other JanusRTError is one line "janus-rt: error: ..." and exit 2; an output
file that could not be written after the work (SaveError) is that line plus the files saved, exit 1; Ctrl-C, at
any point after this module is imported (the subcommand's import included), is one line "janus-rt: interrupted"
and exit 130, after the models the command loaded are closed (their engine threads joined) and its temp folders
removed. Ctrl-C while `janus_rt` itself still imports torch, before this module runs, is caught by the console
command's entry outside the package (`janus_rt_entry.py`), with the same line and code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from janus_rt.cli.common import EPILOG, SaveError, close_models
from janus_rt.errors import JanusRTError
from janus_rt.version import __version__


@dataclass(frozen=True)
class Command:
    """A subcommand: its help line (all that `janus-rt --help` needs) and where its flags and handler live."""

    help: str
    module: str  # imported only when this subcommand is parsed or run
    add_args: str  # module's function (parser) -> None: description, epilog and flags
    run: str  # module's function (args) -> exit code


COMMANDS = {
    "generate": Command("text -> images (PNG files)", "janus_rt.cli.inference", "add_generate_args", "run_generate"),
    "chat": Command("answer a question about images", "janus_rt.cli.inference", "add_chat_args", "run_chat"),
    "info": Command("variant, dimensions, parameter count and bytes of a checkpoint (no weights loaded)",
                    "janus_rt.cli.info", "add_info_args", "run_info"),
    "export": Command("trace the model to ONNX graphs + manifest; optionally check them and build TensorRT engines",
                      "janus_rt.cli.export", "add_export_args", "run_export"),
    "warmup": Command("build every decode bucket and run the common shapes (fills the disk caches)",
                      "janus_rt.cli.warmup", "add_warmup_args", "run_warmup"),
    "demo": Command("build a tiny RANDOM checkpoint and run chat + generate end to end on CPU",
                    "janus_rt.cli.demo", "add_demo_args", "run_demo_command"),
    "bench": Command("benchmark a real Janus architecture with random weights (card, tables, JSON)",
                     "janus_rt.bench.cli", "add_bench_args", "run_bench_command"),
    "bench-serve": Command("load-test a running `janus-rt serve` (throughput, latency, TTFT, errors)",
                           "janus_rt.bench.serve_cli", "add_bench_serve_args", "run_bench_serve_command"),
    "quantize": Command("write a quantized checkpoint folder (int8 / int4 / fp8 weights)",
                        "janus_rt.cli.quantize", "add_quantize_args", "run_quantize"),
    "eval-quant": Command("measure a quantized model against the float one (logits error, token agreement, "
                          "side-by-side images)", "janus_rt.cli.eval_quant", "add_eval_quant_args", "run_eval_quant"),
    "serve": Command("serve a model over HTTP (OpenAI-style images, chat, models; health and metrics)",
                     "janus_rt.cli.serve", "add_serve_args", "run_serve"),
}


def version_line() -> str:
    """`janus-rt X (torch Y, triton Z, Python W)`: what a bug report needs."""
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return (f"janus-rt {__version__} (torch {installed('torch')}, triton {installed('triton')}, "
            f"Python {platform.python_version()})")


def _function(command: Command, name: str):  # noqa: ANN202 - add_args or run of `command`
    """The subcommand's function `name`, its module imported now (start-up time: only the subcommand that runs)."""
    return getattr(importlib.import_module(command.module), name)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `janus-rt` parser: every subcommand listed; the flags of `command` (None: of none) built."""
    parser = argparse.ArgumentParser(
        prog="janus-rt",
        description="Run DeepSeek Janus / Janus-Pro models: text-to-image generation and image understanding.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print janus-rt's version (and torch's, triton's, Python's) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help)
        if name == command:
            _function(spec, spec.add_args)(p)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The subcommand `argv` names: its first argument that is not an option (the top level's options take no
    value), when it is a known one."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(command_of(argv)).parse_args(argv)  # imports the subcommand's module
        try:
            return _function(COMMANDS[args.command], COMMANDS[args.command].run)(args)
        finally:  # also on Ctrl-C: no engine thread may outlive the command (see close_models)
            close_models(args)
    except JanusRTError as e:
        print(f"janus-rt: error: {e}", file=sys.stderr)
        return 2
    except SaveError as e:
        print(f"janus-rt: error: {e}", file=sys.stderr)
        for path in e.saved:
            print(f"janus-rt: saved before the error: {path}", file=sys.stderr)
        return 1
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
