"""Benchmarks for janus-rt: `janus-rt bench` (see `harness.run_bench`).

- `architectures`: the release config.json of Janus-1.3B (= Pro-1B shape) and Janus-Pro-7B, and a tiny one;
- `random_weights`: the real module tree on the device, filled in place with random values (no download);
- `roofline`: bytes a decode step reads, measured copy bandwidth, datasheet bandwidth, MBU;
- `workload`: synthetic prompts and pixels of realistic lengths;
- `engines`: a Janus (engine + KV rows) per measurement over the shared model; batches; phase-timed runs;
- `image_bench`, `text_bench`, `hf_baseline`: the timed rows (janus-rt backends; transformers' Janus);
- `arrivals`: requests arriving over time (open or closed loop): throughput, latency percentiles, vs alone;
- `profile_step`: device time per kernel of one triton decode step (`python -m janus_rt.bench.profile_step`);
- `options`: BenchOptions, the benchmarked config, KV lengths (below `harness` and `cold_start`);
- `measure`, `rows`, `quant_rows`, `variants`: a fresh Janus per row; card, rows, MBU, speedups; --quant; fusions;
- `goals`: every goal (one table) and the verdicts; `cold_start`: new process -> first image;
- `harness`, `report`, `cli`: the run, its text/JSON report and the subcommand;
- `serve_load`, `serve_report`, `serve_cli`: `janus-rt bench-serve` (HTTP load on a running server).
"""
