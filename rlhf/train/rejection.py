"""Rejection-sampling fine-tuning (Llama 2, section 3.2.3).

K responses per training prompt from the newest policy at a given temperature, each judged by
the reward R_c (see `judge`); per prompt the best of them and of the earlier iterations' best
responses (re-judged by today's reward models) becomes the target, and the policy is fine-tuned
on the targets with SFT. The run directory gets best.jsonl (the targets, as demonstrations for
the next iteration's --previous-best) and, in metrics.json, the mean max and median reward of
the first k samples for k = 1..K: the gain of best-of-K.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf.train.data import (
    Demonstration,
    Prompt,
    demonstration_row,
    read_demonstrations,
    read_prompts,
    write_jsonl,
)
from rlhf.train.encoding import ChatEncoder
from rlhf.train.judge import (
    FrozenSamplingConfig,
    JudgedSamplingConfig,
    RewardJudge,
    frozen_sampler,
    load_judge,
    sample_reported,
)
from rlhf.train.runs import SAMPLE, Progress, Run, doc, stoppable, write_json
from rlhf.train.sft import SFTConfig, fine_tune


@dataclass(kw_only=True)
class RejectionConfig(FrozenSamplingConfig, JudgedSamplingConfig, SFTConfig):
    data: Path = field(
        metadata=doc("prompts JSONL, or comparison rows (their non-held-out prompts)")
    )
    samples: int = field(default=4, metadata=doc("K: responses sampled per prompt"))
    temperature: float = field(
        default=1.0, metadata=doc("sampling temperature (Llama 2: 0.7 to 1.2)")
    )
    previous_best: list[Path] = field(
        default_factory=list, metadata=doc("best.jsonl files of earlier iterations")
    )


@stoppable
def run_rejection_sampling(
    config: RejectionConfig, progress: Progress | None = None
) -> dict[str, Any]:
    """Sample K responses per prompt, keep the best, fine-tune on them; returns the metrics."""
    prompts = unique_prompts(p for p in read_prompts(config.data) if not p.heldout)
    previous = [d for path in config.previous_best for d in read_demonstrations(path)]
    if config.samples < 1:
        raise ValueError(f"samples must be at least 1, got {config.samples}")
    run = Run(config, progress)
    sampled, best = sample_targets(run, config, prompts, previous)
    if run.dist.is_main:
        write_jsonl(run.out / "best.jsonl", [demonstration_row(d, reward=r) for d, r in best])
    sft = fine_tune(config, [d for d, _ in best], progress)
    metrics = {
        "prompts": len(prompts),
        "samples_per_prompt": config.samples,
        "previous_best": len(previous),
        "reward_vs_k": reward_vs_k(sampled["rewards"]),
        "mean_target_reward": statistics.fmean(r for _, r in best),
        "sft": {k: v for k, v in sft.items() if k != "config"},
    }
    if sft.get("stopped"):
        return {"stopped": True, **metrics}
    metrics = {"config": config.to_json(), **metrics}
    if run.dist.is_main:
        write_json(run.out / "metrics.json", metrics)
    return metrics


def sample_targets(
    run: Run,
    config: RejectionConfig,
    prompts: Sequence[Prompt],
    previous: Sequence[Demonstration],
) -> tuple[dict[str, list[Any]], list[tuple[Demonstration, float]]]:
    """The K judged samples of every prompt ({"responses", "rewards"}, kept in samples.pt so a
    resumed run does not sample again) and the best target per prompt with its reward."""
    policy, tokenizer = run.load_policy(config.policy)
    encoder = ChatEncoder(tokenizer, config.chat_template)
    judge = load_judge(run, config, encoder)

    def sample_and_judge() -> dict[str, list[Any]]:
        sampler = frozen_sampler(policy, config.sampling_mode)
        mine = run.dist.shard(prompts)
        repeated = [p for p in mine for _ in range(config.samples)]
        exchanges = sample_reported(
            run,
            config,
            sampler,
            encoder,
            repeated,
            seed=config.seed * 1_000_003 + run.dist.rank,
            temperature=config.temperature,
            phase=SAMPLE,
            stop_at_once=True,
        )
        rewards = judge(exchanges, [p.risky for p in repeated]).combined.tolist()
        k = config.samples
        per_prompt = [
            ([encoder.response_text(e.response) for e in exchanges[i : i + k]], rewards[i : i + k])
            for i in range(0, len(exchanges), k)
        ]
        gathered = run.dist.gather(per_prompt)
        return {"responses": [r for r, _ in gathered], "rewards": [w for _, w in gathered]}

    sampled = run.cached("samples.pt", sample_and_judge)
    best = choose_best(prompts, sampled["responses"], sampled["rewards"], previous, encoder, judge)
    return sampled, best


def unique_prompts(prompts: Any) -> list[Prompt]:
    """Each (context, prompt) once, in first-seen order (several rows may share a prompt)."""
    seen: dict[tuple[Any, ...], Prompt] = {}
    for prompt in prompts:
        seen.setdefault(_key(prompt), prompt)
    return list(seen.values())


def choose_best(
    prompts: Sequence[Prompt],
    responses: Sequence[Sequence[str]],
    rewards: Sequence[Sequence[float]],
    previous: Sequence[Demonstration],
    encoder: ChatEncoder,
    judge: RewardJudge,
) -> list[tuple[Demonstration, float]]:
    """Per prompt, the best of its samples and of the earlier best responses to it; prompts
    only earlier iterations had keep their earlier best. Earlier responses are judged again."""
    candidates: dict[tuple[Any, ...], list[tuple[Demonstration, float]]] = {}
    for prompt, texts, scores in zip(prompts, responses, rewards, strict=True):
        candidates[_key(prompt)] = [
            (_demonstration(prompt, text), score) for text, score in zip(texts, scores, strict=True)
        ]
    if previous:
        exchanges = [encoder.exchange(d, d.response) for d in previous]
        scores = judge(exchanges, [d.risky for d in previous]).combined.tolist()
        for demonstration, score in zip(previous, scores, strict=True):
            candidates.setdefault(_key(demonstration), []).append((demonstration, score))
    return [max(options, key=lambda option: option[1]) for options in candidates.values()]


def reward_vs_k(rewards: Sequence[Sequence[float]]) -> list[dict[str, float]]:
    """Mean over prompts of the max and of the median reward among the first k samples."""
    samples = len(rewards[0]) if rewards else 0
    return [
        {
            "k": k,
            "max": statistics.fmean(max(r[:k]) for r in rewards),
            "median": statistics.fmean(statistics.median(r[:k]) for r in rewards),
        }
        for k in range(1, samples + 1)
    ]


def _key(prompt: Prompt) -> tuple[Any, ...]:
    return (prompt.context, prompt.prompt)


def _demonstration(prompt: Prompt, response: str) -> Demonstration:
    return Demonstration(
        prompt=prompt.prompt, context=prompt.context, risky=prompt.risky, response=response
    )
