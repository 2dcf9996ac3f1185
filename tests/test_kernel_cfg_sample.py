"""Fused CFG sampling kernel against its torch reference, on fresh random inputs (Triton interpreter on CPU).

Greedy rows must equal torch's argmax exactly; sampled rows must stay inside the reference's kept set
(temperature, top-k, top-p as the torch backend applies them) and follow its probabilities (a chi-square
test at a fixed seed); seeds must reproduce; the token of row p must land at tokens_out[out_rows[p], step[p]]
only, and the gathered embedding rows must be the table's rows. Batch invariance: a seeded row draws the
same token alone and inside any batch (other P, position, companions, out_rows, other rows' steps).
"""

from __future__ import annotations

import math

import pytest
import torch

from kernel_utils import DEVICE  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.cfg_sample import cfg_sample, cfg_sample_ref

pytestmark = pytest.mark.interpreter


def launch(logits, cfg_weight, temperature, top_k, top_p, seed=0, step=0, steps=4, table=None, block_v=2048):
    """Every row at the same step; row p seeded `seed + p` (the v1 stream: seed + step * 65537 + p)."""
    rows = logits.shape[0] // 2 if cfg_weight is not None else logits.shape[0]
    tokens = torch.full((rows, steps), -7, dtype=torch.long, device=DEVICE)  # poison
    embeds = None
    if table is not None:
        embeds = torch.full((logits.shape[0], table.shape[1]), float("nan"), dtype=table.dtype, device=DEVICE)
    cfg_sample(logits=logits, cfg_weight=cfg_weight, temperature=temperature, top_k=top_k, top_p=top_p,
               seed=seed + torch.arange(rows, device=DEVICE), step=torch.full((rows,), step, device=DEVICE),
               tokens_out=tokens, embed_table=table, embeds_out=embeds, block_v=block_v)
    return tokens, embeds


def per_row(rows: int, temperature: float, top_k: int, top_p: float):
    return (torch.full((rows,), temperature, device=DEVICE), torch.full((rows,), top_k, dtype=torch.int32, device=DEVICE),
            torch.full((rows,), top_p, device=DEVICE))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("vocab, block_v", [(1, 2048), (37, 16), (300, 64), (16384, 2048)])
@pytest.mark.parametrize("cfg", [True, False], ids=["cfg", "nocfg"])
def test_greedy_is_torch_argmax(dtype: torch.dtype, vocab: int, block_v: int, cfg: bool) -> None:
    gen = torch.Generator().manual_seed(vocab * 7 + block_v)
    rows = 3
    # integer-valued logits make ties common: the first maximum must win, as in torch.argmax
    logits = torch.randint(-4, 5, (2 * rows if cfg else rows, vocab), generator=gen).to(DEVICE, dtype)
    weight = (torch.rand(rows, generator=gen) * 6).to(DEVICE) if cfg else None
    temperature, top_k, top_p = per_row(rows, 0.0, 5, 0.5)  # filters are irrelevant at temperature 0
    tokens, _ = launch(logits, weight, temperature, top_k, top_p, step=2, block_v=block_v)
    expected, _ = cfg_sample_ref(logits, weight, temperature, top_k, top_p)
    assert torch.equal(tokens[:, 2], expected)
    assert (tokens[:, [0, 1, 3]] == -7).all(), "only the step column may be written"


@pytest.mark.parametrize("top_k, top_p, temperature, cfg, rows", [
    (0, 1.0, 1.0, True, 256), (0, 1.0, 0.7, False, 256), (7, 1.0, 0.8, False, 32), (0, 0.6, 1.3, True, 32),
    (25, 0.9, 1.0, True, 32),
])
@pytest.mark.slow
def test_draws_follow_the_reference_distribution(top_k: int, top_p: float, temperature: float, cfg: bool,
                                                 rows: int) -> None:
    """`rows` rows of the same logits are independent draws, 4 steps of them. Chi-square against the reference.

    Filtered rows run 32 bisection passes each in the interpreter, hence fewer rows there.
    """
    gen = torch.Generator().manual_seed(1000 + top_k)
    vocab = 61
    base = torch.randn(2 if cfg else 1, vocab, generator=gen) * 1.5
    logits = base.repeat(rows, 1).to(DEVICE)  # [2*rows or rows, V]
    weight = torch.full((rows,), 1.5, device=DEVICE) if cfg else None
    t, k, p = per_row(rows, temperature, top_k, top_p)
    _, probs = cfg_sample_ref(logits[: 2 if cfg else 1], weight[:1] if cfg else None, t[:1], k[:1], p[:1])
    probs = probs[0].cpu()
    draws = torch.cat([launch(logits, weight, t, k, p, seed=5, step=s, block_v=64)[0][:, s] for s in range(4)]).cpu()
    kept = probs > 0
    assert kept[draws].all(), "a draw fell outside the reference's kept set (top-k / top-p)"
    counts = torch.bincount(draws, minlength=vocab).double()
    expected = probs * draws.numel()
    big = expected >= 5  # chi-square cells with enough mass; the rest pooled
    stat = (((counts[big] - expected[big]) ** 2) / expected[big]).sum()
    rest_c, rest_e = counts[~big & kept].sum(), expected[~big & kept].sum()
    if rest_e > 0:
        stat += (rest_c - rest_e) ** 2 / rest_e
    dof = int(big.sum()) + int(rest_e > 0) - 1
    # threshold at p ~ 1e-4 (Wilson-Hilferty approximation of the chi-square quantile)
    z = 3.72
    bound = dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3 if dof > 0 else 0.0
    assert stat.item() <= bound, f"chi-square {stat.item():.1f} > {bound:.1f} with {dof} dof"


def test_top_k_one_and_tiny_top_p_are_argmax() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(8, 500, generator=gen).to(DEVICE)
    weight = torch.full((4,), 3.0, device=DEVICE)
    greedy, _ = cfg_sample_ref(logits, weight, *per_row(4, 0.0, 0, 1.0))
    for k, p in ((1, 1.0), (0, 1e-6)):
        for seed in range(3):
            tokens, _ = launch(logits, weight, *per_row(4, 1.0, k, p), seed=seed, block_v=128)
            assert torch.equal(tokens[:, 0], greedy)


def test_seed_reproduces_and_changes_the_draw() -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(64, 1000, generator=gen).to(DEVICE)
    weight = torch.full((32,), 5.0, device=DEVICE)
    args = per_row(32, 1.0, 0, 1.0)
    a = launch(logits, weight, *args, seed=123, step=1)[0]
    b = launch(logits, weight, *args, seed=123, step=1)[0]
    c = launch(logits, weight, *args, seed=124, step=1)[0]
    d = launch(logits, weight, *args, seed=123, step=2)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a[:, 1], c[:, 1]) and not torch.equal(a[:, 1], d[:, 2])


@pytest.mark.parametrize("cfg, dtype", [(True, torch.bfloat16), (False, torch.float32)], ids=["cfg-bf16", "text-fp32"])
def test_next_embedding_rows_are_gathered(cfg: bool, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(9)
    rows, vocab, dim = 3, 200, 40
    logits = torch.randn(2 * rows if cfg else rows, vocab, generator=gen).to(DEVICE)
    table = torch.randn(vocab, dim, generator=gen).to(DEVICE, dtype)
    weight = torch.full((rows,), 2.0, device=DEVICE) if cfg else None
    tokens, embeds = launch(logits, weight, *per_row(rows, 1.0, 0, 1.0), seed=1, table=table)
    expected = table[tokens[:, 0]]
    if cfg:
        expected = expected.repeat_interleave(2, dim=0)  # [2P, E]: the same row for cond and uncond
    assert torch.equal(embeds, expected)


def test_tokens_land_at_out_rows_and_step() -> None:
    """Row p writes tokens_out[out_rows[p], step[p]] (tokens_out has more rows than P) and nothing else."""
    gen = torch.Generator().manual_seed(12)
    rows, vocab, steps = 5, 90, 6
    logits = torch.randn(2 * rows, vocab, generator=gen).to(DEVICE)
    weight = (torch.rand(rows, generator=gen) * 4).to(DEVICE)
    temperature, top_k, top_p = per_row(rows, 0.0, 0, 1.0)
    greedy, _ = cfg_sample_ref(logits, weight, temperature, top_k, top_p)
    out_rows = torch.randperm(rows + 3, generator=gen)[:rows].int().to(DEVICE)
    step = torch.randint(0, steps, (rows,), generator=gen).to(DEVICE)
    tokens = torch.full((rows + 3, steps), -7, dtype=torch.long, device=DEVICE)
    cfg_sample(logits=logits, cfg_weight=weight, temperature=temperature, top_k=top_k, top_p=top_p,
               seed=torch.arange(rows, device=DEVICE), step=step, out_rows=out_rows, tokens_out=tokens)
    expected = torch.full_like(tokens, -7)
    expected[out_rows.long(), step] = greedy
    assert torch.equal(tokens, expected)


@pytest.mark.parametrize("cfg", [True, False], ids=["cfg", "nocfg"])
def test_rows_are_batch_invariant(cfg: bool) -> None:
    """Probe rows (temperature > 0; one plain, one top-k, one top-p) sampled alone (P = 1, out row 0) and inside
    batches of 4 and 7 rows at random positions, with random companions, a permuted out_rows into a larger
    tokens_out and random steps for the companions: every probe draws the same token at each of its steps."""
    gen = torch.Generator().manual_seed(40 + cfg)
    vocab, steps = 300, 3
    probes = []  # (logits rows, weight, temperature, top_k, top_p, seed)
    for i, (k, p) in enumerate(((0, 1.0), (20, 1.0), (0, 0.8))):
        probes.append((torch.randn(2 if cfg else 1, vocab, generator=gen) * 2, 1.0 + i, 1.0 + 0.2 * i, k, p,
                       1000 * i + 17))

    def sample(parts: list[tuple], out_rows: torch.Tensor, step: torch.Tensor, out_len: int) -> torch.Tensor:
        logits = torch.cat([q[0] for q in parts]).to(DEVICE)
        weight = torch.tensor([q[1] for q in parts], device=DEVICE) if cfg else None
        tokens = torch.full((out_len, steps), -7, dtype=torch.long, device=DEVICE)
        cfg_sample(logits=logits, cfg_weight=weight, temperature=torch.tensor([q[2] for q in parts], device=DEVICE),
                   top_k=torch.tensor([q[3] for q in parts], dtype=torch.int32, device=DEVICE),
                   top_p=torch.tensor([q[4] for q in parts], device=DEVICE),
                   seed=torch.tensor([q[5] for q in parts], device=DEVICE), step=step.to(DEVICE),
                   out_rows=out_rows.int().to(DEVICE), tokens_out=tokens)
        return tokens

    alone = {}  # (probe, step) -> token
    for i, probe in enumerate(probes):
        for s in range(steps):
            alone[i, s] = int(sample([probe], torch.tensor([0]), torch.tensor([s]), 1)[0, s])
    assert len({alone[i, s] for i in range(3) for s in range(steps)}) > 1, "degenerate probes cannot tell apart"
    for batch in (4, 7):
        for s in range(steps):
            parts = [(torch.randn(2 if cfg else 1, vocab, generator=gen) * 2, 2.0, 1.0, 0, 1.0,
                      int(torch.randint(0, 2**40, (1,), generator=gen))) for _ in range(batch)]
            step = torch.randint(0, steps, (batch,), generator=gen)
            where = torch.randperm(batch, generator=gen)[:3].tolist()
            for i, b in enumerate(where):
                parts[b] = probes[i]
                step[b] = s
            out_rows = torch.randperm(batch + 2, generator=gen)[:batch]
            tokens = sample(parts, out_rows, step, batch + 2)
            for i, b in enumerate(where):
                assert int(tokens[out_rows[b], s]) == alone[i, s], f"probe {i} at row {b} of {batch}, step {s}"


def test_bad_arguments_are_refused() -> None:
    logits = torch.randn(4, 10, device=DEVICE)
    t, k, p = per_row(2, 1.0, 0, 1.0)
    with pytest.raises(ValueError, match="top_k must be"):
        launch(logits, torch.ones(2, device=DEVICE), t, k.long(), p)
    with pytest.raises(ValueError, match="cfg_weight"):
        launch(logits, torch.ones(3, device=DEVICE), t, k, p)
    with pytest.raises(ValueError, match="step must lie"):
        launch(logits, torch.ones(2, device=DEVICE), t, k, p, step=4, steps=4)
    tokens = torch.zeros(2, 4, dtype=torch.long, device=DEVICE)
    common = dict(logits=logits, cfg_weight=torch.ones(2, device=DEVICE), temperature=t, top_k=k, top_p=p,
                  tokens_out=tokens)
    with pytest.raises(ValueError, match="seed must be"):
        cfg_sample(**common, seed=torch.zeros(1, dtype=torch.long, device=DEVICE),
                   step=torch.zeros(2, dtype=torch.long, device=DEVICE))
    with pytest.raises(ValueError, match="out_rows must lie"):
        cfg_sample(**common, seed=torch.zeros(2, dtype=torch.long, device=DEVICE),
                   step=torch.zeros(2, dtype=torch.long, device=DEVICE),
                   out_rows=torch.tensor([0, 2], dtype=torch.int32, device=DEVICE))
