"""Direct preference optimisation as Llama 3 runs it (section 4.1.4).

Sigmoid loss with β = 0.1 plus the chosen response's per-token NLL scaled by 0.2; the
formatting tokens (end of turn and other special tokens) are masked out of both, and the
reference log-probabilities come from one pass of the initial policy before training
(reference_logprobs.pt in the run directory, so a resumed run reuses them). Held-out pairs give
the chosen-minus-rejected log-probability margin before and after.

A comparison's responses share one row, for the policy and for the reference: the prompt once,
then each of its responses, each attending to the prompt and to itself only (`ranking`,
`encoding.SharedPrompt`; a micro-batch's comparisons lie end to end, without padding). So the
prompt runs once per comparison, not twice per pair, and with an edited response its three
pairs share three responses instead of repeating them in six. The loss is still the mean over
pairs.
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
from rlhf.train.encoding import ChatEncoder, content_mask
from rlhf.train.fitting import FitConfig, fit
from rlhf.train.losses import chosen_nll, dpo_loss
from rlhf.train.ranking import (
    COMPARISONS_PER_STEP,
    RankedPair,
    RankedRow,
    RankingBatch,
    ranked_rows,
    ranking_batch,
)
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
    batch_size: int = field(default=32, metadata=doc(COMPARISONS_PER_STEP))
    micro_batch_size: int = field(default=4, metadata=doc("comparisons per forward pass"))
    lr: float = field(default=1e-5, metadata=doc("peak learning rate (Llama 3: 1e-5)"))
    eval_batch_size: int = field(
        default=16, metadata=doc("comparisons per reference (log-probability) pass")
    )


@dataclass
class PreferenceBatch:
    ranking: RankingBatch  # each comparison's prompt, then each of its responses (packed)
    mask: torch.Tensor  # the content tokens the loss covers
    reference: torch.Tensor  # [P, 2]: reference log-probabilities of each pair's two responses

    def logprobs(self, model: LlamaLM) -> torch.Tensor:
        """Summed log-probabilities of the content tokens of each pair's better and worse
        response: [P, 2]."""
        return self.per_pair(self.ranking.rows.logprobs(model, self.mask))

    def tokens(self) -> torch.Tensor:
        """How many content tokens each pair's two responses have: [P, 2]."""
        return self.per_pair(self.mask.float())

    def per_pair(self, values: torch.Tensor) -> torch.Tensor:
        per_response = self.ranking.rows.per_exchange(values)
        return torch.stack([per_response[self.ranking.better], per_response[self.ranking.worse]], 1)


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
        nll = chosen_nll(chosen, batch.tokens()[:, 0].to(chosen.dtype))
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
    rows, skipped = ranked_rows(
        encoder, train_rows, MARGINS["none"], config.max_seq_len, seed=config.seed
    )
    heldout = [
        RankedRow.of(
            [RankedPair(encoder.exchange(r, r.chosen), encoder.exchange(r, r.rejected), 0)]
        )
        for r in heldout_rows
    ]

    def logprobs_of(items: Sequence[RankedRow]) -> torch.Tensor:
        return reference_logprobs(model, tokenizer, items, config.eval_batch_size)

    model.eval()
    reference = run.cached(
        "reference_logprobs.pt",
        lambda: {"train": logprobs_of(rows), "heldout": logprobs_of(heldout)},
    )
    # Where each row's pairs start in the reference log-probabilities (rows' pairs in order).
    starts = [0]
    for row in rows:
        starts.append(starts[-1] + len(row.pairs))

    def collate(part: Sequence[int]) -> PreferenceBatch:
        pairs = torch.cat([reference["train"][starts[i] : starts[i + 1]] for i in part])
        return preference_batch([rows[i] for i in part], pairs, tokenizer, run.device)

    fitted = fit(
        run,
        DPOObjective(model, config.beta, config.nll_weight),
        range(len(rows)),  # indices: a row's reference log-probabilities come with it
        collate=collate,
        denominator=lambda batch: sum(len(rows[i].pairs) for i in batch),  # a mean over pairs
    )
    if fitted.history.stopped:
        return {"stopped": True, "history": fitted.history.steps}
    with run.dist.full_weights(fitted.wrapped):
        model.eval()
        metrics: dict[str, Any] = {
            "train_comparisons": len(rows),
            "train_pairs": starts[-1],
            "skipped_too_long": skipped,
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
    rows: Sequence[RankedRow],
    reference: torch.Tensor,
    tokenizer: Tokenizer,
    device: torch.device,
) -> PreferenceBatch:
    """The rows' pairs, with their reference log-probabilities [P, 2] in the rows' order."""
    ranking = ranking_batch(rows, device)
    mask = content_mask(ranking.rows.tokens, ranking.rows.target_mask, tokenizer)
    return PreferenceBatch(ranking, mask, reference.to(device))


@torch.no_grad()
def reference_logprobs(
    model: LlamaLM,
    tokenizer: Tokenizer,
    rows: Sequence[RankedRow],
    batch_size: int,
) -> torch.Tensor:
    """Summed log-probabilities of the content tokens of each pair's two responses, the rows'
    pairs in order, `batch_size` rows a pass: [P, 2]."""
    device = model.decoder.embed.weight.device
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        pairs = sum(len(row.pairs) for row in chunk)
        batch = preference_batch(chunk, torch.zeros(pairs, 2), tokenizer, device)
        out.append(batch.logprobs(model).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 2)
