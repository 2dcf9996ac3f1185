"""Weight-only quantization: int8 / int4 / fp8 weights for the transformer's linears and the two heads.

    formats.py     QuantSpec and the quantizers (int8 per channel, int4 groups + clipping search, fp8 e4m3)
    linear.py      QuantLinear: stored tensors as buffers, a torch forward (dequantize, then F.linear)
    model.py       which layers are quantized, swapping them, bytes per step
    checkpoint.py  quantized checkpoint folders (write atomically, load strictly)
    loading.py     `janus_rt.load(..., quantize=)` and loading a quantized folder
    evaluate.py    `janus-rt eval-quant`'s run, over eval_inputs.py (prompts, settings), eval_measure.py (the
                   reference and the comparison) and eval_report.py (PNGs, report.json, the table)
The fused dequant-GEMMs of the triton backend live in `janus_rt.kernels.dequant_gemm`.
"""

from janus_rt.quant.formats import FORMATS, QuantSpec

__all__ = ["FORMATS", "QuantSpec"]
