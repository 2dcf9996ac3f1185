#!/usr/bin/env bash
# One GPU session in one call: versions, the kernel and backend tests on the GPU, then the benchmarks.
# Usage (on the GPU machine, repo root): OUT=/some/dir bash bench/device_run.sh [perf|quick|tested|full|pro7b|hf|arrivals|roofline]
# perf: triton 1.3B only; quick: GPU tests + triton; tested: GPU tests + 1.3B (triton, torch, transformers);
# full: tested + Pro-7B; pro7b: Pro-7B only; hf: GPU tests + triton vs transformers on 1 image / 1 text row;
# arrivals: triton 1.3B arrival runs (16 images at once vs 1 alone, an open loop of images, an open loop of chats);
# roofline: the fused-kernel variants (issue 9): their GPU tests, the 1.3B bench of each variant side by side, the
# per-kernel profile of the plain and the all-fused step, and the cold start (fits one 10-minute call).
# Logs and JSON land in $OUT; the last lines printed are the bench tables.
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/janus-rt-out}
MODE=${1:-full}
mkdir -p "$OUT"
# janus_rt from this checkout without pip (the machine has no network for build dependencies)
PKG=/tmp/janus-rt-pkg/janus_rt
rm -rf /tmp/janus-rt-pkg && mkdir -p "$PKG"
for f in runtime/*.py; do ln -s "$PWD/$f" "$PKG/"; done
ln -s "$PWD/runtime/engine" "$PKG/engine"
for d in kernels export bench; do ln -s "$PWD/$d" "$PKG/$d"; done
export PYTHONPATH=/tmp/janus-rt-pkg
janus-rt() { python3 -c 'import sys; from janus_rt.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
python3 - <<'PY' | tee "$OUT/versions.txt"
import torch, triton
try:
    import transformers; tv = transformers.__version__
except ImportError:
    tv = "absent"
p = torch.cuda.get_device_properties(0)
print(f"gpu={p.name} sms={p.multi_processor_count} mem={p.total_memory/2**30:.1f}GiB torch={torch.__version__} "
      f"triton={triton.__version__} transformers={tv} cuda={torch.version.cuda}")
PY
if [ "$MODE" = perf ]; then
    janus-rt bench --arch janus-1.3b --images 1,16 --backends triton --text-batches 1 --no-hf --repeats 1 \
        --out "$OUT/bench_perf.json" 2>&1 | tee "$OUT/bench_perf.log" | tail -40
    exit 0
fi
if [ "$MODE" = arrivals ]; then
    A="janus-rt bench --arch janus-1.3b --backends triton --images none --text-batches none --no-hf --repeats 1"
    $A --arrivals 16 --concurrency 16 --out "$OUT/bench_arrivals_16.json" 2>&1 | tee "$OUT/bench_arrivals_16.log" | tail -12
    $A --arrivals 48 --rate 8 --arrival-timeout 240 --out "$OUT/bench_arrivals_rate8.json" 2>&1 \
        | tee "$OUT/bench_arrivals_rate8.log" | tail -12
    $A --arrivals 64 --rate 32 --arrival-kind chat --text-tokens 128 --arrival-timeout 120 \
        --out "$OUT/bench_arrivals_chat.json" 2>&1 | tee "$OUT/bench_arrivals_chat.log" | tail -12
    exit 0
fi
if [ "$MODE" = roofline ]; then
    # ARCH / SMOKE: a CPU dry run of this mode, e.g. ARCH=tiny SMOKE="--image-grid 4" (default: janus-1.3b, none)
    ARCH=${ARCH:-janus-1.3b}
    SMOKE=${SMOKE:-}
    timeout 240 python3 -m pytest tests/test_kernel_skinny_gemm.py tests/test_kernel_attention.py \
        tests/test_kernel_tuning.py "tests/test_triton_backend.py::test_fused_step_gives_torch_greedy_tokens" \
        "tests/test_triton_backend.py::test_fused_step_keeps_rows_batch_invariant" \
        -q -x -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests_roofline.log" | tail -5
    janus-rt bench --arch "$ARCH" $SMOKE --images 1,16 --text-batches 1 --no-hf --repeats 1 \
        --backends "triton,triton[attn],triton[silu],triton[norm],triton[all]" \
        --out "$OUT/bench_fusions.json" 2>&1 | tee "$OUT/bench_fusions.log" | tail -40
    for b in triton "triton[all]"; do
        python3 -m janus_rt.bench.profile_step --arch "$ARCH" $SMOKE --images 1 --backend "$b" --top 20 2>&1 \
            | tee "$OUT/profile_${b//[\[\]]/_}.log" | tail -24
    done
    janus-rt bench --arch "$ARCH" $SMOKE --images none --text-batches none --no-hf --backends triton --cold-start \
        --out "$OUT/bench_cold_start.json" 2>&1 | tee "$OUT/bench_cold_start.log" | tail -20
    exit 0
fi
if [ "$MODE" = pro7b ]; then
    janus-rt bench --arch janus-pro-7b --images 1,4 --backends triton,torch --text-batches 1 --no-hf --repeats 1 \
        --out "$OUT/bench_janus-pro-7b.json" 2>&1 | tee "$OUT/bench_janus-pro-7b.log" | tail -40
    exit 0
fi
python3 -m pytest tests/test_kernel_attention.py tests/test_kernel_cfg_sample.py tests/test_kernel_fused.py \
    tests/test_triton_backend.py \
    -q -x -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" | tail -5
if [ "$MODE" = hf ]; then
    janus-rt bench --arch janus-1.3b --images 1 --backends triton --text-batches 1 --hf-images 1 --hf-text-batches 1 \
        --repeats 1 --out "$OUT/bench_janus-1.3b_vs_transformers.json" 2>&1 \
        | tee "$OUT/bench_janus-1.3b_vs_transformers.log" | tail -40
    exit 0
fi
if [ "$MODE" = quick ]; then
    janus-rt bench --arch janus-1.3b --images 1,16 --backends triton --text-batches 1 --no-hf --repeats 1 \
        --out "$OUT/bench_quick.json" 2>&1 | tee "$OUT/bench_quick.log" | tail -40
    exit 0
fi
janus-rt bench --arch janus-1.3b --images 1,4,16 --backends triton,torch --text-batches 1,8 --repeats 1 \
    --out "$OUT/bench_janus-1.3b.json" 2>&1 | tee "$OUT/bench_janus-1.3b.log" | tail -60
[ "$MODE" = full ] || exit 0
janus-rt bench --arch janus-pro-7b --images 1,4 --backends triton,torch --text-batches 1 --no-hf --repeats 1 \
    --out "$OUT/bench_janus-pro-7b.json" 2>&1 | tee "$OUT/bench_janus-pro-7b.log" | tail -40
