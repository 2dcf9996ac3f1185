"""Step backends of the engine: eager (torch, the reference) and triton (fused decode step, CUDA graphs)."""
