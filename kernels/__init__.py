"""Triton kernels for janus-rt, one per file, each with its torch reference and interpreter tests.

    decode_attention  split-K attention over the KV pool (each row its own cache row and length)
    cfg_sample        CFG mix + temperature / top-k / top-p + the seeded draw, per row
    fused_norm        residual add + RMSNorm; SiLU * up
    rope_cache        RoPE + the KV-cache write
    skinny_gemm       batch-invariant few-row GEMM of the decode step (bf16 / fp16 / fp32 weights), split-K tiles
    dequant_gemm      the same for int8 / int4 / fp8 weights, dequantized in registers
    gemm_prologue     the GEMMs' shared A prologues (RMSNorm, SiLU*up) and epilogue (Triton device functions)
    tuning            tile choices persisted per GPU + versions; Triton's compile cache location
The eager torch backend in `janus_rt` is the reference they are checked against.
"""
