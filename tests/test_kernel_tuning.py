"""Persisted tile choices (kernels/tuning.py): where the caches live, the JSON store (merging, atomic replace,
corrupt files, read-only folders), the tuner (fake timer, failing configs) and the decode GEMM launchers run
through the tuned launch in the Triton interpreter (CPU).

A fake timer stands in for triton.testing.do_bench: it runs the config once (so the real launch code runs in the
interpreter), counts its calls and returns a made-up time per config. No test asserts anything about real time.
Every test gets a fresh cache folder through JANUS_RT_CACHE_DIR.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from pathlib import Path

import pytest
import torch

from kernel_utils import DEVICE, assert_close_to_reference  # noqa: E402  (sets TRITON_INTERPRET first)
from test_kernel_dequant_gemm import check_close, make_quantized, reference_weight

import janus_rt
from janus_rt.kernels import tuning
from janus_rt.kernels.dequant_gemm import CONFIGS_8BIT, DequantLinear
from janus_rt.kernels.reference_dequant import dequant_gemm_ref
from janus_rt.kernels.skinny_gemm import (BLOCK_M, CONFIGS, PROLOGUE_NONE, SkinnyLinear, _skinny_gemm_kernel,
                                          skinny_gemm_ref)
from janus_rt.kernels.tile_tuner import PersistentTuner, cuda_context_error
from janus_rt.kernels.tuning import Tile, TileChoices

import triton

pytestmark = pytest.mark.interpreter


class FakeBench:
    """Runs the config once (interpreter) and returns a made-up time: long K tiles and narrow N tiles are "fast"
    (so the choice is not simply the first config). `fail`: configs whose timing raises instead."""

    def __init__(self, fail: tuple[Tile, ...] = ()) -> None:
        self.calls: list[Tile] = []
        self.fail = set(fail)

    def __call__(self, fn) -> float:
        tile = fn.args[0]  # functools.partial(run, tile)
        self.calls.append(tile)
        if tile in self.fail:
            raise RuntimeError(f"out of resources: shared memory for {tuple(tile)}")
        fn()
        return self.time(tile)

    @staticmethod
    def time(tile: Tile) -> float:
        return 1000.0 / tile.BLOCK_K + tile.BLOCK_N + tile.num_warps / 100


def best(configs) -> Tile:
    tiles = [Tile.parse(c) for c in configs]
    return min(tiles, key=FakeBench.time)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("JANUS_RT_CACHE_DIR", str(folder))
    return folder


def the_file(cache: Path) -> Path:
    files = sorted((cache / "autotune").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def entries(path: Path) -> dict:
    data = json.loads(path.read_text())
    assert data["format"] == tuning.FILE_FORMAT
    return data["entries"]


def skinny_inputs(m: int, n: int, k: int, dtype: torch.dtype, seed: int, with_bias: bool = True):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    w = (torch.randn(n, k, generator=gen) / k**0.5).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype) if with_bias else None
    return x, w, bias


# ---------------------------------------------------------------------------------------------- locations


def test_cache_dir_order(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("JANUS_RT_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tuning.cache_dir() == tmp_path / "home" / ".cache" / "janus-rt"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tuning.cache_dir() == tmp_path / "xdg" / "janus-rt"
    monkeypatch.setenv("JANUS_RT_CACHE_DIR", str(tmp_path / "mine"))
    assert tuning.cache_dir() == tmp_path / "mine"
    assert tuning.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/janus-rt")  # an explicit mapping


def test_configure_triton_cache_only_when_unset(tmp_path) -> None:
    env = {"JANUS_RT_CACHE_DIR": str(tmp_path / "c")}
    got = tuning.configure_triton_cache(env)
    assert got == tmp_path / "c" / "triton" and env["TRITON_CACHE_DIR"] == str(got) and got.is_dir()
    env = {"JANUS_RT_CACHE_DIR": str(tmp_path / "c"), "TRITON_CACHE_DIR": str(tmp_path / "theirs")}
    assert tuning.configure_triton_cache(env) == tmp_path / "theirs"
    assert env["TRITON_CACHE_DIR"] == str(tmp_path / "theirs")


def test_configure_triton_cache_default_env(cache, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_CACHE_DIR", "placeholder")  # recorded, so the teardown restores the real value
    monkeypatch.delenv("TRITON_CACHE_DIR")
    assert tuning.configure_triton_cache() == cache / "triton"
    assert os.environ["TRITON_CACHE_DIR"] == str(cache / "triton")


def test_slug_names_gpu_and_versions(monkeypatch) -> None:
    monkeypatch.setattr(tuning, "gpu_identity", lambda device=None: ("NVIDIA H200", (9, 0)))
    monkeypatch.setattr(janus_rt.version, "__version__", "1.2.3")
    slug = tuning.device_slug()
    assert slug == f"nvidia-h200-sm90-janus-rt-1.2.3-triton-{triton.__version__}"
    assert "/" not in slug and " " not in slug
    monkeypatch.undo()
    assert tuning.device_slug("cpu").startswith(f"cpu-janus-rt-{janus_rt.__version__}-triton-")


def test_key_never_contains_m() -> None:
    with pytest.raises(ValueError, match="must not contain M"):
        tuning.tuning_key("skinny_gemm", dict(M=2, N=64, K=64))
    a = tuning.tuning_key("k", dict(N=1, K=2), [Tile(16, 64, 4, 2)])
    assert a == tuning.tuning_key("k", dict(K=2, N=1), [Tile(16, 64, 4, 2)])  # order-free
    assert a != tuning.tuning_key("k", dict(N=1, K=2), [Tile(16, 64, 4, 2), Tile(32, 64, 4, 2)])  # config list


# ---------------------------------------------------------------------------------------------- persistence


def test_first_launcher_tunes_second_reuses(cache) -> None:
    """A first launcher times every config once per shape and writes the file; a new launcher with a new store
    (a new process) makes the same choices without timing anything."""
    shapes = [(3, 40, 300), (2, 96, 130)]
    bench1 = FakeBench()
    gemm = SkinnyLinear(bench=bench1)
    for m, n, k in shapes:
        x, w, bias = skinny_inputs(m, n, k, torch.float32, seed=n)
        gemm(x=x, weight=w, bias=bias)
        gemm(x=x[:1], weight=w, bias=bias)  # another M: no new tuning
    assert len(bench1.calls) == len(CONFIGS) * len(shapes)
    assert sorted(set(bench1.calls)) == sorted(Tile(*c) for c in CONFIGS)
    stored = entries(the_file(cache))
    assert len(stored) == len(shapes)
    assert all(Tile.parse(v) == best(CONFIGS) for v in stored.values())
    assert all("M=" not in key for key in stored)

    bench2 = FakeBench()
    again = SkinnyLinear(bench=bench2)
    for m, n, k in shapes:
        x, w, bias = skinny_inputs(m, n, k, torch.float32, seed=n)
        again(x=x, weight=w, bias=bias)
    assert bench2.calls == []
    assert entries(the_file(cache)) == stored
    tuner = again._tuner(x.device)
    assert tuner.choose(dict(N=96, K=130, dtype="float32"), run=None) == best(CONFIGS)


def test_other_version_or_gpu_does_not_reuse(cache, monkeypatch) -> None:
    x, w, bias = skinny_inputs(2, 40, 200, torch.float32, seed=1)
    SkinnyLinear(bench=FakeBench())(x=x, weight=w, bias=bias)
    first = the_file(cache)

    monkeypatch.setattr(janus_rt.version, "__version__", "99.0.0")
    bench = FakeBench()
    SkinnyLinear(bench=bench)(x=x, weight=w, bias=bias)
    assert len(bench.calls) == len(CONFIGS)
    monkeypatch.undo()
    monkeypatch.setenv("JANUS_RT_CACHE_DIR", str(cache))

    monkeypatch.setattr(tuning, "gpu_identity", lambda device=None: ("NVIDIA H100 80GB HBM3", (9, 0)))
    bench = FakeBench()
    SkinnyLinear(bench=bench)(x=x, weight=w, bias=bias)
    assert len(bench.calls) == len(CONFIGS)

    files = sorted(p.name for p in (cache / "autotune").glob("*.json"))
    assert len(files) == 3 and first.name in files
    assert any("janus-rt-99.0.0" in f for f in files) and any("nvidia-h100-80gb-hbm3-sm90" in f for f in files)


def test_dequant_launcher_persists_per_format(cache) -> None:
    gen = torch.Generator().manual_seed(3)
    bench = FakeBench()
    gemm = DequantLinear(bench=bench)
    w8 = make_quantized("int8", 24, 160, gen)
    w4 = make_quantized("int4", 24, 80, gen, group_size=32)
    x160, x80 = torch.randn(2, 160, device=DEVICE), torch.randn(2, 80, device=DEVICE)
    gemm(x=x160, fmt="int8", **w8)
    gemm(x=x80, fmt="int4", **w4)
    n_calls = len(bench.calls)
    assert n_calls > 0
    stored = entries(the_file(cache))
    assert len(stored) == 2 and any("fmt=int8" in key for key in stored)
    assert any("dequant_int4" in key and "group=32" in key for key in stored)

    bench2 = FakeBench()
    again = DequantLinear(bench=bench2)
    again(x=x160, fmt="int8", **w8)
    again(x=x80, fmt="int4", **w4)
    assert bench2.calls == []


# ---------------------------------------------------------------------------------------------- tuned launches


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("m, n, k", [(2, 100, 300), (17, 130, 1000)])
def test_skinny_tuned_launch_matches_reference(cache, dtype, m, n, k) -> None:
    x, w, bias = skinny_inputs(m, n, k, dtype, seed=m * n + k)
    out = SkinnyLinear(bench=FakeBench())(x=x, weight=w, bias=bias)
    same = torch.nn.functional.linear(x, w, bias)
    ref = skinny_gemm_ref(x.double(), w.double(), bias.double())
    assert_close_to_reference(out, same, ref, dtype, f"tuned skinny gemm {m}x{n}x{k}")
    # the chosen tile is the one that ran: a direct launch with it gives the same bits
    tile = best(CONFIGS)
    direct = torch.empty_like(out)
    assert tile.SPLIT_K == 1  # no workspace: the unused pointers may be anything
    _skinny_gemm_kernel[(triton.cdiv(m, BLOCK_M), triton.cdiv(n, tile.BLOCK_N), 1)](
        x, x, w, x, w, bias, direct, direct, direct, m, n, k, x.stride(0), w.stride(0), direct.stride(0), 0.0,
        **tile.kwargs(), BLOCK_M=BLOCK_M, PROLOGUE=PROLOGUE_NONE, HAS_DELTA=False, HAS_BIAS=True,
        IEEE=dtype == torch.float32, DOT_FP32=dtype == torch.bfloat16)
    assert torch.equal(out, direct)


@pytest.mark.parametrize("fmt, wkw", [("int8", {}), ("fp8", {}), ("int4", dict(group_size=32, with_zeros=True)),
                                      ("int4", dict(group_size=128))], ids=["int8", "fp8", "int4g32z", "int4g128"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_dequant_tuned_launch_matches_reference(cache, fmt, wkw, dtype) -> None:
    gen = torch.Generator().manual_seed(11)
    m, n, k = 5, 40, 272
    w = make_quantized(fmt, n, k, gen, **wkw)
    x = torch.randn(m, k, generator=gen).to(DEVICE, dtype)
    bias = torch.randn(n, generator=gen).to(DEVICE, dtype)
    out = DequantLinear(bench=FakeBench())(x=x, fmt=fmt, bias=bias, **w)
    ref = dequant_gemm_ref(x.double(), reference_weight(fmt, w).double(), bias.double())
    check_close(out, ref, dtype, f"tuned {fmt} {dtype} {wkw}")


def test_skinny_tuned_is_batch_invariant(cache) -> None:
    n, k = 70, 300
    x, w, bias = skinny_inputs(17, n, k, torch.bfloat16, seed=7)
    gemm = SkinnyLinear(bench=FakeBench())
    batch = gemm(x=x, weight=w, bias=bias)
    for row in (0, 5, 16):
        assert torch.equal(gemm(x=x[row:row + 1], weight=w, bias=bias)[0], batch[row]), row


@pytest.mark.parametrize("fmt, wkw", [("int8", {}), ("int4", dict(group_size=32, with_zeros=True))],
                         ids=["int8", "int4g32z"])
def test_dequant_tuned_is_batch_invariant(cache, fmt, wkw) -> None:
    gen = torch.Generator().manual_seed(5)
    w = make_quantized(fmt, 40, 272, gen, **wkw)
    x = torch.randn(17, 272, generator=gen).to(DEVICE, torch.bfloat16)
    gemm = DequantLinear(bench=FakeBench())
    batch = gemm(x=x, fmt=fmt, **w)
    for row in (0, 9, 16):
        assert torch.equal(gemm(x=x[row:row + 1], fmt=fmt, **w)[0], batch[row]), row


# ---------------------------------------------------------------------------------------------- the store


def test_two_stores_merge(tmp_path) -> None:
    a = TileChoices(tmp_path, slug="gpu")
    b = TileChoices(tmp_path, slug="gpu")
    assert a.get("x") is None and b.get("y") is None  # both loaded (empty) before either writes
    a.put("x", Tile(16, 256, 4, 4))
    b.put("y", (32, 128, 4, 5))
    assert set(entries(tmp_path / "gpu.json")) == {"x", "y"}
    fresh = TileChoices(tmp_path, slug="gpu")
    assert fresh.get("x") == dict(BLOCK_N=16, BLOCK_K=256, num_warps=4, num_stages=4)
    assert fresh.get("y") == dict(BLOCK_N=32, BLOCK_K=128, num_warps=4, num_stages=5)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["gpu.json"]  # no temps


def _put_many(folder: str, worker: int, count: int) -> None:
    store = TileChoices(folder, slug="gpu")
    for i in range(count):
        store.put(f"w{worker}-{i}", Tile(16, 64, 4, 1 + i % 4))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_processes_keep_every_entry(tmp_path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_put_many, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(entries(tmp_path / "gpu.json")) == 100


def test_corrupt_file_warns_and_is_replaced(tmp_path) -> None:
    path = tmp_path / "gpu.json"
    path.write_text("{not json")
    store = TileChoices(tmp_path, slug="gpu")
    with pytest.warns(RuntimeWarning, match="gpu.json"):
        assert store.get("x") is None
    store.put("x", Tile(16, 256, 4, 4))
    assert entries(path) == {"x": dict(BLOCK_N=16, BLOCK_K=256, num_warps=4, num_stages=4)}
    # a well-formed JSON with a bad entry is corrupt too
    path.write_text(json.dumps({"format": tuning.FILE_FORMAT, "entries": {"x": {"BLOCK_N": "wide"}}}))
    with pytest.warns(RuntimeWarning, match="corrupt"):
        assert TileChoices(tmp_path, slug="gpu").get("x") is None


def test_stale_or_foreign_choice_is_retuned(tmp_path) -> None:
    """A stored tile that is not among the tuner's configs (hand-edited file) is not launched: tuned again."""
    store = TileChoices(tmp_path, slug="gpu")
    configs = [(16, 64, 4, 2), (32, 64, 4, 2)]
    tuner = PersistentTuner("k", None, configs, store, bench=lambda fn: float(fn.args[0].BLOCK_N))
    store.put(tuner.key(dict(N=1, K=2)), Tile(128, 128, 8, 3))
    assert tuner.choose(dict(N=1, K=2), run=lambda tile: None) == Tile(16, 64, 4, 2)
    assert TileChoices(tmp_path, slug="gpu").get(tuner.key(dict(N=1, K=2)))["BLOCK_N"] == 16


def _check_degrades_in_memory(folder: Path) -> None:
    store = TileChoices(folder, slug="gpu")
    with pytest.warns(RuntimeWarning, match="in memory") as record:
        store.put("x", Tile(16, 256, 4, 4))
    assert len([r for r in record if "in memory" in str(r.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning only: later puts are silent
        store.put("y", Tile(32, 128, 4, 5))
        assert store.get("x")["BLOCK_N"] == 16 and store.get("y")["BLOCK_N"] == 32
    assert not store.persistent


def test_read_only_folder_keeps_choices_in_memory(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        try:  # root (and some file systems) ignore the mode bits: nothing to test then
            (folder / "probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("chmod does not make the folder read-only here (running as root?)")
        _check_degrades_in_memory(folder)
    finally:
        folder.chmod(0o700)


def test_failed_write_keeps_choices_in_memory(tmp_path, monkeypatch) -> None:
    """The same degradation, simulated (works as root too): creating the temp file is refused."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tuning.tempfile, "mkstemp", refuse)
    _check_degrades_in_memory(tmp_path)
    assert not (tmp_path / "gpu.json").exists()


def test_tuned_launcher_works_without_a_writable_cache(cache, monkeypatch) -> None:
    monkeypatch.setattr(tuning.tempfile, "mkstemp",
                        lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    x, w, bias = skinny_inputs(2, 40, 200, torch.float32, seed=2)
    gemm = SkinnyLinear(bench=FakeBench())
    with pytest.warns(RuntimeWarning, match="in memory"):
        out = gemm(x=x, weight=w, bias=bias)
    torch.testing.assert_close(out.double(), skinny_gemm_ref(x.double(), w.double(), bias.double()),
                               atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------- the tuner


def test_failing_configs_are_skipped(tmp_path) -> None:
    configs = [Tile(*c) for c in CONFIGS_8BIT]
    fail = (best(configs), configs[0])
    bench = FakeBench(fail=fail)
    ran = []
    tuner = PersistentTuner("dequant_rowscale", None, configs, TileChoices(tmp_path, slug="gpu"), bench)
    chosen = tuner.choose(dict(N=8, K=8), run=ran.append)
    assert chosen not in fail
    assert chosen == min((c for c in configs if c not in fail), key=FakeBench.time)
    assert len(bench.calls) == len(configs) and set(ran) == set(configs) - set(fail)


def test_all_configs_failing_raises_with_each_error(tmp_path) -> None:
    configs = [Tile(16, 64, 4, 2), Tile(32, 128, 8, 3)]
    tuner = PersistentTuner("skinny_gemm", None, configs, TileChoices(tmp_path, slug="gpu"),
                            FakeBench(fail=tuple(configs)))
    with pytest.raises(RuntimeError, match="every config failed") as info:
        tuner.choose(dict(N=8, K=8), run=lambda tile: None)
    assert "(16, 64, 4, 2): RuntimeError: out of resources" in str(info.value)
    assert "(32, 128, 8, 3): RuntimeError: out of resources" in str(info.value)
    assert not (tmp_path / "gpu.json").exists()


def test_a_tuner_looks_up_the_store_once_per_key(tmp_path) -> None:
    class CountingStore(TileChoices):
        gets = 0

        def get(self, key):
            CountingStore.gets += 1
            return super().get(key)

    tuner = PersistentTuner("k", None, [(16, 64, 4, 2)], CountingStore(tmp_path, slug="gpu"), bench=lambda fn: 1.0)
    for _ in range(3):
        assert tuner.choose(dict(N=1, K=2), run=lambda tile: None) == Tile(16, 64, 4, 2)
    assert CountingStore.gets == 1


def test_split_k_tiles_round_trip_through_the_file(tmp_path) -> None:
    """A 5-field tile (SPLIT_K) is stored with its SPLIT_K and read back equal; a 4-field tile keeps no SPLIT_K
    field (the dequant kernels take none), and each kind launches with exactly its own keyword arguments."""
    store = TileChoices(tmp_path, slug="gpu")
    store.put("split", Tile(16, 256, 4, 4, 4))
    store.put("plain", Tile(16, 256, 4, 4))
    data = entries(tmp_path / "gpu.json")
    assert data["split"]["SPLIT_K"] == 4 and "SPLIT_K" not in data["plain"]
    again = TileChoices(tmp_path, slug="gpu")
    assert Tile.parse(again.get("split")) == Tile(16, 256, 4, 4, 4)
    assert Tile.parse(again.get("plain")) == Tile(16, 256, 4, 4)
    assert Tile(16, 256, 4, 4, 4).kwargs()["SPLIT_K"] == 4 and "SPLIT_K" not in Tile(16, 256, 4, 4).kwargs()
    with pytest.raises(ValueError, match="SPLIT_K"):
        Tile.parse((16, 256, 4, 4, 0))
    assert tuning.config_digest([Tile(16, 64, 4, 2)]) != tuning.config_digest([Tile(16, 64, 4, 2, 1)])


def test_a_broken_device_raises_the_first_error_not_every_config_failed(tmp_path) -> None:
    """After a sticky CUDA error (illegal address, device assert) nothing can run: the tuner stops at the config that
    broke the device and raises its error, instead of failing every other config with the same error."""
    configs = [Tile(16, 64, 4, 2), Tile(32, 128, 8, 3), Tile(64, 128, 4, 4)]
    bench = FakeBench(fail=(configs[0],))
    sticky = RuntimeError("CUDA error: an illegal memory access was encountered")
    tuner = PersistentTuner("skinny_gemm", None, configs, TileChoices(tmp_path, slug="gpu"), bench,
                            context_error=lambda: sticky)
    with pytest.raises(RuntimeError, match="CUDA context is unusable") as info:
        tuner.choose(dict(N=8, K=8), run=lambda tile: None)
    assert "(16, 64, 4, 2)" in str(info.value) and "illegal memory access" in str(info.value)
    assert len(bench.calls) == 1 and "every config failed" not in str(info.value)
    assert not (tmp_path / "gpu.json").exists()
    # a healthy device after the same failure: the config is skipped and the others are timed
    healthy = PersistentTuner("skinny_gemm", None, configs, TileChoices(tmp_path, slug="gpu"),
                              FakeBench(fail=(configs[0],)), context_error=lambda: None)
    assert healthy.choose(dict(N=8, K=8), run=lambda tile: None) != configs[0]


def test_cuda_context_error_is_none_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("the CPU answer")
    assert cuda_context_error() is None


def test_allowed_rule_limits_the_configs_timed_and_reused(tmp_path) -> None:
    configs = [Tile(*c) for c in CONFIGS]
    bench = FakeBench()
    store = TileChoices(tmp_path, slug="gpu")
    no_split = lambda tile: (tile.SPLIT_K or 1) == 1  # noqa: E731
    chosen = PersistentTuner("skinny_gemm", None, configs, store, bench).choose(dict(N=8, K=8), lambda t: None,
                                                                               no_split)
    timed = bench.calls
    assert timed == [c for c in configs if no_split(c)] and no_split(chosen)
    # a stored choice the rule refuses is not reused: the allowed configs are timed again
    store.put(PersistentTuner("skinny_gemm", None, configs, store).key(dict(N=9, K=8)), Tile(*CONFIGS[-1]))
    again = FakeBench()
    got = PersistentTuner("skinny_gemm", None, configs, store, again).choose(dict(N=9, K=8), lambda t: None, no_split)
    assert no_split(got) and len(again.calls) == sum(map(no_split, configs))


def test_split_k_workspace_is_bounded_for_every_weight_shape() -> None:
    """lm_head (N = 102400) takes no split-K tile; every allowed split tile's workspace at 256 rows stays small."""
    from janus_rt.bench.architectures import architecture_config
    from janus_rt.kernels.skinny_gemm import MAX_SPLIT_COLUMNS, split_k_allowed, split_workspace_bytes

    tiles = [Tile(*c) for c in CONFIGS]
    split = [t for t in tiles if t.SPLIT_K > 1]
    assert split and not any(split_k_allowed(102400)(t) for t in split)
    assert all(split_k_allowed(2048)(t) for t in split)  # the 1.3B o_proj / down_proj keep every split tile
    assert split_workspace_bytes(256, 102400, Tile(16, 128, 4, 4, 8)) > 0.8e9  # what the bound prevents
    worst = 0
    for arch in ("janus-1.3b", "janus-pro-7b"):
        llm = architecture_config(arch).llm
        q, kv = llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim
        for n in (q + 2 * kv, llm.hidden_size, 2 * llm.intermediate_size, llm.vocab_size):
            worst = max([worst] + [split_workspace_bytes(256, n, t) for t in split if split_k_allowed(n)(t)])
    assert 0 < worst <= 40e6, worst
    assert MAX_SPLIT_COLUMNS * max(t.SPLIT_K for t in split) > 0
