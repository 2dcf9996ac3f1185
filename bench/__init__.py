"""Benchmarks for janus-rt: `janus-rt bench` (see `harness.run_bench`).

- `architectures`: the release config.json of Janus-1.3B (= Pro-1B shape) and Janus-Pro-7B, and a tiny one;
- `random_weights`: the real module tree on the device, filled in place with random values (no download);
- `roofline`: bytes a decode step reads, measured copy bandwidth, datasheet bandwidth, MBU;
- `workload`: synthetic prompts and pixels of realistic lengths;
- `image_bench`, `text_bench`, `hf_baseline`: the timed rows (janus-rt backends; transformers' Janus);
- `harness`, `report`, `cli`: the run, its text/JSON report and the subcommand.
"""
