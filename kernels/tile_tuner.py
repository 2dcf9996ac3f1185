"""Choosing a kernel's launch tile by timing, once per GPU + versions: `PersistentTuner`.

A launcher owns one tuner per kernel. `choose` returns the tile chosen earlier in this process, else the one in
its `TileChoices` store (`tuning.py`: persisted per GPU, janus-rt and Triton version), else it times every
allowed config, keeps the fastest and stores it. Keys never contain M (batch invariance: see tuning.py).
A sticky CUDA error while timing (`cuda_context_error`) stops the tuning at once with the original error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from janus_rt.kernels.tuning import Tile, TileChoices, config_digest, tuning_key


def default_bench(fn: Callable[[], None]) -> float:
    """Time fn on the GPU (triton.testing.do_bench: warm-up, then the mean over ~100 ms of runs, in ms)."""
    import triton.testing

    return float(triton.testing.do_bench(fn))


def cuda_context_error() -> Exception | None:
    """None while CUDA works (or this process has not used it); else the error a device synchronize raises.

    After an illegal memory access, a device-side assert or a trap, the CUDA context is broken for good: every later
    call fails with the same error (a "sticky" error), whatever it launches."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    try:
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - whatever the driver reports is the answer
        return e
    return None


class PersistentTuner:
    """Chooses a kernel's launch config per key (weight shape + dtypes, never M), once per GPU + versions.

    `choose(key_values, run, allowed)`: the choice made earlier in this process, else the one in `store`, else it
    times every config (that `allowed` accepts, a rule of the key's values only) with `bench(fn)` where fn() runs
    the config (it is `functools.partial(run, config)`, so a fake timer can read the config as `fn.args[0]`); lower
    is faster; it keeps the fastest and stores it. A config whose run raises (compile error, out of shared memory,
    ...) is skipped; if all fail, RuntimeError lists them. But when the device itself is broken after a config's
    failure (`context_error()` returns the error: a sticky CUDA error), no config can run any more: the original
    error is raised at once, not "every config failed". `run(config)` must be safe to repeat (the decode GEMMs
    only write their output)."""

    def __init__(self, kernel_name: str, kernel: Any, configs: Sequence[Any], store: TileChoices,
                 bench: Callable[[Callable[[], None]], float] | None = None,
                 context_error: Callable[[], Exception | None] = cuda_context_error) -> None:
        self.kernel_name = kernel_name
        self.kernel = kernel
        self.configs = list(dict.fromkeys(Tile.parse(c) for c in configs))  # deduplicated, in order
        if not self.configs:
            raise ValueError(f"{kernel_name}: no configs to tune")
        self.store = store
        self.bench = bench if bench is not None else default_bench
        self._digest = config_digest(self.configs)  # once: keys are built at every launch
        self._chosen: dict[str, Tile] = {}
        self.context_error = context_error

    def key(self, key_values: Mapping[str, Any]) -> str:
        return tuning_key(self.kernel_name, key_values, digest=self._digest)

    def choose(self, key_values: Mapping[str, Any], run: Callable[[Tile], None],
               allowed: Callable[[Tile], bool] | None = None) -> Tile:
        key = self.key(key_values)
        tile = self._chosen.get(key)
        if tile is not None:
            return tile
        candidates = [t for t in self.configs if allowed is None or allowed(t)]
        if not candidates:
            raise ValueError(f"{self.kernel_name}: no config is allowed for {key}")
        stored = self.store.get(key)
        if stored is not None and Tile.parse(stored) in candidates:
            tile = Tile.parse(stored)
        else:
            tile = self._tune(key, run, candidates)
            self.store.put(key, tile)
        self._chosen[key] = tile
        return tile

    def launch(self, key_values: Mapping[str, Any], grid: Callable[[Tile], tuple[int, ...]], *args: Any,
               **common: Any) -> Tile:
        """Choose the tile for `key_values` and launch `kernel[grid(tile)](*args, **tile.kwargs(), **common)`."""
        def run(tile: Tile) -> None:
            self.kernel[grid(tile)](*args, **tile.kwargs(), **common)

        tile = self.choose(key_values, run)
        run(tile)
        return tile

    def _tune(self, key: str, run: Callable[[Tile], None], candidates: list[Tile]) -> Tile:
        times: dict[Tile, float] = {}
        errors: list[str] = []
        for tile in candidates:
            try:
                t = float(self.bench(functools.partial(run, tile)))
            except Exception as e:  # noqa: BLE001 - a config that cannot compile / run here is skipped
                broken = self.context_error()
                if broken is not None:  # not this config's fault alone: nothing can run on this device any more
                    raise RuntimeError(f"{self.kernel_name}: the device failed while timing config "
                                       f"{tuple(tile.kwargs().values())} for {key} ({type(e).__name__}: "
                                       f"{str(e).strip()[:300]}); the CUDA context is unusable after it ({broken}), "
                                       f"so no other config was tried") from e
                errors.append(f"{tuple(tile.kwargs().values())}: {type(e).__name__}: {str(e).strip()[:300]}")
                continue
            if math.isnan(t):
                errors.append(f"{tuple(tile.kwargs().values())}: the benchmark returned NaN")
                continue
            times[tile] = t
        if not times:
            raise RuntimeError(f"{self.kernel_name}: every config failed for {key} "
                               f"(BLOCK_N, BLOCK_K, num_warps, num_stages[, SPLIT_K]):\n  " + "\n  ".join(errors))
        return min(times, key=times.__getitem__)  # ties: the earlier config
