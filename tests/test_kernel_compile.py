"""Every kernel compiles for the GPUs janus-rt users run, on a machine without one: A100 (sm_80, Ampere),
L4 (sm_89, Ada), H100 / H200 (sm_90, Hopper).

The interpreter tests prove the arithmetic, not that Triton can compile a kernel for a GPU (an op the
interpreter accepts may not lower, a tile may need more shared memory than a GPU has). Here the launchers run
once in the interpreter with `interpreting()` patched to False, so they pick their GPU launch parameters (tiles,
DOT_FP32 off, every tuned config through a timer that only runs it), on Janus-1.3B-like widths; each launch is
recorded (kernel, argument types, constexprs, num_warps / num_stages), then `tests/aot_compile.py` compiles them
for each target in a subprocess (Triton's ahead-of-time path: TTIR -> PTX -> cubin with the bundled ptxas).
Checks: every launch compiles for every target; a fixed launch (attention, norms, RoPE, sampler) fits the
target's shared memory per block; each tuned kernel has at least one config that fits (the tuner skips the
configs a GPU cannot launch). On a CUDA machine the kernel tests compile for the real GPU already: skipped.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from kernel_utils import DEVICE  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the kernel tests compile for it")

# opt-in shared memory per thread block (bytes): A100 163 KiB, L4 99 KiB, H100 / H200 227 KiB
SHARED_LIMIT = {"sm_80": 163 * 1024, "sm_89": 99 * 1024, "sm_90": 227 * 1024}
POINTER_TYPES = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.int32: "*i32",
                 torch.int64: "*i64", torch.uint8: "*u8", torch.int8: "*i8", torch.float8_e4m3fn: "*fp8e4nv",
                 torch.bool: "*i1"}
TUNED = ("_skinny_gemm_kernel", "_rowscale_kernel", "_int4_kernel")
HIDDEN, HEAD_DIM = 2048, 128  # Janus-1.3B


def scalar_type(value) -> str:
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"unexpected kernel argument {value!r}")


def describe(fn, args: tuple, kwargs: dict) -> dict:
    """A recorded launch: argument types by name, constexpr values, launch options."""
    params = inspect.signature(fn.fn).parameters
    kwargs = dict(kwargs)
    options = {"num_warps": kwargs.pop("num_warps", 4), "num_stages": kwargs.pop("num_stages", 3)}
    bound = dict(zip(params, args), **kwargs)
    signature, constexprs = {}, {}
    for name, param in params.items():
        value = bound[name]
        if "constexpr" in str(param.annotation):
            constexprs[name] = value
        else:
            signature[name] = POINTER_TYPES[value.dtype] if isinstance(value, torch.Tensor) else scalar_type(value)
    launch = {"module": fn.fn.__module__, "kernel": fn.fn.__name__, "signature": signature, "constexprs": constexprs,
              "options": options}
    launch["key"] = json.dumps({k: launch[k] for k in ("kernel", "signature", "constexprs", "options")},
                               sort_keys=True)
    return launch


def run_launchers(store_dir: Path) -> None:
    """One call of every launcher on GPU launch parameters (values are not checked here: the interpreter tests do).
    Tile choices go to a fresh store in `store_dir`, so every config of a tuned kernel runs (none is remembered)."""
    from test_kernel_dequant_gemm import make_quantized

    from janus_rt.kernels.cfg_sample import cfg_sample
    from janus_rt.kernels.decode_attention import decode_attention
    from janus_rt.kernels.dequant_gemm import DequantLinear
    from janus_rt.kernels.fused_norm import add_rmsnorm, silu_mul
    from janus_rt.kernels.rope_cache import inv_freq_of, rope_cache
    from janus_rt.kernels.skinny_gemm import CONFIGS, SkinnyLinear
    from janus_rt.kernels.tuning import TileChoices

    def run_once(fn) -> float:
        fn()
        return 1.0

    gen = torch.Generator().manual_seed(0)
    bf16 = torch.bfloat16
    rows, n = 2, 32
    x = torch.randn(rows, HIDDEN, generator=gen).to(bf16)
    w = torch.randn(n, HIDDEN, generator=gen).to(bf16)
    store = TileChoices(store_dir, slug="aot")
    gemm = SkinnyLinear(store=store, configs=CONFIGS, bench=run_once)  # every config runs once (the tuner's timing)
    gemm(x=x, weight=w)
    gemm.norm_linear(x=x, delta=x.clone(), norm_weight=torch.ones(HIDDEN, dtype=bf16), eps=1e-6, weight=w)
    gemm.silu_linear(gate_up=torch.randn(rows, 2 * HIDDEN, generator=gen).to(bf16), weight=w)
    SkinnyLinear(store=store, configs=CONFIGS[:1], bench=run_once)(x=x.float(), weight=w.float())  # IEEE dots
    dequant = DequantLinear(store=store, bench=run_once)
    for fmt, kw in (("int8", {}), ("fp8", {}), ("int4", dict(group_size=128, with_zeros=True))):
        weight = make_quantized(fmt, n, HIDDEN, gen, **kw)
        dequant(x=x, fmt=fmt, **weight)
        dequant.norm_linear(x=x, delta=x.clone(), norm_weight=torch.ones(HIDDEN, dtype=bf16), eps=1e-6, fmt=fmt,
                            **weight)
        dequant.silu_linear(gate_up=torch.randn(rows, 2 * HIDDEN, generator=gen).to(bf16), fmt=fmt, **weight)
    heads, slots = HIDDEN // HEAD_DIM, 512
    keys = torch.randn(3, heads, slots, HEAD_DIM, generator=gen).to(bf16)
    values = torch.randn(3, heads, slots, HEAD_DIM, generator=gen).to(bf16)
    positions = torch.tensor([[300], [17]])
    qkv = torch.randn(rows, 1, 3 * HIDDEN, generator=gen).to(bf16)
    q = rope_cache(qkv=qkv, positions=positions, inv_freq=inv_freq_of(HEAD_DIM, 10000.0, torch.device("cpu")),
                   keys=keys, values=values, num_heads=heads, cache_rows=torch.tensor([2, 0], dtype=torch.int32))
    lengths = (positions[:, -1] + 1).to(torch.int32)
    for counters in (None, torch.zeros(rows * heads, dtype=torch.int32)):
        decode_attention(q=q, keys=keys, values=values, lengths=lengths, merge_counters=counters,
                         cache_rows=torch.tensor([2, 0], dtype=torch.int32))
    add_rmsnorm(x=x, delta=x.clone(), weight=torch.ones(HIDDEN, dtype=bf16), eps=1e-6)
    silu_mul(gate_up=torch.randn(rows, 2 * 5632, generator=gen).to(bf16))
    vocab = 16384  # the image codebook; the text vocabulary takes the same blocks
    images = 1
    cfg_sample(logits=torch.randn(2 * images, vocab, generator=gen), cfg_weight=torch.full((images,), 5.0),
               temperature=torch.ones(images), top_k=torch.zeros(images, dtype=torch.int32),
               top_p=torch.ones(images), seed=torch.zeros(images, dtype=torch.long),
               step=torch.zeros(images, dtype=torch.long), tokens_out=torch.zeros(1, 8, dtype=torch.long),
               out_rows=torch.zeros(images, dtype=torch.int32))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> list[dict]:
    """Record the launches, compile them for every target (one subprocess per target), return the result rows."""
    from triton.runtime.interpreter import InterpretedFunction

    from janus_rt.kernels import cfg_sample, decode_attention, dequant_gemm, skinny_gemm

    launches: dict[str, dict] = {}
    original = InterpretedFunction.run

    def recording(self, *args, grid, warmup, **kwargs):
        if self.fn.__module__.startswith("janus_rt.kernels"):
            launch = describe(self, args, kwargs)
            launches[launch["key"]] = launch
        return original(self, *args, grid=grid, warmup=warmup, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(InterpretedFunction, "run", recording)
        for module in (skinny_gemm, dequant_gemm, decode_attention, cfg_sample):
            mp.setattr(module, "interpreting", lambda: False)
        folder = tmp_path_factory.mktemp("aot")
        run_launchers(folder)
    path = folder / "launches.json"
    path.write_text(json.dumps(list(launches.values())))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("aot_compile.py")

    def compile_for(target: str) -> list[dict]:
        done = subprocess.run([sys.executable, str(script), str(path), target], capture_output=True, text=True,
                              env=env, timeout=1200)
        assert done.returncode == 0, f"aot_compile.py {target} failed:\n{done.stderr[-3000:]}"
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    with ThreadPoolExecutor(max_workers=len(SHARED_LIMIT)) as pool:
        rows = [row for part in pool.map(compile_for, SHARED_LIMIT) for row in part]
    for row in rows:
        row["launch"] = launches[row["key"]]
    return rows


def test_every_kernel_was_recorded(compiled) -> None:
    from janus_rt.kernels.skinny_gemm import CONFIGS

    kernels = {row["launch"]["kernel"] for row in compiled}
    expected = {"_skinny_gemm_kernel", "_rowscale_kernel", "_int4_kernel", "_split_kernel", "_merge_kernel",
                "_rope_cache_kernel", "_add_rmsnorm_kernel", "_silu_mul_kernel", "_cfg_sample_kernel"}
    assert expected <= kernels, f"not recorded: {sorted(expected - kernels)}"
    prologues = {row["launch"]["constexprs"].get("PROLOGUE") for row in compiled
                 if row["launch"]["kernel"] == "_skinny_gemm_kernel"}
    splits = {row["launch"]["constexprs"].get("SPLIT_K") for row in compiled
              if row["launch"]["kernel"] == "_skinny_gemm_kernel"}
    assert prologues == {0, 1, 2} and {1, 2, 4, 8} <= splits
    configs = {(row["launch"]["constexprs"]["PROLOGUE"], row["launch"]["constexprs"]["BLOCK_N"],
                row["launch"]["constexprs"]["BLOCK_K"], row["launch"]["constexprs"]["SPLIT_K"],
                row["launch"]["options"]["num_warps"], row["launch"]["options"]["num_stages"])
               for row in compiled if row["launch"]["kernel"] == "_skinny_gemm_kernel"}
    assert len(configs) >= 3 * len(CONFIGS), "every tuned config of every prologue is compiled"
    for kernel in ("_rowscale_kernel", "_int4_kernel"):
        assert {row["launch"]["constexprs"].get("PROLOGUE") for row in compiled
                if row["launch"]["kernel"] == kernel} == {0, 1, 2}, kernel
    assert {row["launch"]["constexprs"].get("FUSED_MERGE") for row in compiled
            if row["launch"]["kernel"] == "_split_kernel"} == {False, True}
    assert not any(row["launch"]["constexprs"].get("DOT_FP32") for row in compiled), "GPU launches only"


def test_every_launch_compiles_for_every_target(compiled) -> None:
    failed = [f"{row['target']} {row['launch']['kernel']} {row['launch']['constexprs']}: {row['error']}"
              for row in compiled if not row["ok"]]
    assert not failed, "\n".join(failed)
    assert {row["target"] for row in compiled} == set(SHARED_LIMIT)


def test_launches_fit_shared_memory(compiled) -> None:
    """A fixed launch must fit every target; a tuned kernel needs one config that fits (per prologue / format)."""
    too_big, fits = [], {}
    for row in compiled:
        if not row["ok"]:
            continue
        launch, limit = row["launch"], SHARED_LIMIT[row["target"]]
        ok = row["shared"] <= limit
        if launch["kernel"] in TUNED:
            c = launch["constexprs"]
            group = (row["target"], launch["kernel"], c.get("PROLOGUE"), str(launch["signature"]))
            fits[group] = fits.get(group, False) or ok
        elif not ok:
            too_big.append(f"{row['target']} {launch['kernel']}: {row['shared']} B > {limit} B")
    assert not too_big, "\n".join(too_big)
    assert fits and all(fits.values()), [g for g, ok in fits.items() if not ok]
