"""Reward models: the helpfulness RM and the safety RM of Llama 2.

Each starts from the policy checkpoint with a scalar head (zero at first) and trains one epoch
on ranked pairs with the margin loss -log σ(r(x, y_c) - r(x, y_r) - m(r)), cosine to 10% of the
peak lr after a warm-up of 3% of the steps, at least 5 (Llama 2, section 3.2.2). Held-out rows
are never trained on; they give the accuracy overall and per strength level, and for the safety
RM the precision and recall of "unsafe" at the 0.15 threshold.

A comparison trains as one row, as Llama 3 does: its prompt once, then its responses (edited,
chosen, rejected) in a seeded random order, each attending to the prompt and to itself only
(`ranking`, `encoding.SharedPrompt`), so each score is the one a row of its own would give while the
prompt runs once instead of twice per pair. The loss is still the mean over ranked pairs.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelcore.model import ScalarModel
from rlhf.train.data import GUIDELINES, MARGINS, Comparison, read_comparisons, split_heldout
from rlhf.train.encoding import ChatEncoder
from rlhf.train.fitting import FitConfig, fit
from rlhf.train.judge import score_exchanges
from rlhf.train.losses import UNSAFE_THRESHOLD, margin_ranking_loss
from rlhf.train.ranking import COMPARISONS_PER_STEP, RankingBatch, ranked_rows, ranking_batch
from rlhf.train.runs import Progress, Run, TrainConfig, doc
from rlhf.train.trainable import count_parameters


@dataclass(kw_only=True)
class RewardConfig(FitConfig, TrainConfig):
    data: Path = field(metadata=doc("comparisons JSONL (the annotation export)"))
    policy: Path = field(metadata=doc("policy checkpoint the reward model starts from"))
    target: str = field(default="helpfulness", metadata=doc("helpfulness or safety"))
    margin: str = field(default="small", metadata=doc("margin scheme: small, large or none"))
    epochs: int = field(default=1, metadata=doc("passes over the pairs (Llama 2: 1)"))
    batch_size: int = field(default=32, metadata=doc(COMPARISONS_PER_STEP))
    micro_batch_size: int = field(default=8, metadata=doc("comparisons per forward pass"))
    lr: float = field(default=1e-5, metadata=doc("peak learning rate (Llama 2: 1e-5)"))
    warmup_steps: int | None = field(
        default=None, metadata=doc("warm-up steps; none: 3% of the steps, at least 5 (Llama 2)")
    )
    eval_batch_size: int = field(default=16, metadata=doc("sequences per scoring pass"))


class RankingObjective(nn.Module):
    def __init__(self, model: ScalarModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: RankingBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rows = batch.rows
        values = self.model(rows.tokens, positions=rows.positions, mask=rows.attention)
        scores = values.flatten()[rows.last].float()  # each response's score at its last token
        better, worse = scores[batch.better], scores[batch.worse]
        losses = margin_ranking_loss(better, worse, batch.margins)
        return losses.sum(), {"accuracy": (better > worse).float().sum()}


def mix_for(target: str, rows: Sequence[Comparison], seed: int) -> list[Comparison]:
    """Llama 2's data mix: the helpfulness RM on all helpfulness rows plus as many sampled
    from the safety rows; the safety RM on all safety rows plus helpfulness rows to make a
    90/10 mix."""
    if target not in GUIDELINES:
        raise ValueError(f"unknown target {target!r}: expected one of {GUIDELINES}")
    own = [r for r in rows if r.guideline == target]
    other = [r for r in rows if r.guideline != target]
    wanted = len(own) if target == "helpfulness" else round(len(own) / 9)
    return own + random.Random(seed).sample(other, min(wanted, len(other)))


def train_reward_model(config: RewardConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train one reward model; returns (and writes to metrics.json) its held-out metrics."""
    if config.margin not in MARGINS:
        raise ValueError(f"unknown margin scheme {config.margin!r}: expected {tuple(MARGINS)}")
    train_rows, heldout_rows = split_heldout(read_comparisons(config.data))
    mixed = mix_for(config.target, train_rows, config.seed)
    run = Run(config, progress)
    run.check_batch(config.batch_size)
    policy, tokenizer = run.load_policy(config.policy)
    model = ScalarModel.from_policy(policy)
    del policy
    run.make_trainable(model)
    encoder = ChatEncoder(tokenizer, config.chat_template)
    rows, skipped = ranked_rows(
        encoder, mixed, MARGINS[config.margin], config.max_seq_len, config.seed
    )

    fitted = fit(
        run,
        RankingObjective(model),
        rows,
        collate=lambda part: ranking_batch(part, run.device),
        denominator=lambda batch: sum(len(row.pairs) for row in batch),  # a mean over pairs
    )
    if fitted.history.stopped:
        return {"stopped": True, "history": fitted.history.steps}
    with run.dist.full_weights(fitted.wrapped):
        model.eval()
        metrics: dict[str, Any] = {
            "target": config.target,
            "train_rows": len(mixed),
            "train_pairs": sum(len(row.pairs) for row in rows),
            "skipped_too_long": skipped,
            "steps": fitted.steps,
            **count_parameters(model),
        }
        if heldout_rows:
            metrics["heldout"] = evaluate_reward_model(
                model, encoder, heldout_rows, config.target, config.eval_batch_size
            )
    run.save_model(model, tokenizer)
    return run.finish({**metrics, "history": fitted.history.steps})


def evaluate_reward_model(
    model: ScalarModel,
    encoder: ChatEncoder,
    rows: Sequence[Comparison],
    target: str,
    batch_size: int,
) -> dict[str, Any]:
    """Held-out accuracy (chosen scored above rejected) overall and per strength on the rows of
    the model's own guideline, per guideline and per batch on all rows; for the safety RM,
    precision and recall of "unsafe" (sigmoid(score) < 0.15) over every held-out response."""
    exchanges = [encoder.exchange(r, r.chosen) for r in rows]
    exchanges += [encoder.exchange(r, r.rejected) for r in rows]
    scores = score_exchanges(model, exchanges, pad_id=encoder.pad_id, batch_size=batch_size)
    chosen, rejected = scores[: len(rows)], scores[len(rows) :]
    correct = (chosen > rejected).tolist()
    own = [(r, c) for r, c in zip(rows, correct, strict=True) if r.guideline == target]
    metrics: dict[str, Any] = {
        "pairs": len(own),
        "accuracy": _mean([c for _, c in own]),
        "accuracy_by_strength": _grouped([(r.strength, c) for r, c in own]),
        "accuracy_by_guideline": _grouped(
            [(r.guideline, c) for r, c in zip(rows, correct, strict=True)]
        ),
        "accuracy_by_batch": _grouped([(r.batch, c) for r, c in zip(rows, correct, strict=True)]),
        "mean_score_chosen": chosen.mean().item(),
        "mean_score_rejected": rejected.mean().item(),
    }
    if target == "safety":
        # The chosen response is unsafe only when both are; the rejected one unless both are safe.
        unsafe_truth = [r.safety == "both_unsafe" for r in rows]
        unsafe_truth += [r.safety != "both_safe" for r in rows]
        predicted = (torch.sigmoid(scores) < UNSAFE_THRESHOLD).tolist()
        metrics["unsafe_at_threshold"] = _precision_recall(predicted, unsafe_truth)
    return metrics


def _mean(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _grouped(items: Sequence[tuple[str, bool]]) -> dict[str, dict[str, float | None]]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, value in items:
        groups[key].append(value)
    return {key: {"accuracy": _mean(v), "pairs": len(v)} for key, v in sorted(groups.items())}


def _precision_recall(predicted: Sequence[bool], truth: Sequence[bool]) -> dict[str, Any]:
    hits = sum(p and t for p, t in zip(predicted, truth, strict=True))
    flagged, unsafe = sum(predicted), sum(truth)
    return {
        "threshold": UNSAFE_THRESHOLD,
        "precision": hits / flagged if flagged else None,
        "recall": hits / unsafe if unsafe else None,
        "flagged": flagged,
        "unsafe": unsafe,
    }
