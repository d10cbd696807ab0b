"""Supervised fine-tuning: next-token loss on the response tokens only.

Prompt and response go through the chat format; exchanges are packed into rows of
`max_seq_len` tokens, each attending only to itself. Llama 2 (section 3.1): cosine schedule,
lr 2e-5, weight decay 0.1, batch 64, 2 epochs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelcore.model import LlamaLM
from modelcore.optim import make_adamw
from rlhf.train.data import Demonstration, read_demonstrations
from rlhf.train.encoding import (
    ChatEncoder,
    PackedBatch,
    pack,
    packed_batch,
    token_logprobs,
)
from rlhf.train.runs import (
    Progress,
    Run,
    TrainConfig,
    cosine_schedule,
    doc,
    step_indices,
    train_step,
)
from rlhf.train.trainable import count_parameters


@dataclass(kw_only=True)
class SFTConfig(TrainConfig):
    data: Path = field(metadata=doc("demonstrations JSONL: prompt, context?, response"))
    policy: Path = field(metadata=doc("policy checkpoint to fine-tune"))
    epochs: int = field(default=2, metadata=doc("passes over the data (Llama 2: 2)"))
    batch_size: int = field(
        default=64, metadata=doc("packed rows per optimizer step (Llama 2: 64)")
    )
    micro_batch_size: int = field(default=4, metadata=doc("packed rows per forward pass"))
    lr: float = field(default=2e-5, metadata=doc("peak learning rate (Llama 2: 2e-5)"))
    warmup_steps: int = field(
        default=0, metadata=doc("linear warm-up steps before the cosine decay")
    )
    weight_decay: float = field(default=0.1, metadata=doc("AdamW weight decay (Llama 2: 0.1)"))
    max_grad_norm: float = field(default=1.0, metadata=doc("gradient clipping norm"))


class LanguageModelObjective(nn.Module):
    """Summed negative log-likelihood of the target tokens."""

    def __init__(self, model: LlamaLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: PackedBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logprobs = token_logprobs(
            self.model,
            batch.tokens,
            batch.target_mask,
            positions=batch.positions,
            mask=batch.attention_mask,
        )
        return -logprobs.sum(), {}


def run_sft(config: SFTConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Fine-tune the policy on demonstrations; returns (and writes) the training metrics."""
    demonstrations = read_demonstrations(config.data)
    return fine_tune(config, demonstrations, progress)


def fine_tune(
    config: SFTConfig, demonstrations: Sequence[Demonstration], progress: Progress | None
) -> dict[str, Any]:
    run = Run(config, progress)
    run.check_batch(config.batch_size)
    model, tokenizer = run.load_policy(config.policy)
    run.make_trainable(model)
    encoder = ChatEncoder(tokenizer, config.chat_template)
    exchanges = [encoder.exchange(d, d.response) for d in demonstrations]
    kept = [e for e in exchanges if len(e.ids) <= config.max_seq_len]
    random.Random(config.seed).shuffle(kept)
    rows = pack(kept, config.max_seq_len)

    total = config.epochs * (len(rows) // config.batch_size)
    objective = LanguageModelObjective(model)
    # FSDP replaces the parameters with sharded ones: the optimizer must see those.
    wrapped = run.dist.wrap(objective, config.strategy)
    optimizer = make_adamw(model, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = cosine_schedule(optimizer, total, warmup=config.warmup_steps)

    def step(index: int) -> tuple[float, dict[str, float]]:
        chosen = [rows[i] for i in step_indices(len(rows), config.batch_size, index, config.seed)]
        return train_step(
            run,
            wrapped,
            chosen,
            collate=lambda part: packed_batch(part, encoder.pad_id, run.device),
            micro_batch_size=config.micro_batch_size,
            denominator=sum(len(e.response) for row in chosen for e in row),  # target tokens
            optimizer=optimizer,
            scheduler=scheduler,
            max_grad_norm=config.max_grad_norm,
        )

    model.train()
    history = run.train(
        total=total, step=step, trained=objective, optimizers=[optimizer], schedulers=[scheduler]
    )
    if history.stopped:
        return {"stopped": True, "history": history.steps}
    run.save_model(model.eval(), tokenizer)
    metrics = {
        "examples": len(kept),
        "skipped_too_long": len(exchanges) - len(kept),
        "packed_rows": len(rows),
        "steps": total,
        **count_parameters(model),
        "history": history.steps,
    }
    return run.finish(metrics)
