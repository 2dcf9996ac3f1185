"""Fused CFG sampling kernel against its torch reference, on fresh random inputs (Triton interpreter on CPU).

Greedy rows must equal torch's argmax exactly; sampled rows must stay inside the reference's kept set
(temperature, top-k, top-p as the torch backend applies them) and follow its probabilities (a chi-square
test at a fixed seed); seeds must reproduce; the token must land at the step column only, and the gathered
embedding rows must be the table's rows.
"""

from __future__ import annotations

import math

import pytest
import torch

from kernel_utils import DEVICE  # noqa: E402  (sets TRITON_INTERPRET first)

from janus_rt.kernels.cfg_sample import cfg_sample, cfg_sample_ref


def launch(logits, cfg_weight, temperature, top_k, top_p, seed=0, step=0, steps=4, table=None, block_v=2048):
    rows = logits.shape[0] // 2 if cfg_weight is not None else logits.shape[0]
    tokens = torch.full((rows, steps), -7, dtype=torch.long, device=DEVICE)  # poison
    embeds = None
    if table is not None:
        embeds = torch.full((logits.shape[0], table.shape[1]), float("nan"), dtype=table.dtype, device=DEVICE)
    cfg_sample(logits=logits, cfg_weight=cfg_weight, temperature=temperature, top_k=top_k, top_p=top_p,
               seed=torch.tensor([seed], device=DEVICE), step=torch.tensor([step], device=DEVICE), tokens_out=tokens,
               embed_table=table, embeds_out=embeds, block_v=block_v)
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


def test_bad_arguments_are_refused() -> None:
    logits = torch.randn(4, 10, device=DEVICE)
    t, k, p = per_row(2, 1.0, 0, 1.0)
    with pytest.raises(ValueError, match="top_k must be"):
        launch(logits, torch.ones(2, device=DEVICE), t, k.long(), p)
    with pytest.raises(ValueError, match="cfg_weight"):
        launch(logits, torch.ones(3, device=DEVICE), t, k, p)
