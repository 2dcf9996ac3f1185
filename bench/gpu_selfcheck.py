"""GPU self-check: what only a GPU can show about the fast path, in one short run (`bench/device_run.sh selfcheck`).

    python -m janus_rt.bench.gpu_selfcheck [--arch janus-1.3b] [--launches 200] [--out selfcheck.json]

Checks, each passed or failed with its figures (a table, then one JSON line; exit 1 if any failed):
  1. repeatability: the split-K GEMM (every split-K tile of the tuned list, a decode step's M) and the attention
     with its merge folded into the split kernel give the same bits over `--launches` eager launches and as many
     CUDA-graph replays: their last-program reductions depend on an arrival order that only a GPU scrambles;
  2. concurrent first captures: two engines (two Janus over the same weights, backend triton) get their first
     image at the same moment, so both capture their first bucket at once; both finish, with the same tokens;
  3. the host stays near the device: while an image decodes, an event recorded on the default stream every
     ~20 ms shows how far the device lags the host (ms, and steps at the measured step time; the engine bounds it
     at MAX_STEPS_IN_FLIGHT), and a chat submitted 100 ms into the image must get its first token within the
     bound's few steps plus its own prefill, not after the image.
On a CPU (a dry run of the script) the same code runs with small shapes through the Triton interpreter: no
graphs, no lag to measure (steps are synchronous), and no figure means anything for speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from janus_rt.engine import SamplingParams
from janus_rt.engine.core import MAX_STEPS_IN_FLIGHT
from janus_rt.kernels.decode_attention import decode_attention, decode_attention_ref
from janus_rt.kernels.skinny_gemm import CONFIGS, SkinnyLinear, skinny_gemm_ref
from janus_rt.kernels.tuning import Tile, TileChoices
from janus_rt.backends.graph_capture import capture_graph

from janus_rt.bench.architectures import ARCHITECTURES
from janus_rt.bench.engines import make_janus, seq_len_for
from janus_rt.bench.options import BenchOptions, bench_config
from janus_rt.bench.random_weights import build_random_model
from janus_rt.bench.text_bench import UNREACHABLE_EOS
from janus_rt.bench.workload import SpecialIds, image_prompt_ids, understanding_request


@dataclass
class Check:
    name: str
    passed: bool
    figures: dict = field(default_factory=dict)
    detail: str = ""


@dataclass(frozen=True)
class Shapes:
    """Kernel shapes of the repeatability check: the 1.3B decode step's on a GPU, small ones in the interpreter."""

    gemm: tuple[tuple[int, int, int], ...]  # (M, N, K)
    attention: tuple[int, int, int, int, int]  # (batch, heads, head_dim, max_len, split_keys)

    @classmethod
    def for_device(cls, device: torch.device) -> "Shapes":
        if device.type == "cuda":  # o_proj and down_proj of Janus-1.3B at 1 image (2 rows) and 16 images (32 rows)
            return cls(gemm=((2, 2048, 2048), (2, 2048, 5632), (32, 2048, 5632)), attention=(2, 16, 128, 640, 256))
        return cls(gemm=((2, 64, 96),), attention=(2, 2, 16, 160, 64))


def run_once(fn: Callable[[], None]) -> float:
    """The tuner's timer for a pinned tile: run it, report a constant."""
    fn()
    return 1.0


def same_bits(run: Callable[[], torch.Tensor], launches: int, graphs: bool) -> tuple[torch.Tensor, int, int]:
    """(first output, eager launches that differ from it, graph replays that differ from it)."""
    first = run().clone()
    eager_bad = sum(not torch.equal(run(), first) for _ in range(launches))
    replay_bad = 0
    if graphs:
        outputs: list[torch.Tensor] = []  # the captured run's output: its memory is rewritten by each replay
        graph = capture_graph(lambda: outputs.append(run()), pool=None, stream=torch.cuda.Stream())
        for _ in range(launches):
            graph.replay()
            torch.cuda.synchronize()
            replay_bad += not torch.equal(outputs[0], first)
    return first, eager_bad, replay_bad


def gemm_checks(device: torch.device, dtype: torch.dtype, shapes: Shapes, launches: int, cache: Path) -> list[Check]:
    checks = []
    gen = torch.Generator().manual_seed(0)
    for tile in (Tile.parse(c) for c in CONFIGS if c[4] > 1):
        for m, n, k in shapes.gemm:
            x = torch.randn(m, k, generator=gen).to(device, dtype)
            w = (torch.randn(n, k, generator=gen) / k**0.5).to(device, dtype)
            gemm = SkinnyLinear(store=TileChoices(cache, slug="selfcheck"), configs=[tile], bench=run_once)
            first, eager_bad, replay_bad = same_bits(lambda: gemm(x=x, weight=w), launches, device.type == "cuda")
            err = (first.double() - skinny_gemm_ref(x.double(), w.double())).abs().max().item()
            tol = 1e-4 if dtype == torch.float32 else 3e-2  # one rounding to the output dtype of an fp32 sum
            checks.append(Check(f"split-K GEMM {tuple(tile)} M={m} N={n} K={k}", eager_bad == replay_bad == 0
                                and err <= tol, {"eager_mismatches": eager_bad, "replay_mismatches": replay_bad,
                                                 "launches": launches, "max_abs_err_vs_fp64": err}))
    return checks


def attention_check(device: torch.device, dtype: torch.dtype, shapes: Shapes, launches: int) -> Check:
    batch, heads, head_dim, max_len, split_keys = shapes.attention
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(batch, heads, 1, head_dim, generator=gen).to(device, dtype)
    keys = torch.randn(batch, heads, max_len, head_dim, generator=gen).to(device, dtype)
    values = torch.randn(batch, heads, max_len, head_dim, generator=gen).to(device, dtype)
    lengths = torch.tensor([max_len - 3, max_len // 2][:batch] + [max_len] * max(batch - 2, 0), dtype=torch.int32,
                           device=device)
    counters = torch.zeros(batch * heads, dtype=torch.int32, device=device)
    args = dict(q=q, keys=keys, values=values, lengths=lengths, split_keys=split_keys)
    first, eager_bad, replay_bad = same_bits(lambda: decode_attention(**args, merge_counters=counters), launches,
                                             device.type == "cuda")
    two_launch = decode_attention(**args)
    err = (first.double() - decode_attention_ref(q.double(), keys.double(), values.double(), lengths, None)
           ).abs().max().item()
    return Check("attention, merge in the split kernel", eager_bad == replay_bad == 0
                 and torch.equal(first, two_launch) and not counters.any(),
                 {"eager_mismatches": eager_bad, "replay_mismatches": replay_bad, "launches": launches,
                  "equals_two_launch_merge": torch.equal(first, two_launch), "max_abs_err_vs_fp64": err})


def concurrent_capture_check(model, special: SpecialIds, max_seq_len: int) -> Check:
    """Two engines over the same weights take their first image at the same moment (first captures at once)."""
    prompt = image_prompt_ids(special, 32, 0)
    params = SamplingParams(temperature=1.0, cfg_weight=5.0, seed=7)
    models = [make_janus(model, "triton", 2, max_seq_len) for _ in range(2)]
    start = threading.Barrier(2)
    results: list = [None, None]

    def first_image(i: int) -> None:
        start.wait()
        try:
            results[i] = models[i].engine.submit_images(prompt, special.pad, 1, params).result(timeout=600)
        except Exception as e:  # noqa: BLE001 - reported as the check's failure
            results[i] = e

    t0 = time.perf_counter()
    threads = [threading.Thread(target=first_image, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for m in models:
        m.close()
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    same = not errors and torch.equal(results[0], results[1])
    return Check("two engines capture their first bucket at once", not errors and same,
                 {"seconds": seconds, "same_tokens": same}, "; ".join(errors))


def lag_and_chat_check(model, cfg, special: SpecialIds, max_seq_len: int) -> Check:
    """While one image decodes: how far the device lags the host, and a chat's first token 100 ms in."""
    m = make_janus(model, "triton", 4, max_seq_len)
    chat = understanding_request(cfg, special, 64, 0)
    params = SamplingParams(temperature=1.0, cfg_weight=5.0, seed=3)
    prompt = image_prompt_ids(special, 32, 0)
    try:
        m.engine.submit_images(prompt, special.pad, 1, params).result(timeout=600)  # warm: compiles, capture
        t0 = time.perf_counter()
        image = m.engine.submit_images(prompt, special.pad, 1, params)
        lags_ms: list[float] = []
        time.sleep(0.1)
        sent = time.perf_counter()
        reply = m.engine.submit_text(chat.ids, chat.pixel_values, UNREACHABLE_EOS, special.placeholder,
                                     SamplingParams(temperature=0.0, max_new_tokens=4))
        first_token = None
        for _ in reply.stream():
            first_token = time.perf_counter()
            break
        while not image.done() and m.device.type == "cuda":  # a fresh event on the default stream: its wait is
            event = torch.cuda.Event()                       # what the device still has to run of the queue
            event.record(torch.cuda.default_stream(m.device))
            before = time.perf_counter()
            event.synchronize()
            lags_ms.append((time.perf_counter() - before) * 1e3)
            time.sleep(0.02)
        image.result(timeout=600)
        reply.result(timeout=600)
        image_s = time.perf_counter() - t0
    finally:
        m.close()
    step_ms = image_s * 1e3 / cfg.image_tokens_per_image
    ttft_ms = (first_token - sent) * 1e3 if first_token is not None else None
    figures = {"image_s": image_s, "step_ms": step_ms, "chat_ttft_ms": ttft_ms, "lag_samples": len(lags_ms),
               "max_lag_ms": max(lags_ms, default=None), "median_lag_ms": statistics.median(lags_ms) if lags_ms else None,
               "max_lag_steps": max(lags_ms) / step_ms if lags_ms else None, "bound_steps": MAX_STEPS_IN_FLIGHT}
    # the chat shares the image's steps: its first token (read back at a sync, every sync_every steps) comes within
    # the bound plus a sync period plus its own prefill (~a few steps' time), far before the image ends
    lag_ok = not lags_ms or max(lags_ms) <= (MAX_STEPS_IN_FLIGHT + 1) * step_ms + 2.0
    chat_ok = ttft_ms is not None and (m.device.type != "cuda" or ttft_ms < 0.5 * (image_s * 1e3 - 100))
    return Check("host within the bound of the device; a chat 100 ms into an image", lag_ok and chat_ok, figures)


def run(arch: str, image_grid: int | None, launches: int | None, seed: int) -> tuple[list[Check], dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    launches = launches if launches is not None else (200 if device.type == "cuda" else 2)
    shapes = Shapes.for_device(device)
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="janus-rt-selfcheck-") as cache:
        checks += gemm_checks(device, dtype, shapes, launches, Path(cache))
    checks.append(attention_check(device, dtype, shapes, launches))
    cfg = bench_config(BenchOptions(arch=arch, image_grid=image_grid))
    special = SpecialIds.for_vocab(cfg.llm.vocab_size)
    model = build_random_model(cfg, device, dtype, seed)
    max_seq_len = seq_len_for(700 + cfg.image_tokens_per_image, cfg.llm.max_position_embeddings)
    checks.append(concurrent_capture_check(model, special, max_seq_len))
    checks.append(lag_and_chat_check(model, cfg, special, max_seq_len))
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "dtype": str(dtype),
           "arch": arch, "image_grid": image_grid, "torch": torch.__version__}
    return checks, env


def render(checks: list[Check]) -> str:
    lines = ["| check | result | figures |", "|---|---|---|"]
    for c in checks:
        figures = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.figures.items())
        lines.append(f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {figures}{' ' + c.detail if c.detail else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="janus-1.3b", choices=ARCHITECTURES, help="model shape (default janus-1.3b)")
    parser.add_argument("--image-grid", type=int, default=None, help="smoke runs: image-token grid side")
    parser.add_argument("--launches", type=int, default=None,
                        help="eager launches and graph replays per kernel check (default 200 on a GPU, 2 on a CPU)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    args = parser.parse_args(argv)
    checks, env = run(args.arch, args.image_grid, args.launches, args.seed)
    print(render(checks))
    failed = [c.name for c in checks if not c.passed]
    result = {"schema": "janus-rt-selfcheck/1", "env": env, "checks": [asdict(c) for c in checks], "failed": failed}
    line = json.dumps(result)
    print(line)
    if args.out is not None:
        args.out.write_text(line + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
