#!/usr/bin/env bash
# One GPU session in one call: versions, the kernel and backend tests on the GPU, then the benchmarks.
# Usage (on the GPU machine, repo root): OUT=/some/dir bash bench/device_run.sh [MODE]
# MODE:
#   selfcheck  GPU readiness (issue 18): kernel tests on CUDA, bitwise repeatability of split-K GEMMs and the fused
#              attention merge (eager and graph replays), two engines capturing at once, host steps vs device steps
#              during an image and a chat's latency submitted 100 ms into it, then the 1.3B bench (1 and 16 images,
#              chat) with the fusion variants; well under one 10-minute call on an H100
#   perf       triton 1.3B only          quick   GPU tests + triton           tested  GPU tests + 1.3B (triton, torch, hf)
#   full       tested + Pro-7B           pro7b   Pro-7B only                  hf      GPU tests + triton vs transformers
#   arrivals   triton 1.3B arrival runs (16 at once vs 1 alone, open loops of images and of chats)
#   roofline   the fused-kernel variants: their GPU tests, the 1.3B bench of each, profiles, the cold start
# janus-rt is not installed there: bench/device_env.sh links this checkout into an importable janus_rt and checks
# that every module imports from it before any stage runs. Each stage's log and JSON land in $OUT; a stage that
# fails is recorded and the others still run; the script exits 1 naming the failed stages (0 when all passed).
# GPU tests are bounded by TESTS_TIMEOUT seconds (default 300). CPU dry run (how this script is tested; the tests
# then run in the Triton interpreter, ~25 min in all on 2 cores):
#   ARCH=tiny SMOKE="--image-grid 4" TESTS_TIMEOUT=3600 bash bench/device_run.sh selfcheck
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/janus-rt-out}
MODE=${1:-full}
ARCH=${ARCH:-janus-1.3b}  # a CPU dry run: ARCH=tiny
SMOKE=${SMOKE:-}          # a CPU dry run: SMOKE="--image-grid 4"
TESTS_TIMEOUT=${TESTS_TIMEOUT:-300}
mkdir -p "$OUT"
# shellcheck source=bench/device_env.sh
source bench/device_env.sh || { echo "device_run.sh: janus_rt cannot be imported here; nothing was run" >&2; exit 2; }

FAILED=()
# stage NAME LOG LINES CMD...: run CMD, its output to $OUT/LOG and the last LINES lines shown; a failure is recorded
stage() {
    local name=$1 log=$2 lines=$3
    shift 3
    echo "=== $name"
    "$@" 2>&1 | tee "$OUT/$log" | tail -n "$lines"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || { FAILED+=("$name (exit $rc, $OUT/$log)"); echo "=== $name FAILED (exit $rc)"; }
}
finish() {
    if [ ${#FAILED[@]} -gt 0 ]; then
        printf 'device_run.sh %s: %d stage(s) failed:\n' "$MODE" "${#FAILED[@]}"
        printf '  %s\n' "${FAILED[@]}"
        exit 1
    fi
    echo "device_run.sh $MODE: every stage passed"
    exit 0
}
gpu_tests() {  # gpu_tests LOG TEST...: pytest on the device, stopped at the first failure, bounded in time
    local log=$1
    shift
    stage "GPU tests ($log)" "$log" 5 timeout "$TESTS_TIMEOUT" "${PY[@]}" -m pytest "$@" -q -x -p no:cacheprovider
}
bench() {  # bench NAME ARGS...: janus-rt bench, JSON to $OUT/NAME.json
    local name=$1
    shift
    stage "bench $name" "$name.log" 40 janus-rt bench "$@" --out "$OUT/$name.json"
}

stage versions versions.txt 5 "${PY[@]}" - <<'PY'
import torch, triton
try:
    import transformers; tv = transformers.__version__
except ImportError:
    tv = "absent"
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    gpu = f"gpu={p.name} sms={p.multi_processor_count} mem={p.total_memory/2**30:.1f}GiB cc={p.major}.{p.minor}"
else:
    gpu = "gpu=none (a CPU dry run)"
print(f"{gpu} torch={torch.__version__} triton={triton.__version__} transformers={tv} cuda={torch.version.cuda}")
PY

case "$MODE" in
selfcheck)
    gpu_tests gpu_tests_selfcheck.log tests/test_kernel_skinny_gemm.py tests/test_kernel_attention.py \
        tests/test_kernel_dequant_fp8_native.py tests/test_graph_capture.py tests/test_engine_inflight.py \
        tests/test_warmup.py tests/test_triton_backend.py
    stage "self-check" selfcheck.log 60 "${PY[@]}" -m janus_rt.bench.gpu_selfcheck --arch "$ARCH" $SMOKE \
        --out "$OUT/selfcheck.json"
    bench bench_selfcheck --arch "$ARCH" $SMOKE --images 1,16 --text-batches 1 --no-hf --repeats 1 \
        --backends "triton,triton[attn],triton[silu],triton[norm],triton[all]"
    ;;
perf)
    bench bench_perf --arch "$ARCH" $SMOKE --images 1,16 --backends triton --text-batches 1 --no-hf --repeats 1
    ;;
arrivals)
    A=(--arch "$ARCH" $SMOKE --backends triton --images none --text-batches none --no-hf --repeats 1)
    bench bench_arrivals_16 "${A[@]}" --arrivals 16 --concurrency 16
    bench bench_arrivals_rate8 "${A[@]}" --arrivals 48 --rate 8 --arrival-timeout 240
    bench bench_arrivals_chat "${A[@]}" --arrivals 64 --rate 32 --arrival-kind chat --text-tokens 128 \
        --arrival-timeout 120
    ;;
roofline)
    gpu_tests gpu_tests_roofline.log tests/test_kernel_skinny_gemm.py tests/test_kernel_attention.py \
        tests/test_kernel_tuning.py "tests/test_triton_backend.py::test_fused_step_gives_torch_greedy_tokens" \
        "tests/test_triton_backend.py::test_fused_step_keeps_rows_batch_invariant"
    bench bench_fusions --arch "$ARCH" $SMOKE --images 1,16 --text-batches 1 --no-hf --repeats 1 \
        --backends "triton,triton[attn],triton[silu],triton[norm],triton[all]"
    for b in triton "triton[all]"; do
        stage "profile $b" "profile_${b//[\[\]]/_}.log" 24 "${PY[@]}" -m janus_rt.bench.profile_step \
            --arch "$ARCH" $SMOKE --images 1 --backend "$b" --top 20
    done
    bench bench_cold_start --arch "$ARCH" $SMOKE --images none --text-batches none --no-hf --backends triton \
        --cold-start
    ;;
pro7b)
    bench bench_janus-pro-7b --arch janus-pro-7b $SMOKE --images 1,4 --backends triton,torch --text-batches 1 \
        --no-hf --repeats 1
    ;;
hf | quick | tested | full)
    gpu_tests gpu_tests.log tests/test_kernel_attention.py tests/test_kernel_cfg_sample.py \
        tests/test_kernel_fused.py tests/test_triton_backend.py
    case "$MODE" in
    hf)
        bench bench_janus-1.3b_vs_transformers --arch "$ARCH" $SMOKE --images 1 --backends triton \
            --text-batches 1 --hf-images 1 --hf-text-batches 1 --repeats 1
        ;;
    quick)
        bench bench_quick --arch "$ARCH" $SMOKE --images 1,16 --backends triton --text-batches 1 --no-hf --repeats 1
        ;;
    *)
        bench bench_janus-1.3b --arch "$ARCH" $SMOKE --images 1,4,16 --backends triton,torch --text-batches 1,8 \
            --repeats 1
        if [ "$MODE" = full ]; then
            bench bench_janus-pro-7b --arch janus-pro-7b $SMOKE --images 1,4 --backends triton,torch \
                --text-batches 1 --no-hf --repeats 1
        fi
        ;;
    esac
    ;;
*)
    echo "device_run.sh: unknown mode '$MODE' (selfcheck, perf, quick, tested, full, pro7b, hf, arrivals, roofline)" >&2
    exit 2
    ;;
esac
finish
