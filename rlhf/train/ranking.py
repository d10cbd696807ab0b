"""Ranked comparisons as shared-prompt rows, what the reward models and DPO train on.

A comparison gives one ranked pair (chosen over rejected), or three with an edited response
(edited over chosen, edited over rejected, chosen over rejected; Llama 3's edited > chosen >
rejected). Its row holds each distinct response once, after the prompt (`encoding.SharedPrompt`),
so a response that ranks in several pairs runs once, and the prompt once for all of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlhf.train.data import Comparison
from rlhf.train.encoding import (
    ChatEncoder,
    Exchange,
    PackedBatch,
    first_fit_decreasing,
    packed_batch,
    share_prompts,
)

# What a stage's --batch-size counts when it trains on ranked rows (reward models, DPO).
COMPARISONS_PER_STEP = (
    "comparisons per optimizer step, each one row holding its 1 ranked pair "
    "(3 with an edited response); the loss is the mean over those pairs"
)


@dataclass(frozen=True)
class RankedPair:
    better: Exchange
    worse: Exchange
    margin: float


@dataclass(frozen=True)
class RankedRow:
    """The distinct responses of some ranked pairs, and the pairs as indices into them."""

    exchanges: tuple[Exchange, ...]
    pairs: tuple[tuple[int, int, float], ...]  # better, worse, margin

    @classmethod
    def of(cls, pairs: Sequence[RankedPair], rng: random.Random | None = None) -> RankedRow:
        """The row of `pairs`, its responses shuffled by `rng` (else in order of appearance)."""
        exchanges: list[Exchange] = []
        for exchange in (e for p in pairs for e in (p.better, p.worse)):
            if exchange not in exchanges:
                exchanges.append(exchange)
        if rng is not None:
            rng.shuffle(exchanges)
        indices = tuple(
            (exchanges.index(p.better), exchanges.index(p.worse), p.margin) for p in pairs
        )
        return cls(tuple(exchanges), indices)


@dataclass
class RankingBatch:
    rows: PackedBatch  # every response of every ranked row, packed (see `ranking_batch`)
    better: torch.Tensor  # [P]: which response of `rows` each pair ranks higher
    worse: torch.Tensor  # [P]
    margins: torch.Tensor  # [P]


def ranked_rows(
    encoder: ChatEncoder,
    rows: Sequence[Comparison],
    margins: dict[str, float],
    max_len: int,
    seed: int,
) -> tuple[list[RankedRow], int]:
    """One row per comparison with its ranked pairs, tokenized, responses in an order seeded by
    `seed`; and how many pairs were left out as too long (an exchange, prompt and one response,
    over `max_len` tokens: what each response sees, so a row may be longer)."""
    rng = random.Random(seed)
    out, skipped = [], 0
    for row in rows:
        ranked = row.ranked_pairs(margins)
        texts = dict.fromkeys(text for better, worse, _ in ranked for text in (better, worse))
        encoded = {text: encoder.exchange(row, text) for text in texts}
        pairs = [RankedPair(encoded[better], encoded[worse], m) for better, worse, m in ranked]
        kept = [p for p in pairs if max(len(p.better.ids), len(p.worse.ids)) <= max_len]
        skipped += len(pairs) - len(kept)
        if kept:
            out.append(RankedRow.of(kept, rng))
    return out, skipped


def ranking_batch(rows: Sequence[RankedRow], pad_id: int, device: torch.device) -> RankingBatch:
    """The rows' responses as packed rows, and their pairs as indices into them.

    Every packed row is as wide as the longest prompt-and-responses group, and shorter groups
    share rows first-fit decreasing, attending only to themselves: the padding left is what
    packing cannot remove, and no row is longer (nor its attention wider) than without it.
    """
    # (comparison, index of its first exchange in the group, group)
    groups = []
    for number, row in enumerate(rows):
        start = 0
        for group in share_prompts(row.exchanges):
            groups.append((number, start, group))
            start += len(group.exchanges)
    width = max(len(group) for _, _, group in groups)
    layout = first_fit_decreasing([len(group) for _, _, group in groups], width)
    packed = [[groups[i] for i in row] for row in layout]
    # Where each comparison's exchanges landed among the batch's, counted row by row.
    position: dict[tuple[int, int], int] = {}
    for number, start, group in (item for row in packed for item in row):
        for offset in range(len(group.exchanges)):
            position[(number, start + offset)] = len(position)
    batch = packed_batch([[group for _, _, group in row] for row in packed], pad_id, device)
    pairs = [
        (position[(number, better)], position[(number, worse)], margin)
        for number, row in enumerate(rows)
        for better, worse, margin in row.pairs
    ]
    better, worse, margins = zip(*pairs, strict=True)
    return RankingBatch(
        batch,
        torch.tensor(better, device=device),
        torch.tensor(worse, device=device),
        torch.tensor(margins, device=device),
    )


def pair_batch(pairs: Sequence[RankedPair], pad_id: int, device: torch.device) -> RankingBatch:
    """Independent pairs: one row each where the two share their prompt, else one per exchange."""
    return ranking_batch([RankedRow.of([pair]) for pair in pairs], pad_id, device)
