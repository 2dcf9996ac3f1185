"""Where a decode step's time goes: device time per kernel of one triton step vs the graph-replayed step.

    python -m janus_rt.bench.profile_step --arch janus-1.3b --images 1
    python -m janus_rt.bench.profile_step --arch janus-1.3b --images 4 --text 2     # a mixed step
    python -m janus_rt.bench.profile_step --arch janus-1.3b --images 1 --backend "triton[all]"   # fused kernels

Runs requests through the engine (triton backend) until the step of their batch bucket -- `(image rows,
text rows)` rounded up to `triton_step.BUCKETS` -- has been captured, cancels them, then takes that
`StepGraph` (`TritonBackend.steps[bucket]`) and points its buffers at a mid-image context. It times the
graph replay, then runs the same step body eagerly under torch.profiler (kernel durations are device times, so
launch gaps are excluded) and prints the kernels by total time and their sum per step: the difference from
the replayed step is what launch gaps and small-kernel ramp-up cost.

On a machine without CUDA (kernels in the Triton interpreter, no graphs) it profiles CPU time per op
instead; that mode only checks the path (`--arch tiny --image-grid 6 --device cpu`).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from janus_rt.backends.choice import resolve_device, resolve_dtype
from janus_rt.engine import SamplingParams
from janus_rt.errors import InputError
from janus_rt.backends.triton_step import StepGraph, bucket

from janus_rt.bench.architectures import architecture_config
from janus_rt.bench.engines import backend_variant, make_janus, seq_len_for, submit_together
from janus_rt.bench.random_weights import build_random_model
from janus_rt.bench.timers import timed
from janus_rt.bench.workload import SpecialIds, image_prompt_ids, understanding_request

PROMPT_TOKENS = 32
TEXT_TOKENS = 8  # new tokens per text request while the step is captured


def _wait(cond, what: str, timeout_s: float = 600.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"profile_step: timed out waiting for {what}")
        time.sleep(0.002)


def captured_step(model, images: int, text: int, extra_slots: int, backend: str = "triton"):
    """(Janus, StepGraph) of the bucket of `images` images + `text` answers, captured (or warm when eager).

    The requests that built it are cancelled; the engine is idle, so the caller may drive the StepGraph.
    """
    cfg = model.cfg
    special = SpecialIds.for_vocab(cfg.llm.vocab_size)
    prompt = image_prompt_ids(special, PROMPT_TOKENS)
    chat = understanding_request(cfg, special)
    need = max(PROMPT_TOKENS + cfg.image_tokens_per_image - 1 if images else 0,
               len(chat.ids) + TEXT_TOKENS - 1 if text else 0) + extra_slots
    m = make_janus(model, backend, 2 * images + text, seq_len_for(need, cfg.llm.max_position_embeddings))
    engine, backend = m.engine, m.step_backend
    key = (bucket(2 * images), bucket(text))
    params = SamplingParams(temperature=1.0, seed=0)
    submits = [lambda: engine.submit_images(prompt, special.pad, images, params)] if images else []
    text_params = SamplingParams(temperature=0.0, max_new_tokens=TEXT_TOKENS)
    submits += [lambda: engine.submit_text(chat.ids, chat.pixel_values, -1, special.placeholder, text_params)] * text
    requests = submit_together(engine, submits)

    def ready() -> bool:
        step = backend.steps.get(key)
        if any(r.done() for r in requests):  # a failure (or a run too short to capture) ends the wait
            return True
        return step is not None and (step.graph is not None if step.use_graph else step.warm)

    _wait(ready, f"the step of bucket {key}")
    for r in requests:
        r.cancel()
    for r in requests:
        _wait(r.done, "the cancelled requests")
        if not r.cancelled():
            r.result()  # raises the engine's error, if it failed
    step = backend.steps.get(key)
    if step is None:
        raise RuntimeError(f"profile_step: no step of bucket {key} was built")
    return m, step


def point_mid_context(step: StepGraph, image_position: int, text_position: int) -> None:
    """Live rows at these positions (image rows first, then text rows), every output row at step 1 (it reads
    token 0 and writes token 1 of its record); padding rows stay on the scratch row at position 0."""
    where = torch.tensor([image_position] * step.bi + [text_position] * step.bt, dtype=torch.long,
                         device=step.positions.device)
    step.positions.copy_(where * step.row_live)
    step.images.step.fill_(1)
    step.text.step.fill_(1)


@torch.inference_mode()
def profile(model, images: int = 1, text: int = 0, steps: int = 10, replays: int = 50, backend: str = "triton") -> dict:
    """Graph-replayed ms per step and the per-kernel profile of `steps` eager runs of the same step body."""
    cfg = model.cfg
    mid = cfg.image_tokens_per_image // 2
    m, step = captured_step(model, images, text, extra_slots=replays + steps + 1, backend=backend)
    try:
        special = SpecialIds.for_vocab(cfg.llm.vocab_size)
        text_pos = len(understanding_request(cfg, special).ids) + TEXT_TOKENS // 2
        point_mid_context(step, PROMPT_TOKENS + mid, text_pos)
        device = step.positions.device
        step.step()  # replay once more (on CPU: the eager body) before timing
        point_mid_context(step, PROMPT_TOKENS + mid, text_pos)

        def replay_all() -> None:
            for _ in range(replays):
                step.step()

        _, total_ms = timed(replay_all, device)
        cuda = device.type == "cuda"
        activity = torch.profiler.ProfilerActivity.CUDA if cuda else torch.profiler.ProfilerActivity.CPU
        point_mid_context(step, PROMPT_TOKENS + mid, text_pos)
        with torch.profiler.profile(activities=[activity]) as prof:
            for _ in range(steps):
                step.body()
            if cuda:
                torch.cuda.synchronize(device)
        kernels: dict[str, list[float]] = {}
        if cuda:
            for ev in prof.events():
                if ev.device_type == torch.autograd.DeviceType.CUDA and ev.device_time_total > 0:
                    kernels.setdefault(ev.name[:90], []).append(ev.device_time_total)
        else:
            for ev in prof.key_averages():
                if ev.self_cpu_time_total > 0:
                    kernels[ev.key[:90]] = [ev.self_cpu_time_total / ev.count] * ev.count
        rows = sorted(((sum(v) / steps, len(v) / steps, k) for k, v in kernels.items()), reverse=True)
        return {"bucket": [step.bi, step.bt], "mode": m.step_backend.describe_mode(), "graph": step.graph is not None,
                "replayed_ms_per_step": total_ms / replays, "kernel_ms_per_step": sum(r[0] for r in rows) / 1e3,
                "kernels_per_step": sum(r[1] for r in rows),
                "kernels": [{"us_per_step": us, "calls_per_step": calls, "name": name} for us, calls, name in rows]}
    finally:
        m.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="janus-1.3b")
    parser.add_argument("--images", type=int, default=1, help="images in the step (2 CFG rows each)")
    parser.add_argument("--text", type=int, default=0, help="text rows in the step (a mixed step when > 0)")
    parser.add_argument("--steps", type=int, default=10, help="profiled eager steps")
    parser.add_argument("--replays", type=int, default=50, help="timed graph replays")
    parser.add_argument("--device", default=None, help="default cuda when available")
    parser.add_argument("--dtype", default=None, help="default bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--image-grid", type=int, default=None, help="smoke runs: a smaller image-token grid")
    parser.add_argument("--top", type=int, default=25, help="kernels printed")
    parser.add_argument("--backend", default="triton",
                        help="triton, or triton[FUSIONS] with optional fused kernels: all, or norm, silu, attn joined "
                             "by '+' (default triton)")
    args = parser.parse_args(argv)
    if not args.backend.startswith("triton"):
        parser.error(f"--backend must be triton or triton[FUSIONS], got {args.backend!r}")
    try:
        backend_variant(args.backend)
    except InputError as e:
        parser.error(str(e))
    if args.images < 0 or args.text < 0 or args.images + args.text == 0:
        parser.error("--images and --text must be >= 0, and not both 0")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    cfg = architecture_config(args.arch)
    if args.image_grid:
        cfg = dataclasses.replace(cfg, vq=dataclasses.replace(cfg.vq, image_token_grid=args.image_grid))
    model = build_random_model(cfg, device, dtype)
    out = profile(model, args.images, args.text, args.steps, args.replays, backend=args.backend)
    unit = "device" if device.type == "cuda" else "CPU (self)"
    print(f"{out['mode']}; bucket (image rows, text rows) = {tuple(out['bucket'])}")
    print(f"{'us/step':>9} {'calls/step':>10}  kernel ({unit} time)")
    for k in out["kernels"][:args.top]:
        print(f"{k['us_per_step']:9.1f} {k['calls_per_step']:10.1f}  {k['name']}")
    replay = "graph-replayed" if out["graph"] else "eager"
    what = "kernel time" if device.type == "cuda" else "op time (CPU self time; the interpreter's Python excluded)"
    print(f"{what} per step {out['kernel_ms_per_step']:.3f} ms over {out['kernels_per_step']:.0f} kernels; "
          f"{replay} step {out['replayed_ms_per_step']:.3f} ms")


if __name__ == "__main__":
    main()
