"""Fused dual-batch CFG sampling: guidance, temperature, top-k / top-p, the draw, token write and next-embedding gather.

One program per output row p (an image, or a text row without CFG):
    x        = uncond + w[p] * (cond - uncond)        rows 2p / 2p+1 of `logits` (CFG), or row p (no CFG), fp32
    x        = x / temperature[p]                      temperature 0 is argmax, as torch.argmax (first maximum)
    keep     = top-k then top-p (transformers' semantics: drop the low tail whose mass is <= 1 - top_p)
    token    = argmax(x + Gumbel noise) over keep      an exact draw from softmax(x) restricted to keep
    tokens_out[out_rows[p], step[p]] = token           out_rows, step: device tensors (graph safe)
    embeds_out[2p], embeds_out[2p+1] = table[token]    (CFG; row p without CFG): the next step's input row

The draw is Gumbel-max with Philox numbers keyed by seed[p] + step[p] * 65537 (the caller folds the image
index into seed[p]; seed[p] = seed + p gives the v1 stream seed + step * 65537 + p), counter = token id: no
host sync, and the same seed gives the same tokens. Nothing a row computes depends on its batch position or
its companions (the key is the request's, not the batch row's), so a row samples bitwise the same token
alone or in any batch. It is not the same random stream as torch.multinomial, so seeded tokens differ from
the torch backend's (greedy tokens do not). top-k and top-p thresholds are found exactly by bisection over the
fp32 values' order-preserving integer keys (32 passes over the row, only when the filter is on), so a
row of any vocabulary size streams through in BLOCK_V chunks and nothing is sorted. Ties at a threshold are
kept together (torch's top-k does the same; transformers' top-p may split a tie: measure zero on real logits).

Per-row parameters (w, temperature, top_k, top_p, seed, step, out_rows) are device tensors, so changing
them never forces a CUDA-graph re-capture.

Versions: v1 streamed passes, one program per row, a shared seed and step; v2 (this file) per-row seed, step
and output row (continuous batching: each row belongs to its own request).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from janus_rt.kernels.interpret import interpreting
from janus_rt.kernels.reference_sampling import filter_top_k, filter_top_p


@triton.jit
def _guided_chunk(logits_ptr, stride_row, p, idx, in_vocab, weight, CFG: tl.constexpr):
    """fp32 guided logits of one chunk (-inf outside the vocabulary)."""
    if CFG:
        cond = tl.load(logits_ptr + (2 * p) * stride_row + idx, mask=in_vocab, other=0.0).to(tl.float32)
        uncond = tl.load(logits_ptr + (2 * p + 1) * stride_row + idx, mask=in_vocab, other=0.0).to(tl.float32)
        x = uncond + weight * (cond - uncond)
    else:
        x = tl.load(logits_ptr + p * stride_row + idx, mask=in_vocab, other=0.0).to(tl.float32)
    return tl.where(in_vocab, x, float("-inf"))


@triton.jit
def _order_key(x):
    """fp32 -> int32 with the same order (negative floats have their magnitude bits flipped)."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)


@triton.jit
def _cfg_sample_kernel(
    logits_ptr, stride_logits, weight_ptr, temperature_ptr, top_k_ptr, top_p_ptr, seed_ptr, step_ptr,
    out_rows_ptr, tokens_ptr, stride_tokens, table_ptr, stride_table, embeds_ptr, stride_embeds,
    vocab, embed_dim,
    CFG: tl.constexpr, GATHER: tl.constexpr, HAS_OUT_ROWS: tl.constexpr, BLOCK_V: tl.constexpr,
    BLOCK_E: tl.constexpr,
):
    p = tl.program_id(0)
    zero64 = p.to(tl.int64) * 0
    weight = 1.0
    if CFG:
        weight = tl.load(weight_ptr + p)
    temperature = tl.load(temperature_ptr + p)
    sampling = temperature > 0
    scale = tl.where(sampling, temperature, 1.0)
    top_k = tl.load(top_k_ptr + p)
    top_p = tl.load(top_p_ptr + p)
    step = tl.load(step_ptr + p)  # int64
    seed = tl.load(seed_ptr + p) + step * 65537  # Philox key per (request seed, step): not the batch row
    out_row = zero64 + p
    if HAS_OUT_ROWS:
        out_row = tl.load(out_rows_ptr + p).to(tl.int64)
    lanes = tl.arange(0, BLOCK_V)

    # top-k: the largest key K with count(key >= K) >= top_k (K = int32 min keeps everything)
    kth = zero64 - 2147483648
    if sampling & (top_k > 0) & (top_k < vocab):
        hi = zero64 + 2147483647
        for _ in range(32):
            mid = (kth + hi + 1) >> 1
            count = zero64
            for c0 in range(0, vocab, BLOCK_V):
                idx = c0 + lanes
                x = _guided_chunk(logits_ptr, stride_logits, p, idx, idx < vocab, weight, CFG) / scale
                count += tl.sum((_order_key(x).to(tl.int64) >= mid).to(tl.int64), axis=0)
            enough = count >= top_k
            kth = tl.where(enough, mid, kth)
            hi = tl.where(enough, hi, mid - 1)

    # top-p: the largest key K whose kept mass at or below K is <= (1 - top_p); those keys are dropped
    dropped_to = zero64 - 2147483649
    if sampling & (top_p < 1.0):
        row_max = float("-inf")
        for c0 in range(0, vocab, BLOCK_V):
            idx = c0 + lanes
            x = _guided_chunk(logits_ptr, stride_logits, p, idx, idx < vocab, weight, CFG) / scale
            x = tl.where(_order_key(x).to(tl.int64) >= kth, x, float("-inf"))
            row_max = tl.maximum(row_max, tl.max(x, axis=0))
        total = 0.0
        for c0 in range(0, vocab, BLOCK_V):
            idx = c0 + lanes
            x = _guided_chunk(logits_ptr, stride_logits, p, idx, idx < vocab, weight, CFG) / scale
            x = tl.where(_order_key(x).to(tl.int64) >= kth, x, float("-inf"))
            total += tl.sum(tl.exp(x - row_max), axis=0)
        budget = (1.0 - top_p) * total
        hi = zero64 + 2147483647
        for _ in range(33):
            mid = (dropped_to + hi + 1) >> 1
            mass = 0.0
            for c0 in range(0, vocab, BLOCK_V):
                idx = c0 + lanes
                x = _guided_chunk(logits_ptr, stride_logits, p, idx, idx < vocab, weight, CFG) / scale
                key = _order_key(x).to(tl.int64)
                mass += tl.sum(tl.where((key >= kth) & (key <= mid), tl.exp(x - row_max), 0.0), axis=0)
            fits = mass <= budget
            dropped_to = tl.where(fits, mid, dropped_to)
            hi = tl.where(fits, hi, mid - 1)

    # the draw: argmax of x + Gumbel noise over the kept tokens (plain argmax at temperature 0)
    best = float("-inf")
    best_idx = zero64 + vocab
    for c0 in range(0, vocab, BLOCK_V):
        idx = c0 + lanes
        in_vocab = idx < vocab
        x = _guided_chunk(logits_ptr, stride_logits, p, idx, in_vocab, weight, CFG) / scale
        key = _order_key(x).to(tl.int64)
        uniform = tl.rand(seed, idx)
        gumbel = -tl.log(-tl.log(uniform))
        score = tl.where(sampling, x + gumbel, x)
        score = tl.where(in_vocab & (key >= kth) & (key > dropped_to), score, float("-inf"))
        chunk_best = tl.max(score, axis=0)
        chunk_idx = tl.min(tl.where(score == chunk_best, idx, vocab), axis=0).to(tl.int64)
        better = chunk_best > best
        best_idx = tl.where(better, chunk_idx, best_idx)
        best = tl.where(better, chunk_best, best)
    token = tl.minimum(best_idx, vocab - 1)  # a row that is all -inf (never for finite logits) picks the last id
    tl.store(tokens_ptr + out_row * stride_tokens + step, token)

    if GATHER:
        for e0 in range(0, embed_dim, BLOCK_E):
            cols = e0 + tl.arange(0, BLOCK_E)
            row = tl.load(table_ptr + token * stride_table + cols, mask=cols < embed_dim)
            if CFG:  # the same row for the conditional and the unconditional input
                tl.store(embeds_ptr + (2 * p) * stride_embeds + cols, row, mask=cols < embed_dim)
                tl.store(embeds_ptr + (2 * p + 1) * stride_embeds + cols, row, mask=cols < embed_dim)
            else:
                tl.store(embeds_ptr + p * stride_embeds + cols, row, mask=cols < embed_dim)


def cfg_sample(
    *,
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    seed: torch.Tensor,
    step: torch.Tensor,
    tokens_out: torch.Tensor,
    out_rows: torch.Tensor | None = None,
    cfg_weight: torch.Tensor | None = None,
    embed_table: torch.Tensor | None = None,
    embeds_out: torch.Tensor | None = None,
    block_v: int | None = None,
) -> None:
    """Sample one token per output row p into `tokens_out[out_rows[p], step[p]]` (and gather its embedding).

    logits `[2P, V]` interleaved cond/uncond with `cfg_weight` `[P]` fp32, or `[P, V]` with cfg_weight None;
    temperature `[P]` fp32; top_k `[P]` int32 (0 = off); top_p `[P]` fp32 (1 = off); seed and step int64 `[P]`;
    out_rows int32 `[P]` or None (None: row p); tokens_out `[R_out, N]` int64 (R_out >= P without out_rows);
    embed_table `[rows, E]` and embeds_out `[2P or P, E]` (both or neither). See the module doc.
    out_rows and step are checked against tokens_out only for CPU tensors (no device sync).
    """
    rows, vocab = logits.shape
    num_out = rows // 2 if cfg_weight is not None else rows
    if cfg_weight is not None and (rows % 2 or cfg_weight.shape != (num_out,)):
        raise ValueError(f"CFG logits must have an even number of rows and cfg_weight [{rows // 2}], got "
                         f"{list(logits.shape)} and {None if cfg_weight is None else list(cfg_weight.shape)}")
    for name, t, dtype in (("temperature", temperature, torch.float32), ("top_k", top_k, torch.int32),
                           ("top_p", top_p, torch.float32), ("seed", seed, torch.int64), ("step", step, torch.int64)):
        if t.shape != (num_out,) or t.dtype != dtype:
            raise ValueError(f"{name} must be a {dtype} tensor [{num_out}], got {t.dtype} {list(t.shape)}")
    if out_rows is not None and (out_rows.shape != (num_out,) or out_rows.dtype != torch.int32):
        raise ValueError(f"out_rows must be an int32 tensor [{num_out}] or None")
    if tokens_out.dim() != 2 or tokens_out.dtype != torch.int64 or (out_rows is None and tokens_out.shape[0] < num_out):
        raise ValueError(f"tokens_out must be int64 [>= {num_out}, N], got {tokens_out.dtype} {list(tokens_out.shape)}")
    if logits.stride(1) != 1 or tokens_out.stride(1) != 1:
        raise ValueError("logits and tokens_out must be contiguous in their last dimension")
    if num_out and step.device.type == "cpu":
        if not (0 <= int(step.min()) and int(step.max()) < tokens_out.shape[1]):
            raise ValueError(f"step must lie in [0, {tokens_out.shape[1]})")
        if out_rows is not None and not (0 <= int(out_rows.min()) and int(out_rows.max()) < tokens_out.shape[0]):
            raise ValueError(f"out_rows must lie in [0, {tokens_out.shape[0]})")
    gather = embed_table is not None
    if gather != (embeds_out is not None):
        raise ValueError("embed_table and embeds_out go together")
    if gather and (embeds_out.shape != (rows, embed_table.shape[1]) or embed_table.stride(1) != 1
                   or embeds_out.stride(1) != 1 or embeds_out.dtype != embed_table.dtype):
        raise ValueError(f"embeds_out must be [{rows}, {embed_table.shape[1]}] in the table's dtype, contiguous rows")
    if num_out == 0:
        return
    embed_dim = embed_table.shape[1] if gather else 1
    if block_v is None:  # the interpreter prefers one large chunk; a GPU program streams 2048 at a time
        block_v = 16384 if interpreting() else 2048
    _cfg_sample_kernel[(num_out,)](
        logits, logits.stride(0), cfg_weight if cfg_weight is not None else temperature, temperature, top_k, top_p,
        seed, step, out_rows if out_rows is not None else top_k, tokens_out, tokens_out.stride(0),
        embed_table if gather else tokens_out, embed_table.stride(0) if gather else 0,
        embeds_out if gather else tokens_out, embeds_out.stride(0) if gather else 0,
        vocab, embed_dim,
        CFG=cfg_weight is not None, GATHER=gather, HAS_OUT_ROWS=out_rows is not None,
        BLOCK_V=min(block_v, triton.next_power_of_2(vocab)),
        BLOCK_E=min(1024, triton.next_power_of_2(embed_dim)), num_warps=8,
    )


def cfg_sample_ref(logits: torch.Tensor, cfg_weight: torch.Tensor | None, temperature: torch.Tensor,
                   top_k: torch.Tensor, top_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(greedy tokens `[P]`, kept-token probabilities `[P, V]` fp64) of the same rule, in plain torch.

    The kernel's draw is random; the reference gives the distribution it must sample from (and the argmax
    for temperature-0 rows), built with the torch backend's own filters.
    """
    x = logits.float()
    if cfg_weight is not None:
        cond, uncond = x[0::2], x[1::2]
        x = uncond + cfg_weight[:, None] * (cond - uncond)
    greedy = torch.argmax(x, dim=-1)
    probs = []
    for row, t, k, pp in zip(x, temperature.tolist(), top_k.tolist(), top_p.tolist()):
        scaled = (row / (t if t > 0 else 1.0))[None]
        scaled = filter_top_p(filter_top_k(scaled, k or None), pp if pp < 1 else None)
        probs.append(torch.softmax(scaled.double(), dim=-1)[0])
    return greedy, torch.stack(probs)
