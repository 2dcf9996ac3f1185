"""Every kernel compiles for the GPUs janus-rt users run, on a machine without one: A100 (sm_80, Ampere),
L4 (sm_89, Ada), H100 / H200 (sm_90, Hopper).

The interpreter tests prove the arithmetic, not that Triton can compile a kernel for a GPU (an op the
interpreter accepts may not lower, a tile may need more shared memory than a GPU has). Here the launchers run
once in the interpreter with `interpreting()` patched to False, so they pick their GPU launch parameters (tiles,
DOT_FP32 off, every tuned config through a timer that only runs it, the fp8 GEMM's bit decode (sm_80) and its
native float8 variant (sm_89+)), on Janus-1.3B-like widths; each launch is recorded as the GPU JIT specializes it
(Triton's own binder: argument types, `tt.divisibility=16` on 16-byte aligned pointers and multiple-of-16 ints,
ints equal to 1 as constexprs; CPU tensors are 64-byte aligned and views keep a GPU tensor's offsets, so the hints
are the GPU's), then `tests/aot_compile.py` compiles them for each target in a subprocess (Triton's ahead-of-time
path: TTIR -> PTX -> cubin with the bundled ptxas). Without the hints the pipelined loads stay narrow and the
shared memory figures come out several times too low. The record and the compiles run in child processes that
start in the background as soon as the run has collected its tests (tests/fixtures_aot.py); this module runs last.
Checks: every launch compiles for every target it can run on (the native fp8 variant from sm_89 on) with its
hints; a fixed launch (attention, norms, RoPE, sampler) fits the target's shared memory per block; each tuned
kernel has at least one config that fits (the tuner skips the configs a GPU cannot launch). On a CUDA machine the
kernel tests compile for the real GPU already: skipped.

By hand (e.g. another Triton for the compile, installed aside in FOLDER):
    python tests/test_kernel_compile.py launches.json      # record (the installed Triton's interpreter)
    PYTHONPATH=FOLDER python tests/aot_compile.py launches.json sm_89 sm_90
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kernel_utils import DEVICE  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

from fixtures_aot import compiled_launches

pytestmark = [pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the kernel tests compile for it"),
              pytest.mark.slow, pytest.mark.subprocess, pytest.mark.interpreter]

# opt-in shared memory per thread block (bytes): A100 163 KiB, L4 99 KiB, H100 / H200 227 KiB
SHARED_LIMIT = {"sm_80": 163 * 1024, "sm_89": 99 * 1024, "sm_90": 227 * 1024}
TUNED = ("_skinny_gemm_kernel", "_rowscale_kernel", "_int4_kernel")
HIDDEN, HEAD_DIM = 2048, 128  # Janus-1.3B
FLOAT8_ARCH = 89  # float8 e4m3 (fp8e4nv) exists from Ada (sm_89) on; the launcher picks native fp8 only there


@functools.cache
def jit_binder(fn) -> Callable:
    """Triton's own argument binder for `fn` (an interpreted kernel), built as the GPU JIT builds it for CUDA: it
    returns (bound arguments, specialization per parameter, launch options)."""
    from triton.backends import backends
    from triton.runtime.jit import KernelParam, create_function_from_signature

    signature = inspect.signature(fn.fn)
    no_spec = fn.kwargs.get("do_not_specialize") or ()
    no_align = fn.kwargs.get("do_not_specialize_on_alignment") or ()
    params = [KernelParam(i, p, i in no_spec or p.name in no_spec, i in no_align or p.name in no_align)
              for i, p in enumerate(signature.parameters.values())]
    return create_function_from_signature(signature, params, backends["nvidia"].compiler)


def describe(fn, args: tuple, kwargs: dict) -> dict:
    """A recorded launch as the GPU JIT specializes it: the type of each argument by name ("constexpr" for declared
    constexprs and for ints equal to 1), constexpr values, the attribute descriptor of each specialized argument
    ("D": `tt.divisibility=16`, for a 16-byte aligned pointer or a multiple-of-16 int), launch options, and the
    oldest GPU that can run it (`min_arch`)."""
    bound, specialization, options = jit_binder(fn)(*args, **kwargs)
    signature, constexprs, attrs = {}, {}, {}
    for (name, value), (kind, attr) in zip(bound.items(), specialization):
        signature[name] = kind
        if kind == "constexpr":
            constexprs[name] = value
        elif attr:  # "" (not divisible) and None (not specialized: floats, bools, do_not_specialize) add nothing
            attrs[name] = attr
    options = {"num_warps": 4, "num_stages": 3, **options}  # the JIT's defaults for CUDA
    native_fp8 = bool(constexprs.get("FP8_NATIVE")) or "*fp8e4nv" in signature.values()
    launch = {"module": fn.fn.__module__, "kernel": fn.fn.__name__, "signature": signature, "constexprs": constexprs,
              "attrs": attrs, "options": options, "min_arch": FLOAT8_ARCH if native_fp8 else 0}
    launch["key"] = json.dumps({k: launch[k] for k in ("kernel", "signature", "constexprs", "attrs", "options")},
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
    decode = DequantLinear(store=store, bench=run_once)  # fp8: the bit decode, what an A100 (sm_80) runs
    native = DequantLinear(fp8_native=True, store=store, bench=run_once)  # fp8 on an L4 / H100 (sm_89+)
    for dequant, fmt, kw in ((decode, "int8", {}), (decode, "fp8", {}), (native, "fp8", {}),
                             (decode, "int4", dict(group_size=128, with_zeros=True))):
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


def record_launches(folder: Path) -> list[dict]:
    """Run the launchers in the interpreter on GPU launch parameters (tile choices stored in `folder`) and return
    each distinct launch of a janus_rt kernel, described as the GPU JIT specializes it."""
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
        run_launchers(folder)
    return list(launches.values())


@pytest.fixture(scope="module")
def compiled(request: pytest.FixtureRequest) -> list[dict]:
    """The result rows of the launches compiled for every target (one child process per target), each with its
    launch. The record and the compiles start in the background when the run begins (fixtures_aot.py)."""
    launches, rows = compiled_launches(request.config, tuple(SHARED_LIMIT))
    by_key = {launch["key"]: launch for launch in launches}
    for row in rows:
        row["launch"] = by_key[row["key"]]
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
    fp8 = {(row["launch"]["constexprs"]["PROLOGUE"], row["launch"]["constexprs"]["FP8_NATIVE"]) for row in compiled
           if row["launch"]["kernel"] == "_rowscale_kernel" and row["launch"]["constexprs"]["FP8"]}
    assert fp8 == {(p, native) for p in (0, 1, 2) for native in (False, True)}, "bit decode and native fp8"
    assert {row["launch"]["constexprs"].get("FUSED_MERGE") for row in compiled
            if row["launch"]["kernel"] == "_split_kernel"} == {False, True}
    assert not any(row["launch"]["constexprs"].get("DOT_FP32") for row in compiled), "GPU launches only"


def test_every_launch_compiles_for_every_target(compiled) -> None:
    """Every launch compiles once for every target that can run it: all of them, the native fp8 variant from sm_89
    on (an A100 has no float8 conversion; the launcher gives it the bit decode)."""
    failed = [f"{row['target']} {row['launch']['kernel']} {row['launch']['constexprs']}: {row['error']}"
              for row in compiled if not row["ok"]]
    assert not failed, "\n".join(failed)
    launches = {row["key"]: row["launch"] for row in compiled}
    expected = sorted((key, target) for key, launch in launches.items() for target in SHARED_LIMIT
                      if int(target.removeprefix("sm_")) >= launch["min_arch"])
    assert sorted((row["key"], row["target"]) for row in compiled) == expected
    assert {launch["min_arch"] for launch in launches.values()} == {0, FLOAT8_ARCH}


def test_launches_carry_the_gpu_jits_hints(compiled) -> None:
    """The recorded launches are the GPU JIT's: divisibility hints on the aligned pointers (every tensor here is a
    fresh allocation or a view at a multiple of 16 bytes) and on the multiple-of-16 widths, none on the batch size
    (`do_not_specialize`, never a constexpr either), and the compiled kernels carry them (hints counted in the TTIR)."""
    for row in compiled:
        launch = row["launch"]
        name = f"{launch['kernel']} {launch['constexprs']}"
        pointers = {arg for arg, kind in launch["signature"].items() if kind.startswith("*")}
        assert {arg for arg in pointers if launch["attrs"].get(arg) != "D"} == set(), name
        if launch["kernel"] in TUNED:
            assert launch["signature"]["M"] == "i32" and "M" not in launch["attrs"], name
            assert launch["attrs"]["N"] == launch["attrs"]["K"] == "D", name  # N = 32, K = 2048
        assert row["hints"] == len(launch["attrs"]), f"{row['target']} {name}: the compiled kernel lost hints"


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
            group = (row["target"], launch["kernel"], c.get("PROLOGUE"), c.get("FP8_NATIVE"), str(launch["signature"]))
            fits[group] = fits.get(group, False) or ok
        elif not ok:
            too_big.append(f"{row['target']} {launch['kernel']}: {row['shared']} B > {limit} B")
    assert not too_big, "\n".join(too_big)
    assert fits and all(fits.values()), [g for g, ok in fits.items() if not ok]


if __name__ == "__main__":  # record the launches to a file, for tests/aot_compile.py by hand (module doc)
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tiles:
        recorded = record_launches(Path(tiles))
    Path(sys.argv[1]).write_text(json.dumps(recorded))
    print(f"{len(recorded)} launches -> {sys.argv[1]}")
