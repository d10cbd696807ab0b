"""Supervised fine-tuning: next-token loss on the response tokens only.

Prompt and response go through the chat format; exchanges are packed into rows of
`max_seq_len` tokens (what `batch_size` counts), each attending only to itself, and a
micro-batch's rows run end to end as one row, with no padding. Llama 2 (section 3.1): cosine schedule,
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
from rlhf.train.data import Demonstration, read_demonstrations
from rlhf.train.encoding import (
    ChatEncoder,
    Exchange,
    PackedBatch,
    pack,
    packed_batch,
    token_logprobs,
)
from rlhf.train.fitting import FitConfig, fit
from rlhf.train.runs import Progress, Run, TrainConfig, doc
from rlhf.train.trainable import count_parameters


@dataclass(kw_only=True)
class SFTConfig(FitConfig, TrainConfig):
    data: Path = field(metadata=doc("demonstrations JSONL: prompt, context?, response"))
    policy: Path = field(metadata=doc("policy checkpoint to fine-tune"))
    epochs: int = field(default=2, metadata=doc("passes over the data (Llama 2: 2)"))
    batch_size: int = field(
        default=64, metadata=doc("packed rows per optimizer step (Llama 2: 64)")
    )
    micro_batch_size: int = field(default=4, metadata=doc("packed rows per forward pass"))
    lr: float = field(default=2e-5, metadata=doc("peak learning rate (Llama 2: 2e-5)"))


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
            mask=batch.attention,
        )
        return -logprobs.sum(), {}


def sft_batch(rows: Sequence[Sequence[Exchange]], device: torch.device) -> PackedBatch:
    """A micro-batch of packed rows, their exchanges end to end in one row (no padding)."""
    return packed_batch([exchange for row in rows for exchange in row], device)


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

    fitted = fit(
        run,
        LanguageModelObjective(model),
        rows,
        collate=lambda part: sft_batch(part, run.device),
        denominator=lambda batch: sum(len(e.response) for row in batch for e in row),  # targets
    )
    if fitted.history.stopped:
        return {"stopped": True, "history": fitted.history.steps}
    run.save_model(model.eval(), tokenizer)
    metrics = {
        "examples": len(kept),
        "skipped_too_long": len(exchanges) - len(kept),
        "packed_rows": len(rows),
        "steps": fitted.steps,
        **count_parameters(model),
        "history": fitted.history.steps,
    }
    return run.finish(metrics)
