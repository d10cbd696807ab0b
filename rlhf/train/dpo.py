"""Direct preference optimisation as Llama 3 runs it (section 4.1.4).

Sigmoid loss with β = 0.1 plus the chosen response's per-token NLL scaled by 0.2; the
formatting tokens (end of turn and other special tokens) are masked out of both, and the
reference log-probabilities come from one pass of the initial policy before training
(reference_logprobs.pt in the run directory, so a resumed run reuses them). Held-out pairs give
the chosen-minus-rejected log-probability margin before and after.

A pair is one row, for the policy and for the reference: the prompt once, then the chosen and
the rejected response, each attending to the prompt and to itself only (`encoding.SharedPrompt`),
so the prompt runs once per pair instead of twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelcore.model import LlamaLM
from modelcore.tokenizer import Tokenizer
from rlhf.train.data import MARGINS, read_comparisons, split_heldout
from rlhf.train.encoding import (
    ChatEncoder,
    Exchange,
    PackedBatch,
    SharedPrompt,
    content_mask,
    packed_batch,
)
from rlhf.train.fitting import FitConfig, fit
from rlhf.train.losses import chosen_nll, dpo_loss
from rlhf.train.runs import Progress, Run, TrainConfig, doc
from rlhf.train.trainable import count_parameters


@dataclass(kw_only=True)
class DPOConfig(FitConfig, TrainConfig):
    data: Path = field(metadata=doc("comparisons JSONL (the annotation export)"))
    policy: Path = field(metadata=doc("policy checkpoint (also the frozen reference)"))
    beta: float = field(default=0.1, metadata=doc("DPO temperature β (Llama 3: 0.1)"))
    nll_weight: float = field(
        default=0.2, metadata=doc("weight of the chosen response's NLL (Llama 3: 0.2)")
    )
    batch_size: int = field(default=32, metadata=doc("pairs per optimizer step"))
    micro_batch_size: int = field(default=4, metadata=doc("pairs per forward pass"))
    lr: float = field(default=1e-5, metadata=doc("peak learning rate (Llama 3: 1e-5)"))
    eval_batch_size: int = field(default=16, metadata=doc("sequences per scoring pass"))


@dataclass
class PreferenceBatch:
    rows: PackedBatch  # one row per pair: its prompt, chosen, rejected
    mask: torch.Tensor  # the content tokens the loss covers
    reference: torch.Tensor  # [B, 2]: reference log-probabilities of chosen, rejected

    def logprobs(self, model: LlamaLM) -> torch.Tensor:
        """Summed log-probabilities of the content tokens of chosen and rejected: [B, 2]."""
        return self.rows.per_exchange(self.rows.logprobs(model, self.mask)).view(-1, 2)


class DPOObjective(nn.Module):
    def __init__(self, model: LlamaLM, beta: float, nll_weight: float) -> None:
        super().__init__()
        self.model = model
        self.beta = beta
        self.nll_weight = nll_weight

    def forward(self, batch: PreferenceBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        chosen, rejected = batch.logprobs(self.model).unbind(1)
        preference = dpo_loss(
            chosen, rejected, batch.reference[:, 0], batch.reference[:, 1], self.beta
        )
        tokens = batch.rows.per_exchange(batch.mask.to(chosen.dtype)).view(-1, 2)[:, 0]
        nll = chosen_nll(chosen, tokens)
        implicit = (chosen - batch.reference[:, 0]) - (rejected - batch.reference[:, 1])
        return (preference + self.nll_weight * nll).sum(), {
            "dpo_loss": preference.sum(),
            "nll": nll.sum(),
            "reward_accuracy": (implicit > 0).float().sum(),
            "logprob_margin": (chosen - rejected).sum(),
        }


def run_dpo(config: DPOConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train the policy with DPO; returns (and writes) the held-out margin and the curves."""
    train_rows, heldout_rows = split_heldout(read_comparisons(config.data))
    run = Run(config, progress)
    run.check_batch(config.batch_size)
    model, tokenizer = run.load_policy(config.policy)
    run.make_trainable(model)
    encoder = ChatEncoder(tokenizer, config.chat_template)
    pairs = [
        (encoder.exchange(row, better), encoder.exchange(row, worse))
        for row in train_rows
        for better, worse, _ in row.ranked_pairs(MARGINS["none"])
    ]
    heldout = [
        (encoder.exchange(r, r.chosen), encoder.exchange(r, r.rejected)) for r in heldout_rows
    ]
    kept = [p for p in pairs if max(len(p[0].ids), len(p[1].ids)) <= config.max_seq_len]

    def logprobs_of(items: Sequence[tuple[Exchange, Exchange]]) -> torch.Tensor:
        return pair_logprobs(model, tokenizer, encoder.pad_id, items, config.eval_batch_size)

    model.eval()
    reference = run.cached(
        "reference_logprobs.pt",
        lambda: {"train": logprobs_of(kept), "heldout": logprobs_of(heldout)},
    )

    fitted = fit(
        run,
        DPOObjective(model, config.beta, config.nll_weight),
        range(len(kept)),  # indices: a pair's reference log-probabilities come with it
        collate=lambda part: preference_batch(
            [kept[i] for i in part], reference["train"][part], tokenizer, encoder.pad_id, run.device
        ),
    )
    if fitted.history.stopped:
        return {"stopped": True, "history": fitted.history.steps}
    with run.dist.full_weights(fitted.wrapped):
        model.eval()
        metrics: dict[str, Any] = {
            "train_pairs": len(kept),
            "skipped_too_long": len(pairs) - len(kept),
            "steps": fitted.steps,
            **count_parameters(model),
        }
        if heldout:
            before, after = reference["heldout"], logprobs_of(heldout)
            metrics["heldout"] = {
                "pairs": len(heldout),
                "logprob_margin_before": (before[:, 0] - before[:, 1]).mean().item(),
                "logprob_margin_after": (after[:, 0] - after[:, 1]).mean().item(),
                # The implicit reward β·log(π/π_ref) of chosen above that of rejected.
                "reward_accuracy": ((after - before)[:, 0] > (after - before)[:, 1])
                .float()
                .mean()
                .item(),
            }
    run.save_model(model, tokenizer)
    return run.finish({**metrics, "history": fitted.history.steps})


def preference_batch(
    pairs: Sequence[tuple[Exchange, Exchange]],
    reference: torch.Tensor,
    tokenizer: Tokenizer,
    pad_id: int,
    device: torch.device,
) -> PreferenceBatch:
    rows = packed_batch([[SharedPrompt(pair)] for pair in pairs], pad_id, device)
    mask = content_mask(rows.tokens, rows.target_mask, tokenizer)
    return PreferenceBatch(rows, mask, reference.to(device))


@torch.no_grad()
def pair_logprobs(
    model: LlamaLM,
    tokenizer: Tokenizer,
    pad_id: int,
    pairs: Sequence[tuple[Exchange, Exchange]],
    batch_size: int,
) -> torch.Tensor:
    """Summed log-probabilities of the content tokens of each pair's two responses: [N, 2]."""
    device = model.decoder.embed.weight.device
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        batch = preference_batch(chunk, torch.zeros(len(chunk), 2), tokenizer, pad_id, device)
        out.append(batch.logprobs(model).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 2)
