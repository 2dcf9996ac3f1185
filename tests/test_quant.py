"""Weight-only quantization: the quantizers against an independent fp64 reading of the stored bytes, loading
(at load time and from a `janus-rt quantize` folder) giving the same model, every backend giving the torch
backend's tokens, the folder's safety rules, fp8's hardware check, `info`, and the layer-by-layer peak.

Tolerances: int8 and symmetric int4 (no clipping) reconstruct each weight within half a quantization step
(s / 2, plus the float32 rounding of the fp64 input, ~1e-7 relative), int4 with zero points within one step
at the ends of a group's range; fp8 e4m3 within half a unit in the last place of
a 3-bit mantissa (2^-4 relative) for normal numbers, plus half the smallest subnormal step below them.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path

import pytest
import torch

import janus_rt
from janus_rt.cli.main import main
from janus_rt.model.config_loading import load_config
from janus_rt.errors import CheckpointError, InputError
from janus_rt.quant import QuantSpec
from janus_rt.quant.formats import quantize_fp8, quantize_int4, quantize_int8
from janus_rt.quant.linear import QuantLinear
from janus_rt.quant.model import quantize_model, quantized_module_names


# ------------------------------------------------------------------------ an independent reading of the bytes
def read_int4(packed: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor | None, group: int, k: int) -> torch.Tensor:
    """fp64 weights from the int4 storage, nibble by nibble (written from the format's description only)."""
    n = packed.shape[0]
    out = torch.empty(n, packed.shape[1] * 2, dtype=torch.float64)
    for j in range(packed.shape[1]):
        byte = packed[:, j].to(torch.int64)
        out[:, 2 * j] = (byte % 16).double()
        out[:, 2 * j + 1] = (byte // 16).double()
    zero = zeros.double() if zeros is not None else torch.full(scales.shape, 8.0, dtype=torch.float64)
    groups = torch.arange(out.shape[1]) // group
    return ((out - zero[:, groups]) * scales.double()[:, groups])[:, :k]


def test_int8_is_within_half_a_step_per_channel() -> None:
    w = torch.randn(37, 91, dtype=torch.float64) * torch.rand(37, 1, dtype=torch.float64)
    q = quantize_int8(w)
    assert q["qweight"].dtype == torch.int8 and q["scales"].shape == (37,)
    assert q["qweight"].abs().max() <= 127
    step = q["scales"].double()[:, None]
    err = (q["qweight"].double() * step - w).abs()
    assert (err <= step / 2 + 127 * step * 1e-6).all()  # + the float32 rounding of w on the way in
    assert (q["qweight"].abs().amax(1) == 127).all()  # the range is used


def test_fp8_is_within_half_an_ulp() -> None:
    w = torch.randn(19, 64, dtype=torch.float64)
    q = quantize_fp8(w)
    assert q["qweight"].dtype == torch.float8_e4m3fn
    s = q["scales"].double()[:, None]
    w_hat = q["qweight"].double() * s
    bound = torch.maximum((w / s).abs() * 2.0 ** -4, torch.full_like(w, 2.0 ** -10)) * s  # ulp/2 or subnormal step/2
    assert ((w_hat - w).abs() <= bound * (1 + 1e-6)).all()
    assert ((w / s).abs() <= 448 * (1 + 1e-6)).all()


@pytest.mark.parametrize("zero_point", [True, False])
@pytest.mark.parametrize("group,k", [(16, 64), (32, 80), (128, 200)])
def test_int4_without_clipping_is_within_half_a_step(zero_point: bool, group: int, k: int) -> None:
    w = torch.randn(23, k, dtype=torch.float64)
    q = quantize_int4(w, group, zero_point, clip_search=False)
    groups = -(-k // group)
    assert q["qweight"].shape == (23, groups * group // 2) and q["qweight"].dtype == torch.uint8
    assert q["scales"].shape == (23, groups) and q["scales"].dtype == torch.float16
    assert ("zeros" in q) == zero_point
    w_hat = read_int4(q["qweight"], q["scales"], q.get("zeros"), group, k)
    step = q["scales"].double()[:, torch.arange(k) // group]
    # symmetric: within half a step; with an integer zero point the grid is shifted by up to half a step, so
    # the range's ends may be a whole step away (the clamp to [0, 15])
    bound = step / 2 if not zero_point else step
    assert ((w_hat - w).abs() <= bound * (1 + 1e-3) + 1e-9).all()
    if zero_point:
        assert ((w_hat - w).abs() <= step / 2 * (1 + 1e-3) + 1e-9).float().mean() > 0.9  # the ends are rare
    padding = read_int4(q["qweight"], q["scales"], q.get("zeros"), group, groups * group)[:, k:]
    assert (padding == 0).all()  # padded columns dequantize to exactly zero


def test_int4_clipping_search_lowers_the_output_error() -> None:
    w = torch.randn(64, 256, dtype=torch.float64)
    plain = read_int4(**_args(quantize_int4(w, 128, True, clip_search=False)), group=128, k=256)
    searched = read_int4(**_args(quantize_int4(w, 128, True, clip_search=True)), group=128, k=256)
    # its objective, E over x ~ N(0, I) of ||dw . x||^2 = ||dw||^2, never worse for any (row, group) than no search
    per_group = lambda w_hat: (w_hat - w).view(64, 2, 128).pow(2).sum(-1)  # noqa: E731
    assert (per_group(searched) <= per_group(plain) * (1 + 1e-6)).all()
    # and on fresh inputs the layer's output error drops (~9% for Gaussian weights; 3% asked, so noise cannot fail it)
    x = torch.randn(256, 2048, dtype=torch.float64)
    assert ((searched - w) @ x).pow(2).sum() < 0.97 * ((plain - w) @ x).pow(2).sum()


def _args(q: dict) -> dict:
    return {"packed": q["qweight"], "scales": q["scales"], "zeros": q.get("zeros")}


def test_quant_spec_checks_its_fields() -> None:
    with pytest.raises(InputError, match="one of int8, int4, fp8"):
        QuantSpec("int3")
    with pytest.raises(InputError, match="power of two >= 16"):
        QuantSpec("int4", group_size=100)


# ------------------------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def ckpt(tiny_official: Path) -> Path:
    return tiny_official


def buffers(m: janus_rt.Janus) -> dict[str, torch.Tensor]:
    return {k: v for k, v in m.model.state_dict().items()}


@pytest.mark.parametrize("fmt", ["int8", "int4", "fp8"])
def test_quantizing_while_loading_equals_quantizing_the_loaded_model(ckpt: Path, fmt: str) -> None:
    at_load = janus_rt.load(ckpt, device="cpu", dtype="float32", quantize=fmt)
    after = janus_rt.load(ckpt, device="cpu", dtype="float32")
    try:
        quantize_model(after.model, QuantSpec(fmt))
        a, b = buffers(at_load), buffers(after)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key].view(torch.uint8) if a[key].dtype ==
                                                                torch.float8_e4m3fn else a[key],
                                                                b[key].view(torch.uint8) if b[key].dtype ==
                                                                torch.float8_e4m3fn else b[key]), key
        names = quantized_module_names(at_load.model.cfg)
        assert all(isinstance(at_load.model.get_submodule(n), QuantLinear) for n in names)
        assert not isinstance(at_load.model.gen_aligner.layers[0], QuantLinear)  # aligners stay float
    finally:
        at_load.close()
        after.close()


def test_a_quantized_folder_loads_as_it_was_written(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "q4"
    assert main(["quantize", "--model", str(ckpt), "--out", str(out), "--format", "int4", "--device", "cpu"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["format"] == "int4" and config["quantization"]["group_size"] == 128
    assert len(config["quantization"]["modules"]) == len(quantized_module_names(load_config(ckpt)))
    assert (out / "tokenizer.json").exists() and not list(tmp_path.glob(".q4*"))  # no staging folder left
    stored = janus_rt.load(out, device="cpu", dtype="float32")
    fresh = janus_rt.load(ckpt, device="cpu", dtype="float32", quantize="int4")
    try:
        a, b = buffers(stored), buffers(fresh)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert stored.chat("hello", max_new_tokens=6).token_ids == fresh.chat("hello", max_new_tokens=6).token_ids
        with pytest.raises(InputError, match="already quantized"):
            janus_rt.load(out, device="cpu", quantize="int8")
    finally:
        stored.close()
        fresh.close()
    # the same source may be quantized again into its own folder; another model's folder is refused
    assert main(["quantize", "--model", str(ckpt), "--out", str(out), "--format", "int8", "--device", "cpu"]) == 0
    assert json.loads((out / "config.json").read_text())["quantization"]["format"] == "int8"
    assert main(["quantize", "--model", str(ckpt), "--out", str(ckpt.parent), "--format", "int8"]) == 2


def test_a_failed_write_leaves_nothing(ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetensors.torch

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["quantize", "--model", str(ckpt), "--out", str(tmp_path / "q"), "--format", "int8"])
    assert list(tmp_path.iterdir()) == []


def test_a_tampered_folder_is_refused_with_the_key(ckpt: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    out = tmp_path / "q8"
    assert main(["quantize", "--model", str(ckpt), "--out", str(out), "--format", "int8"]) == 0
    state = load_file(str(out / "model.safetensors"))
    key = "llm.layers.0.attn.o_proj.qweight"
    state[key] = state[key].float()
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"o_proj\.qweight' is torch\.float32, expected torch\.int8"):
        janus_rt.load(out, device="cpu")
    del state[key]
    save_file(state, str(out / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"does not provide 1 tensor\(s\): llm\.layers\.0\.attn\.o_proj\.qweight"):
        janus_rt.load(out, device="cpu")


@pytest.mark.parametrize("fmt", ["int8", "int4", "fp8"])
@pytest.mark.parametrize("fusions", ["none", "all"])
@pytest.mark.interpreter
def test_the_triton_backend_gives_the_torch_backends_tokens(ckpt: Path, fmt: str, fusions: str) -> None:
    """Also with every fused kernel on: the dequant-GEMMs then take the norm and SiLU*up prologues (counted)."""
    if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
        pytest.skip("the triton backend needs a GPU or TRITON_INTERPRET=1 (conftest sets it)")
    ref = janus_rt.load(ckpt, device="cpu", dtype="float32", quantize=fmt)
    fast = janus_rt.load(ckpt, device="cpu", dtype="float32", quantize=fmt, backend="triton", fusions=fusions)
    ops = fast.step_backend.ops
    calls = {"norm_linear": 0, "silu_linear": 0}
    for name in calls:
        def counted(*args, _name=name, _fn=getattr(ops.dequant_gemm, name), **kw):
            calls[_name] += 1
            return _fn(*args, **kw)
        setattr(ops.dequant_gemm, name, counted)
    try:
        assert ref.chat("hello", max_new_tokens=10).token_ids == fast.chat("hello", max_new_tokens=10).token_ids
        layers = len(fast.model.llm.layers)
        fused = fusions == "all"
        assert (calls["norm_linear"] >= 2 * layers, calls["silu_linear"] >= layers) == (fused, fused)
    finally:
        ref.close()
        fast.close()


def test_fp8_is_refused_below_ada_with_a_pointer_to_int8(monkeypatch: pytest.MonkeyPatch) -> None:
    from janus_rt.quant.loading import check_format_supported

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(InputError, match=r"A100-SXM4-80GB is sm_80: use int8"):
        check_format_supported(QuantSpec("fp8"), torch.device("cuda"))
    check_format_supported(QuantSpec("int8"), torch.device("cuda"))  # int8 runs everywhere
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 9))
    check_format_supported(QuantSpec("fp8"), torch.device("cuda"))  # Ada: fine


def test_info_shows_the_format_and_fewer_bytes_per_step(ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q4"
    assert main(["quantize", "--model", str(ckpt), "--out", str(out), "--format", "int4"]) == 0
    capsys.readouterr()
    assert main(["info", "--model", str(out), "--json"]) == 0
    quant = json.loads(capsys.readouterr().out)
    assert main(["info", "--model", str(ckpt), "--json"]) == 0
    float_info = json.loads(capsys.readouterr().out)
    assert quant["quantization"]["format"] == "int4" and "quantization" not in float_info
    for kind in ("image", "text"):
        assert quant["step_bytes"][kind] < float_info["step_bytes"][kind]
    assert main(["info", "--model", str(out)]) == 0
    text = capsys.readouterr().out
    assert "quantized    int4, groups of 128 + zero points" in text and "per step" in text


def test_export_refuses_a_quantized_model(ckpt: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from janus_rt.export import export_onnx

    m = janus_rt.load(ckpt, device="cpu", dtype="float32", quantize="int8")
    try:
        with pytest.raises(InputError, match="export the float checkpoint"):
            export_onnx(m, tmp_path / "onnx")
    finally:
        m.close()


def test_quantizing_while_loading_keeps_few_float_layers_alive(ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak memory: at most a couple of float weights of quantized layers exist at any time while loading."""
    import janus_rt.checkpoint.weights as weights

    live: list[weakref.ref] = []
    peak = {"n": 0}
    original = weights._materialize

    def counting(model, name, device, dtype):
        param = original(model, name, device, dtype)
        live.append(weakref.ref(param))
        peak["n"] = max(peak["n"], sum(r() is not None for r in live))
        return param

    monkeypatch.setattr(weights, "_materialize", counting)
    m = janus_rt.load(ckpt, device="cpu", dtype="float32", quantize="int8")
    try:
        layers = m.model.cfg.llm.num_layers
        assert len(live) == 4 * layers + 3  # every quantized weight was materialized on demand...
        assert 1 <= peak["n"] <= 2  # ...and freed once quantized (q, k, v fill one qkv; gate, up one gate|up)
        assert all(r() is None for r in live)
    finally:
        m.close()
