"""Fitting a model to a fixed set of items, the skeleton SFT, the reward models and DPO share:
seeded epochs cut into global batches, AdamW on a cosine schedule, one optimizer step per batch
(micro-batched, gradient clipped) in `Run.train`'s resumable loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from modelcore.optim import make_adamw
from rlhf.train.runs import (
    History,
    OptimizerConfig,
    Run,
    TrainConfig,
    accumulate,
    doc,
    optimizer_step,
)

T = TypeVar("T")


@dataclass(kw_only=True)
class FitConfig(OptimizerConfig):
    """The schedule of a stage that fits a model to its items; each stage sets its paper's
    defaults by declaring a field again."""

    epochs: int = field(default=1, metadata=doc("passes over the data"))
    batch_size: int = field(default=32, metadata=doc("items per optimizer step"))
    micro_batch_size: int = field(default=4, metadata=doc("items per forward pass"))
    warmup_steps: int | None = field(
        default=0,
        metadata=doc(
            "linear warm-up steps before the cosine decay; "
            "none: 3% of the steps, at least 5 (Llama 2's reward models)"
        ),
    )

    def warmup(self, total: int) -> int:
        if self.warmup_steps is None:
            return max(5, math.ceil(0.03 * total))
        return self.warmup_steps


@dataclass
class Fitted:
    history: History
    steps: int  # the steps of the whole run (the history is shorter when it was stopped)
    wrapped: nn.Module  # the objective as trained: evaluate within `run.dist.full_weights(wrapped)`


def fit(
    run: Run,
    objective: nn.Module,
    items: Sequence[T],
    *,
    collate: Callable[[Sequence[T]], Any],
    denominator: Callable[[Sequence[T]], float] = len,
) -> Fitted:
    """Train `objective` (returning summed loss and metric sums, see `accumulate`) on `items`
    with the run's `FitConfig`: each step takes a seeded global batch, `collate`s this rank's
    micro-batches of it, and divides the sums by `denominator(batch)`."""
    config = run.config
    assert isinstance(config, FitConfig) and isinstance(config, TrainConfig)
    total = config.epochs * (len(items) // config.batch_size)
    # FSDP replaces the parameters with sharded ones: the optimizer must see those.
    wrapped = run.dist.wrap(objective, config.strategy)
    optimizer = make_adamw(objective, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = cosine_schedule(optimizer, total, warmup=config.warmup(total))

    def step(index: int) -> tuple[float, dict[str, float]]:
        batch = [items[i] for i in step_indices(len(items), config.batch_size, index, config.seed)]
        return train_step(
            run,
            wrapped,
            batch,
            collate=collate,
            micro_batch_size=config.micro_batch_size,
            denominator=denominator(batch),
            optimizer=optimizer,
            scheduler=scheduler,
            max_grad_norm=config.max_grad_norm,
        )

    objective.train()
    history = run.train(
        total=total, step=step, trained=objective, optimizers=[optimizer], schedulers=[scheduler]
    )
    return Fitted(history, total, wrapped)


def train_step(
    run: Run,
    wrapped: nn.Module,
    items: Sequence[T],
    *,
    collate: Callable[[Sequence[T]], Any],
    micro_batch_size: int,
    denominator: float,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    max_grad_norm: float,
) -> tuple[float, dict[str, float]]:
    """One optimizer step on a global batch `items`: this rank's share in micro-batches made by
    `collate`, then clipping, AdamW and the schedule. Returns the loss and metrics (with lr)."""
    mine = run.dist.shard(items)
    microbatches = [
        collate(mine[start : start + micro_batch_size])
        for start in range(0, len(mine), micro_batch_size)
    ]
    loss, metrics = accumulate(run, wrapped, microbatches, denominator)
    metrics["lr"] = scheduler.get_last_lr()[0]
    optimizer_step(optimizer, scheduler, max_grad_norm)
    return loss, metrics


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total: int, warmup: int, floor: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to `floor` times the peak (Llama 2 decays to 10%)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The items of global batch `step`: epochs are seeded permutations of the n items, cut
    into whole batches (an epoch's remainder, fewer than batch_size items, is left out)."""
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ValueError(f"{n} items do not fill one batch of {batch_size}")
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    return order[offset * batch_size : (offset + 1) * batch_size].tolist()
