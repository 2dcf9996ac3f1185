"""Where a decode step's time goes: device time per kernel of one image step vs the graph-replayed step.

    python -m janus_rt.bench.profile_step --arch janus-1.3b --images 1

Runs the triton backend's image step eagerly under torch.profiler (kernel durations are device times, so
launch gaps are excluded) and prints the kernels by total time, their sum per step, and the measured
graph-replayed step: the difference is what launch gaps and small-kernel ramp-up cost.
"""

from __future__ import annotations

import argparse

import torch

from janus_rt.bench.architectures import architecture_config
from janus_rt.bench.random_weights import build_random_model
from janus_rt.fast_decode import image_step
from janus_rt.triton_backend import TritonRunner


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="janus-1.3b")
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10, help="profiled eager steps")
    args = parser.parse_args()
    device, dtype = torch.device("cuda"), torch.bfloat16
    model = build_random_model(architecture_config(args.arch), device, dtype)
    runner = TritonRunner(model)
    prompt = list(range(10, 42))
    runner.generate_image_tokens(prompt, 0, args.images, 5.0, 1.0, 0, None, None, False)  # compile + capture
    loop = next(iter(runner.loops.values()))
    bufs = loop.bufs
    bufs.step.fill_(1)
    bufs.slot.fill_(len(prompt) + 300)  # a mid-image context
    bufs.positions.fill_(len(prompt) + 300)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(50):
        loop.graph.replay()
    end.record()
    end.synchronize()
    graph_ms = start.elapsed_time(end) / 50
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(args.steps):
            bufs.step.fill_(1)
            image_step(model, bufs, runner.linear)
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA and ev.device_time_total > 0:
            kernels.setdefault(ev.name[:90], []).append(ev.device_time_total)
    rows = sorted(((sum(v) / args.steps, len(v) / args.steps, k) for k, v in kernels.items()), reverse=True)
    total = sum(r[0] for r in rows)
    print(f"{'us/step':>9} {'calls/step':>10}  kernel")
    for us, calls, name in rows[:25]:
        print(f"{us:9.1f} {calls:10.1f}  {name}")
    print(f"kernel time per step {total / 1e3:.3f} ms over {sum(r[1] for r in rows):.0f} kernels; "
          f"graph-replayed step {graph_ms:.3f} ms")


if __name__ == "__main__":
    main()
