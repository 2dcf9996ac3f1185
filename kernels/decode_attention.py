"""KV-cache attention for decode and short verification chunks (split-K flash-decoding), with a torch reference.

Shapes (one layer):
    q          [B, Hq, T, D]           T new tokens per row, 1 <= T <= 16, already RoPE-rotated
    keys       [R_pool, Hkv, S_max, D] static cache pool (R_pool >= B); the T new keys of batch row b are
                                       already written at slots [len - T, len) of its cache row
    values     [R_pool, Hkv, S_max, D]
    lengths    [B] int32               valid cache slots per row, new tokens included (a device tensor: graph safe)
    key_start  [B] int32 or None       first non-padding slot per row (left-padded batches)
    cache_rows [B] int32 or None       pool row read by batch row b (None: row b)
    out        [B, Hq, T, D]

Query t of row b (at slot lengths[b] - T + t) sees keys j with key_start[b] <= j <= lengths[b] - T + t of
cache row cache_rows[b]: causal among the new tokens, everything before them. Hq = G * Hkv (GQA; G = 1 is
MHA). Each program takes one (row, kv head) pair and one split of the sequence: its G*T queries form the
rows of one tile, so each key block is read once for the whole group. A second kernel merges the splits by
their log-sum-exp; with `merge_counters` (int32, >= B*Hkv elements, zero on entry and left zero) there is no
second launch: each split program counts its arrival with an atomic on its (row, kv head)'s counter, and the
last to arrive merges all the splits, with the same code in the same order (bitwise the same output), and
resets the counter. The grid depends only on B and S_max, never on the lengths, so a launch captures into a
CUDA graph and replays for any lengths. Accumulation is fp32; fp16/bf16 inputs use the tensor cores; fp32
inputs use IEEE dots. The Triton interpreter mis-computes bf16 dots, so there the bf16 tiles are upcast
first: bf16 x bf16 products are exact in fp32, so this is the same arithmetic the tensor cores do.

Batch invariance: split s always covers slots [s * split_keys, (s + 1) * split_keys), a fixed size
(SPLIT_KEYS), never a count chosen from the batch or the device; the tiles inside a split and the merge
order are fixed too. Splits past a row's length are empty and merge as exact zeros (weight exp(-inf) = 0),
so a row's output is bitwise the same whatever B, its batch position, its companions, S_max or its pool row.

Versions: v1 split-K with GQA-packed query tiles; v2 stores only the real query rows of each tile's partials
(16x less partial traffic for MHA decode; measured on an H100, Janus-1.3B, 1 image: merge 4.9 -> 3.7 us per
layer, split 6.5 -> 6.4 us: the merge is latency-bound, not traffic-bound); v3 a fixed number of
keys per split instead of a split count chosen per batch (batch invariant), and cache_rows into a KV pool
(not yet timed on a GPU); v4 the merge folded into the split kernel (last program to arrive merges; optional,
`merge_counters`), not yet timed on a GPU. v3's two launches stay the default.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from janus_rt.kernels.interpret import interpreting


@triton.jit(do_not_specialize=["num_splits"])  # one compiled kernel for every S_max
def _split_kernel(
    q_ptr, k_ptr, v_ptr, lengths_ptr, key_start_ptr, cache_rows_ptr, part_acc_ptr, part_max_ptr, part_sum_ptr,
    out_ptr, counters_ptr,
    stride_qb, stride_qh, stride_qt,
    stride_kb, stride_kh, stride_ks,
    stride_vb, stride_vh, stride_vs,
    stride_ob, stride_oh, stride_ot,
    num_kv_heads, num_splits, split_keys, scale,
    GROUP: tl.constexpr, NEW_TOKENS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_KEY_START: tl.constexpr, HAS_CACHE_ROWS: tl.constexpr,
    IEEE: tl.constexpr, DOT_FP32: tl.constexpr, FUSED_MERGE: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    split = tl.program_id(1)
    b = pid_bh // num_kv_heads
    kv_head = pid_bh % num_kv_heads
    length = tl.load(lengths_ptr + b)
    first = 0
    if HAS_KEY_START:
        first = tl.load(key_start_ptr + b)
    cache_row = b.to(tl.int64)  # int64: a pool row times its stride may pass 2^31 elements
    if HAS_CACHE_ROWS:
        cache_row = tl.load(cache_rows_ptr + b).to(tl.int64)
    start = tl.maximum(split * split_keys, first)  # split s: slots [s * split_keys, (s + 1) * split_keys), fixed
    end = tl.minimum(split * split_keys + split_keys, length)

    rows = tl.arange(0, BLOCK_M)  # tile row r = query head (r // T) of the group, new token (r % T)
    head = kv_head * GROUP + rows // NEW_TOKENS
    tok = rows % NEW_TOKENS
    row_ok = rows < GROUP * NEW_TOKENS
    dims = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + b * stride_qb + head[:, None] * stride_qh + tok[:, None] * stride_qt + dims[None, :],
                mask=row_ok[:, None], other=0.0)  # [BLOCK_M, D]
    if DOT_FP32:
        q = q.to(tl.float32)
    last_key = length - NEW_TOKENS + tok  # [BLOCK_M] causal limit of each query

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    k_base = k_ptr + cache_row * stride_kb + kv_head * stride_kh
    v_base = v_ptr + cache_row * stride_vb + kv_head * stride_vh
    for n0 in range(start, end, BLOCK_N):
        keys_idx = n0 + tl.arange(0, BLOCK_N)
        key_ok = keys_idx < end
        k = tl.load(k_base + keys_idx[:, None] * stride_ks + dims[None, :], mask=key_ok[:, None], other=0.0)
        if DOT_FP32:
            k = k.to(tl.float32)
        if IEEE:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        s = s * scale  # [BLOCK_M, BLOCK_N] fp32
        visible = key_ok[None, :] & (keys_idx[None, :] <= last_key[:, None])
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet stay at 0
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_base + keys_idx[:, None] * stride_vs + dims[None, :], mask=key_ok[:, None], other=0.0)
        p = p.to(v_ptr.dtype.element_ty)  # probabilities rounded to the cache dtype, as the tensor cores take them
        if DOT_FP32:
            p = p.to(tl.float32)
            v = v.to(tl.float32)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p, v)
        m_i = m_new

    # partials laid out [B*Hkv, splits, G*T(, D)]: only the real query rows of the tile are stored
    part = (pid_bh * num_splits + split) * (GROUP * NEW_TOKENS)
    tl.store(part_max_ptr + part + rows, m_i, mask=row_ok)
    tl.store(part_sum_ptr + part + rows, l_i, mask=row_ok)
    tl.store(part_acc_ptr + (part + rows[:, None]) * HEAD_DIM + dims[None, :], acc, mask=row_ok[:, None])

    if FUSED_MERGE:  # the last of this (row, kv head)'s num_splits programs to arrive merges them all
        # Memory ordering. Arriving: the barrier orders every thread's partial stores above before the atomic
        # (issued once per program), whose release half, at gpu scope, publishes them with the count. Last one:
        # the atomic's acquire half sees every earlier program's release (the counter's modification order),
        # and the barrier after it extends that to all threads of this program before they load; the loads
        # skip L1 (.cg: L1 is not coherent across SMs), reading the partials from L2.
        tl.debug_barrier()
        arrived = tl.atomic_add(counters_ptr + pid_bh, 1, sem="acq_rel", scope="gpu")
        if arrived == num_splits - 1:
            tl.debug_barrier()
            _merge_splits(part_acc_ptr, part_max_ptr, part_sum_ptr, out_ptr, stride_ob, stride_oh, stride_ot,
                          pid_bh, num_kv_heads, num_splits, GROUP, NEW_TOKENS, HEAD_DIM, BLOCK_M, ".cg")
            tl.store(counters_ptr + pid_bh, 0)  # every split has arrived: nobody else touches it this launch


@triton.jit
def _merge_splits(
    part_acc_ptr, part_max_ptr, part_sum_ptr, out_ptr,
    stride_ob, stride_oh, stride_ot,
    pid_bh, num_kv_heads, num_splits,
    GROUP: tl.constexpr, NEW_TOKENS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
    LOAD_CACHE: tl.constexpr,
):
    """Merge the num_splits partials of (row, kv head) pid_bh in split order 0.. by their log-sum-exp and store
    the output: the one merge arithmetic of both paths (bitwise the same output). LOAD_CACHE: the partials'
    load cache modifier ("" or ".cg")."""
    b = pid_bh // num_kv_heads
    kv_head = pid_bh % num_kv_heads
    rows = tl.arange(0, BLOCK_M)
    row_ok = rows < GROUP * NEW_TOKENS
    dims = tl.arange(0, HEAD_DIM)
    m_all = tl.full([BLOCK_M], float("-inf"), tl.float32)
    for split in range(0, num_splits):
        part = (pid_bh * num_splits + split) * (GROUP * NEW_TOKENS)
        m_all = tl.maximum(m_all, tl.load(part_max_ptr + part + rows, mask=row_ok, other=float("-inf"),
                                          cache_modifier=LOAD_CACHE))
    m_safe = tl.where(m_all == float("-inf"), 0.0, m_all)
    total = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    for split in range(0, num_splits):
        part = (pid_bh * num_splits + split) * (GROUP * NEW_TOKENS)
        m_split = tl.load(part_max_ptr + part + rows, mask=row_ok, other=float("-inf"), cache_modifier=LOAD_CACHE)
        weight = tl.exp(m_split - m_safe)  # 0: an empty split
        total += weight * tl.load(part_sum_ptr + part + rows, mask=row_ok, other=0.0, cache_modifier=LOAD_CACHE)
        acc += weight[:, None] * tl.load(part_acc_ptr + (part + rows[:, None]) * HEAD_DIM + dims[None, :],
                                         mask=row_ok[:, None], other=0.0, cache_modifier=LOAD_CACHE)
    out = acc / tl.where(total == 0.0, 1.0, total)[:, None]
    head = kv_head * GROUP + rows // NEW_TOKENS
    tok = rows % NEW_TOKENS
    tl.store(out_ptr + b * stride_ob + head[:, None] * stride_oh + tok[:, None] * stride_ot + dims[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


@triton.jit(do_not_specialize=["num_splits"])
def _merge_kernel(
    part_acc_ptr, part_max_ptr, part_sum_ptr, out_ptr,
    stride_ob, stride_oh, stride_ot,
    num_kv_heads, num_splits,
    GROUP: tl.constexpr, NEW_TOKENS: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
):
    _merge_splits(part_acc_ptr, part_max_ptr, part_sum_ptr, out_ptr, stride_ob, stride_oh, stride_ot,
                  tl.program_id(0), num_kv_heads, num_splits, GROUP, NEW_TOKENS, HEAD_DIM, BLOCK_M, "")


MAX_NEW_TOKENS = 16
BLOCK_N = 64  # keys per tile on a GPU; the interpreter takes 256 when the split allows (fewer, larger numpy steps)
SPLIT_KEYS = 256  # keys per split (a multiple of BLOCK_N): fixed, so a row's reduction order never depends on the batch


def decode_attention(
    *,
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    lengths: torch.Tensor,
    key_start: torch.Tensor | None = None,
    cache_rows: torch.Tensor | None = None,
    scale: float | None = None,
    split_keys: int | None = None,
    out: torch.Tensor | None = None,
    merge_counters: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of `T` new queries per row over a static KV cache pool; see the module docstring for shapes.

    The sequence is cut into `cdiv(S_max, split_keys)` splits of `split_keys` keys (default SPLIT_KEYS, a
    multiple of BLOCK_N). The grid depends on no device value, so a graph capture stays valid for any lengths
    and cache_rows. cache_rows must index rows of the pool (checked only for CPU tensors: no device sync).

    merge_counters: None launches a second kernel that merges the splits. Given, the split kernel merges them
    itself (the last program of each (row, kv head) to arrive; bitwise the same output, one launch): a
    contiguous int32 tensor on q's device with >= B * Hkv elements, all ZERO on entry (not checked: that would
    need a device sync). The call leaves them zero again, so one tensor serves every later call and every CUDA
    graph replay without a memset; calls sharing a tensor must not run concurrently (other streams).
    """
    batch, heads, new_tokens, head_dim = q.shape
    pool_rows, kv_heads, max_len, kd = keys.shape
    if values.shape != keys.shape or kd != head_dim:
        raise ValueError(f"cache shapes {list(keys.shape)} / {list(values.shape)} do not match q {list(q.shape)}")
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads are not a multiple of {kv_heads} kv heads")
    if not 1 <= new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"{new_tokens} new tokens per row; this kernel takes 1..{MAX_NEW_TOKENS}")
    if head_dim not in (64, 128) and (head_dim < 16 or head_dim & (head_dim - 1)):
        raise ValueError(f"head_dim {head_dim} must be a power of two >= 16 (Janus uses 64 / 128)")
    for name, t in (("q", q), ("keys", keys), ("values", values)):
        if t.stride(-1) != 1:
            raise ValueError(f"{name} must be contiguous in its last dimension")
    if lengths.shape != (batch,) or lengths.dtype != torch.int32:
        raise ValueError(f"lengths must be an int32 tensor [{batch}], got {lengths.dtype} {list(lengths.shape)}")
    if key_start is not None and (key_start.shape != (batch,) or key_start.dtype != torch.int32):
        raise ValueError(f"key_start must be an int32 tensor [{batch}] or None")
    if cache_rows is None:
        if pool_rows < batch:
            raise ValueError(f"without cache_rows the cache needs >= {batch} rows, got {pool_rows}")
    else:
        if cache_rows.shape != (batch,) or cache_rows.dtype != torch.int32:
            raise ValueError(f"cache_rows must be an int32 tensor [{batch}] or None, got {cache_rows.dtype} "
                             f"{list(cache_rows.shape)}")
        if cache_rows.device.type == "cpu" and batch and not (0 <= int(cache_rows.min()) and
                                                              int(cache_rows.max()) < pool_rows):
            raise ValueError(f"cache_rows must lie in [0, {pool_rows})")
    if merge_counters is not None:
        if merge_counters.dtype != torch.int32 or merge_counters.device != q.device:
            raise ValueError(f"merge_counters must be an int32 tensor on {q.device}, got {merge_counters.dtype} on "
                             f"{merge_counters.device}")
        if merge_counters.numel() < batch * kv_heads:
            raise ValueError(f"merge_counters has {merge_counters.numel()} elements, needs >= B * Hkv = "
                             f"{batch * kv_heads}")
        if not merge_counters.is_contiguous():
            raise ValueError("merge_counters must be contiguous")
    if split_keys is None:  # the interpreter pays per program, not per key: one split of the whole pool there
        split_keys = triton.cdiv(max_len, 256) * 256 if interpreting() else SPLIT_KEYS
    if split_keys <= 0 or split_keys % BLOCK_N:
        raise ValueError(f"split_keys {split_keys} must be a positive multiple of {BLOCK_N}")
    group = heads // kv_heads
    block_m = max(16, triton.next_power_of_2(group * new_tokens))
    block_n = 256 if interpreting() and split_keys % 256 == 0 else BLOCK_N
    num_splits = triton.cdiv(max_len, split_keys)
    part_acc = torch.empty(batch * kv_heads, num_splits, group * new_tokens, head_dim, device=q.device,
                           dtype=torch.float32)
    part_max = torch.empty(batch * kv_heads, num_splits, group * new_tokens, device=q.device, dtype=torch.float32)
    part_sum = torch.empty_like(part_max)
    if out is None:
        out = torch.empty_like(q)
    if batch == 0:
        return out
    _split_kernel[(batch * kv_heads, num_splits)](
        q, keys, values, lengths, lengths if key_start is None else key_start,
        lengths if cache_rows is None else cache_rows, part_acc, part_max, part_sum,
        out, lengths if merge_counters is None else merge_counters,
        q.stride(0), q.stride(1), q.stride(2),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        kv_heads, num_splits, split_keys, scale if scale is not None else 1.0 / math.sqrt(head_dim),
        GROUP=group, NEW_TOKENS=new_tokens, HEAD_DIM=head_dim, BLOCK_M=block_m, BLOCK_N=block_n,
        HAS_KEY_START=key_start is not None, HAS_CACHE_ROWS=cache_rows is not None, IEEE=q.dtype == torch.float32,
        DOT_FP32=interpreting() and q.dtype == torch.bfloat16, FUSED_MERGE=merge_counters is not None,
        num_warps=4, num_stages=2,
    )
    if merge_counters is not None:
        return out
    _merge_kernel[(batch * kv_heads,)](
        part_acc, part_max, part_sum, out,
        out.stride(0), out.stride(1), out.stride(2),
        kv_heads, num_splits,
        GROUP=group, NEW_TOKENS=new_tokens, HEAD_DIM=head_dim, BLOCK_M=block_m,
        num_warps=4,
    )
    return out


def decode_attention_ref(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, lengths: torch.Tensor,
    key_start: torch.Tensor | None = None, scale: float | None = None, cache_rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """The same function in plain torch, computed in the dtype of its inputs (upcast them for a reference)."""
    batch, heads, new_tokens, head_dim = q.shape
    kv_heads, max_len = keys.shape[1], keys.shape[2]
    group = heads // kv_heads
    rows = cache_rows.long() if cache_rows is not None else torch.arange(batch, device=keys.device)  # [B]
    k = keys[rows].repeat_interleave(group, dim=1)  # [B, Hq, S_max, D]
    v = values[rows].repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else 1.0 / math.sqrt(head_dim))  # [B, Hq, T, S]
    slot = torch.arange(max_len, device=q.device)
    last = lengths.long()[:, None] - new_tokens + torch.arange(new_tokens, device=q.device)[None, :]  # [B, T]
    visible = slot[None, None, :] <= last[:, :, None]  # [B, T, S]
    if key_start is not None:
        visible &= slot[None, None, :] >= key_start.long()[:, None, None]
    scores = scores.masked_fill(~visible[:, None], float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
