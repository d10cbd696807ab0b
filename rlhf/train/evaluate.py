"""A policy against another on held-out prompts, judged by the reward models.

Each policy answers every held-out prompt (same temperature and seeds); the judge's R_c decides
each pair, a tie counting half. The two responses of a pair are scored in a random order
within the batch and the order is recorded, as a human evaluation would show them. Also
measured: the mean reward of each policy (R_c, and each reward model's probability on its own:
helpfulness and safety) and the KL of the new policy from the baseline on its own samples
(Σ log π - log π_base over the response). Everything goes to eval.json in the output
directory, next to the model.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modelcore.model import LlamaLM
from rlhf.train.data import read_prompts
from rlhf.train.encoding import ChatEncoder, Exchange, TokenBatch, token_logprobs
from rlhf.train.judge import (
    FrozenSamplingConfig,
    JudgedSamplingConfig,
    frozen_sampler,
    load_judge,
    sample_reported,
)
from rlhf.train.rejection import unique_prompts
from rlhf.train.runs import SAMPLE, Progress, Run, RunConfig, doc, stoppable, write_json


@dataclass(kw_only=True)
class EvalConfig(FrozenSamplingConfig, JudgedSamplingConfig, RunConfig):
    data: Path = field(metadata=doc("prompts JSONL or comparison rows; the held-out ones are used"))
    policy: Path = field(metadata=doc("the new policy checkpoint"))
    baseline: Path = field(
        metadata=doc("the policy it is compared with (e.g. the previous version)")
    )
    temperature: float = field(default=0.7, metadata=doc("sampling temperature; 0: greedy"))


@stoppable
def evaluate_policy(config: EvalConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Win rate, rewards and KL of a policy against a baseline; returns (and writes) them."""
    prompts = unique_prompts(p for p in read_prompts(config.data) if p.heldout)
    if not prompts:
        raise ValueError(f"{config.data}: no held-out prompts to evaluate on")
    run = Run(config, progress)
    policy, tokenizer = run.load_policy(config.policy)
    baseline, _ = run.load_policy(config.baseline)
    encoder = ChatEncoder(tokenizer, config.chat_template)
    judge = load_judge(run, config, encoder)
    mine = run.dist.shard(prompts)

    def answers(model: LlamaLM) -> list[Exchange]:
        return sample_reported(
            run,
            config,
            frozen_sampler(model, config.sampling_mode),
            encoder,
            mine,
            seed=config.seed * 1_000_003 + run.dist.rank,
            temperature=config.temperature,
            phase=SAMPLE,
            stop_at_once=True,
        )

    new, old = answers(policy), answers(baseline)
    rng = random.Random(config.seed + run.dist.rank)
    new_first = [rng.random() < 0.5 for _ in mine]
    shown = [
        x
        for first, n, o in zip(new_first, new, old, strict=True)
        for x in ((n, o) if first else (o, n))
    ]
    judgement = judge(shown, [p.risky for p in mine for _ in range(2)])
    flip = torch.tensor(new_first)

    def per_policy(scores: torch.Tensor | None) -> tuple[list[float | None], list[float | None]]:
        """Scores judged in the shown order, as (the new policy's, the baseline's) per prompt."""
        if scores is None:  # no safety model
            return [None] * len(mine), [None] * len(mine)
        pairs = scores.view(-1, 2)
        new_scores = torch.where(flip, pairs[:, 0], pairs[:, 1])
        old_scores = torch.where(flip, pairs[:, 1], pairs[:, 0])
        return new_scores.tolist(), old_scores.tolist()

    new_reward, old_reward = per_policy(judgement.combined)
    new_helpfulness, old_helpfulness = per_policy(judgement.helpfulness)
    new_safety, old_safety = per_policy(judgement.safety)
    kl = _kl(policy, baseline, new, encoder.pad_id, config.generation_batch_size)
    records = run.dist.gather(
        [
            {
                "prompt": p.prompt,
                "risky": p.risky,
                "shown_first": "policy" if first else "baseline",
                "policy_response": encoder.response_text(n.response),
                "baseline_response": encoder.response_text(o.response),
                "policy_reward": nr,
                "baseline_reward": br,
                "policy_helpfulness": nh,
                "baseline_helpfulness": bh,
                "policy_safety": ns,
                "baseline_safety": bs,
                "kl": k,
            }
            for p, first, n, o, nr, br, nh, bh, ns, bs, k in zip(
                mine,
                new_first,
                new,
                old,
                new_reward,
                old_reward,
                new_helpfulness,
                old_helpfulness,
                new_safety,
                old_safety,
                kl.tolist(),
                strict=True,
            )
        ]
    )
    metrics = {"config": config.to_json(), **summarise(records), "samples": records}
    if run.dist.is_main:
        write_json(run.out / "eval.json", metrics)
    run.dist.barrier()
    return metrics


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def outcome(record: dict[str, Any]) -> float:
        difference = record["policy_reward"] - record["baseline_reward"]
        return 1.0 if difference > 0 else 0.5 if difference == 0 else 0.0

    def win_rate(subset: Sequence[dict[str, Any]]) -> float | None:
        return statistics.fmean(outcome(r) for r in subset) if subset else None

    return {
        "prompts": len(records),
        "win_rate": win_rate(records),
        "win_rate_risky": win_rate([r for r in records if r["risky"]]),
        "win_rate_other": win_rate([r for r in records if not r["risky"]]),
        "wins": sum(outcome(r) == 1.0 for r in records),
        "ties": sum(outcome(r) == 0.5 for r in records),
        "losses": sum(outcome(r) == 0.0 for r in records),
        "mean_reward_policy": statistics.fmean(r["policy_reward"] for r in records),
        "mean_reward_baseline": statistics.fmean(r["baseline_reward"] for r in records),
        # Each reward model on its own too: Llama 2's progression chart plots one against the other.
        **{
            f"mean_{model}_{who}": _mean_of(records, f"{who}_{model}")
            for model in ("helpfulness", "safety")
            for who in ("policy", "baseline")
        },
        "kl_to_baseline": statistics.fmean(r["kl"] for r in records),
    }


def _mean_of(records: Sequence[dict[str, Any]], key: str) -> float | None:
    """The mean of a per-prompt score; None where it was not judged (no safety model)."""
    values = [r[key] for r in records if r[key] is not None]
    return statistics.fmean(values) if values else None


@torch.no_grad()
def _kl(
    policy: LlamaLM,
    baseline: LlamaLM,
    exchanges: Sequence[Exchange],
    pad_id: int,
    batch_size: int,
) -> torch.Tensor:
    """Σ over each response of log π - log π_base, on the policy's own samples: [N]."""
    device = policy.decoder.embed.weight.device
    out = []
    for start in range(0, len(exchanges), batch_size):
        batch = TokenBatch.of(exchanges[start : start + batch_size], pad_id, device)
        mask = batch.response_mask
        difference = token_logprobs(policy, batch.tokens, mask) - token_logprobs(
            baseline, batch.tokens, mask
        )
        out.append(difference.sum(1).float().cpu())
    return torch.cat(out)
