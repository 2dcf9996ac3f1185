"""`janus-rt bench --cold-start`: a new process -> `load` -> the first image, with a cold and a warm disk cache.

Parent side (`run_cold_start`, called by `harness.run_bench`): for each backend, a fresh temporary cache folder
and two NEW Python processes (`child_command`) with `JANUS_RT_CACHE_DIR=<dir>` (janus-rt's own disk cache:
tile choices, ...) and `TRITON_CACHE_DIR=<dir>/triton` (Triton's compiled kernels):

  - "cold disk": both caches empty, as on a freshly installed machine;
  - "warm disk": a second process over what the first one left (the case the issue's goal is about:
    `goals.cold_start_targets` judges it).

Each child is bounded (`timeout_s`); one that fails, times out or prints no result becomes a note (after a
failed cold run the warm one is skipped). The folder is removed afterwards. The OS file cache (torch's
libraries, janus-rt's bytecode) is warm in both runs: "cold" means the two caches above, not a rebooted box.

Child side (`child_main`, run as `python -c BOOTSTRAP ...`): its clock starts in the bootstrap, before anything
is imported. It measures, and prints as one JSON line on stdout:

  startup_s      the parent's spawn -> the bootstrap's first line (interpreter start-up)
  import_s       torch + janus_rt (+ the bench's modules)
  load_s         the bench's "load": the architecture with random weights on the device, its backend, an
                 engine of 2 KV rows (one image = 2 CFG rows), exactly as a bench image row builds them
  first_image_s  one image with the bench's default settings: its tokens, then the VQ decode to pixels
  warm_image_s   a second image in the same process (same work, everything compiled / captured)
  total_s        process start -> first image (startup + import + load + first image)

(`python -m janus_rt.bench.cold_start ...` also works by hand, but `-m` imports janus_rt, hence torch, before
this module runs: its import_s then misses torch.)
"""

from __future__ import annotations

import time as _time

_T0 = _time.perf_counter()  # this module's first line (see the note above about `-m`)
_W0 = _time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from janus_rt.kernels.tuning import ENV_CACHE_DIR  # noqa: E402 (janus_rt is imported by then: see BOOTSTRAP)

SCHEMA = "janus-rt-cold-start/1"
CACHE_ENV = ENV_CACHE_DIR  # janus-rt's cache folder variable (kernels/tuning.py reads it)
TRITON_ENV = "TRITON_CACHE_DIR"
CACHES = ("cold disk", "warm disk")
TAIL_CHARS = 600  # of a failed child's stderr, in its note

# The child's first lines: its clock starts before torch or janus_rt is imported.
BOOTSTRAP = ("import sys, time; t0, w0 = time.perf_counter(), time.time(); "
             "from janus_rt.bench.cold_start import child_main; sys.exit(child_main(sys.argv[1:], t0, w0))")

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ child
def child_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m janus_rt.bench.cold_start",
                                description="One cold start: imports, load (random weights), first and second image; "
                                            "prints one JSON line. Run by `janus-rt bench --cold-start`.")
    p.add_argument("--arch", default="janus-1.3b")
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-grid", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (CPU runs only)")
    p.add_argument("--spawned-at", type=float, default=None, help="the parent's time.time() when it spawned us")
    return p


def child_main(argv: list[str] | None = None, t0: float | None = None, w0: float | None = None) -> int:
    """Measure one cold start (see the module docstring) and print its JSON line; 0 on success."""
    from time import perf_counter

    t0 = _T0 if t0 is None else t0
    w0 = _W0 if w0 is None else w0
    args = child_parser().parse_args(argv)

    import torch

    # start-up time: these imports are what a cold start measures (t_import), so they run here, timed
    import janus_rt  # noqa: F401  # start-up time: the package import (interpreter choice, kernels, api)
    from janus_rt.backends.choice import resolve_device, resolve_dtype  # start-up time: measured
    from janus_rt.engine import SamplingParams  # start-up time: measured

    from janus_rt.bench.engines import make_janus  # start-up time: measured
    from janus_rt.bench.options import BenchOptions, bench_config, image_seq_len  # start-up time: measured
    from janus_rt.bench.random_weights import build_random_model  # start-up time: measured
    from janus_rt.bench.workload import SpecialIds, image_prompt_ids  # start-up time: measured

    t_import = perf_counter()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    opts = BenchOptions(arch=args.arch, backends=(args.backend,), seed=args.seed, image_grid=args.image_grid)
    cfg = bench_config(opts)
    model = build_random_model(cfg, device, dtype, opts.seed)
    m = make_janus(model, args.backend, 2, image_seq_len(cfg, opts))  # one image = 2 CFG rows
    sync()
    t_load = perf_counter()
    try:
        special = SpecialIds.for_vocab(cfg.llm.vocab_size)
        prompt = image_prompt_ids(special, opts.image_prompt_tokens, opts.seed)
        params = SamplingParams(temperature=opts.temperature, cfg_weight=opts.cfg_weight, seed=opts.seed)

        def one_image() -> tuple[float, float, float]:
            """(seconds to the image's tokens, seconds of its VQ decode to pixels, perf_counter at the end)."""
            a = perf_counter()
            tokens = m.engine.submit_images(prompt, special.pad, 1, params).result()
            sync()
            b = perf_counter()
            m.step_backend.decode_pixels(tokens.to(device))
            sync()
            c = perf_counter()
            return b - a, c - b, c

        first_tokens, first_vq, t_first = one_image()
        warm_tokens, warm_vq, _ = one_image()
        mode = m.step_backend.describe_mode()
    finally:
        m.close()
    startup = w0 - args.spawned_at if args.spawned_at is not None else None
    out = {
        "schema": SCHEMA, "pid": os.getpid(), "arch": args.arch, "backend": args.backend, "mode": mode,
        "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "tokens_per_image": cfg.image_tokens_per_image,
        "cache_dir": os.environ.get(CACHE_ENV), "triton_cache_dir": os.environ.get(TRITON_ENV),
        "startup_s": startup, "import_s": t_import - t0, "load_s": t_load - t_import,
        "first_image_s": first_tokens + first_vq, "first_tokens_s": first_tokens, "first_vq_s": first_vq,
        "warm_image_s": warm_tokens + warm_vq, "warm_tokens_s": warm_tokens, "warm_vq_s": warm_vq,
        "total_s": (startup or 0.0) + (t_first - t0),
    }
    print(json.dumps(out), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------- parent
def child_command(args: list[str]) -> list[str]:
    """The new process of one cold start (tests replace this)."""
    return [sys.executable, "-c", BOOTSTRAP, *args]


def child_args(opts, backend: str, device: str, dtype: str, threads: int | None) -> list[str]:
    args = ["--arch", opts.arch, "--backend", backend, "--device", device, "--dtype", dtype, "--seed", str(opts.seed)]
    if opts.image_grid:
        args += ["--image-grid", str(opts.image_grid)]
    if threads:
        args += ["--threads", str(threads)]
    return args


def _tail(text: str) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]


def _result_line(stdout: str) -> dict | None:
    """The child's JSON line (the last stdout line that parses as an object of this schema), or None."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                return None
            return obj if isinstance(obj, dict) and obj.get("schema") == SCHEMA else None
    return None


def cache_usage(folder: Path) -> tuple[int, int]:
    """(files, bytes) under `folder`."""
    files = size = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.path.getsize(os.path.join(root, name))
                files += 1
            except OSError:
                pass
    return files, size


def run_child(args: list[str], cache_dir: Path, timeout_s: float) -> tuple[dict | None, float, str | None]:
    """Run one child with its caches in `cache_dir`: (its JSON, spawn -> exit seconds, why it failed or None)."""
    env = dict(os.environ)
    env[CACHE_ENV] = str(cache_dir)
    env[TRITON_ENV] = str(cache_dir / "triton")
    spawned = _time.time()
    cmd = child_command([*args, "--spawned-at", repr(spawned)])
    t = _time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, _time.perf_counter() - t, f"timed out after {timeout_s:g} s (killed); stderr: {_tail(err)}"
    except OSError as e:
        return None, _time.perf_counter() - t, f"could not start: {e}"
    wall = _time.perf_counter() - t
    if proc.returncode != 0:
        return None, wall, f"exited with code {proc.returncode}; stderr: {_tail(proc.stderr)}"
    got = _result_line(proc.stdout)
    if got is None:
        return None, wall, f"printed no result line; stdout: {_tail(proc.stdout)}; stderr: {_tail(proc.stderr)}"
    return got, wall, None


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def cold_start_row(backend: str, cache: str, child: dict, process_s: float, cache_dir: Path) -> dict:
    """One table row from a child's JSON (the parent adds first - warm, spawn -> exit and the cache's size)."""
    files, size = cache_usage(cache_dir)
    first, warm = child.get("first_image_s"), child.get("warm_image_s")
    return {"backend": backend, "cache": cache, "mode": child.get("mode"), "pid": child.get("pid"),
            "startup_s": child.get("startup_s"), "import_s": child.get("import_s"), "load_s": child.get("load_s"),
            "first_image_s": first, "first_tokens_s": child.get("first_tokens_s"),
            "first_vq_s": child.get("first_vq_s"), "warm_image_s": warm,
            "warm_tokens_s": child.get("warm_tokens_s"), "warm_vq_s": child.get("warm_vq_s"),
            "first_minus_warm_s": first - warm if _finite(first) and _finite(warm) else None,
            "total_s": child.get("total_s"), "process_s": process_s,
            "cache_dir": child.get("cache_dir"), "triton_cache_dir": child.get("triton_cache_dir"),
            "cache_files_after": files, "cache_bytes_after": size}


def run_cold_start(opts, device, dtype, notes: list[str], log: Log, threads: int | None = None) -> list[dict]:
    """The cold-disk and warm-disk rows of every backend of `opts.backends` (see the module docstring)."""
    device_name = str(device)
    dtype_name = str(dtype).removeprefix("torch.")
    rows: list[dict] = []
    for backend in opts.backends:
        cache_dir = Path(tempfile.mkdtemp(prefix=f"janus-rt-cold-start-{backend}-"))
        try:
            args = child_args(opts, backend, device_name, dtype_name, threads)
            for cache in CACHES:
                log(f"[bench] cold start: {backend}, {cache} (new process, caches in {cache_dir})")
                child, process_s, why = run_child(args, cache_dir, opts.cold_start_timeout)
                if why is not None:
                    notes.append(f"cold start of {backend!r} ({cache}) failed: {why}")
                    log(f"[bench] cold start of {backend!r} ({cache}) failed: {why}")
                    if cache == CACHES[0]:
                        notes.append(f"cold start of {backend!r} (warm disk) skipped: the cold-disk run failed")
                    break
                row = cold_start_row(backend, cache, child, process_s, cache_dir)
                rows.append(row)
                log(f"[bench] cold start: {backend}, {cache}: first image {row['first_image_s']:.2f} s, "
                    f"warm image {row['warm_image_s']:.2f} s, process start -> first image {row['total_s']:.2f} s")
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return rows


def cold_start_notes(device) -> list[str]:
    notes = ["cold start: each row is a new Python process (import, load = random weights on the device + backend + "
             "engine, first image = tokens + VQ decode, then a second image = warm image); cold disk = empty "
             f"{CACHE_ENV} and {TRITON_ENV} (a fresh temporary folder per backend, removed afterwards), warm disk = "
             "a second process over what the first left; the OS file cache is warm in both; total = process start "
             "-> first image"]
    if device.type != "cuda":
        notes.append("cold start on a CPU is a smoke test: no Triton compile, tuning or graph capture to cache; "
                     "its times are CPU times")
    return notes


if __name__ == "__main__":
    sys.exit(child_main())
