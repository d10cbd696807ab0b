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


def ranking_batch(rows: Sequence[RankedRow], device: torch.device) -> RankingBatch:
    """The rows' responses in one packed row, each comparison's prompt once, and their pairs as
    indices into the responses (numbered in order, comparison after comparison)."""
    batch = packed_batch([g for row in rows for g in share_prompts(row.exchanges)], device)
    pairs = []
    first = 0  # the number of the comparison's first response
    for row in rows:
        pairs.extend((first + better, first + worse, m) for better, worse, m in row.pairs)
        first += len(row.exchanges)
    better, worse, margins = zip(*pairs, strict=True)
    return RankingBatch(
        batch,
        torch.tensor(better, device=device),
        torch.tensor(worse, device=device),
        torch.tensor(margins, device=device),
    )


def pair_batch(pairs: Sequence[RankedPair], device: torch.device) -> RankingBatch:
    """Independent pairs: one comparison each, sharing a prompt where the two have the same."""
    return ranking_batch([RankedRow.of([pair]) for pair in pairs], device)
