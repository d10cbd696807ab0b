"""PPO as Llama 2 runs it (section 3.2.3).

Models: the policy (trained), a frozen reference (the initial policy), a value model
initialised from the helpfulness reward model (trained), and the frozen reward models. One PPO
step samples a response to each of `batch_size` prompts, judges them (R_c, see `judge`), and
turns the reward into per-token rewards whiten(logit(R_c)) at the last token minus
β·(log π - log π_0) at every token; GAE gives the advantages; then one optimizer step per
minibatch for the policy (clipped objective, ε 0.2) and for the value model (clipped squared
error). AdamW β 0.9/0.95, eps 1e-5, weight decay 0.1, gradient norm clipped at 1.0, constant
lr 1e-6 (Llama 2: batch 512, minibatch 64, β 0.01 for 7B and 13B).

Early stopping: every `eval_every` steps the mean R_c of greedy responses to the held-out
prompts is measured; the best policy so far is what model/ holds, and training stops after
`patience` evaluations without improvement.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelcore.model import LlamaLM, ScalarModel
from modelcore.optim import make_adamw
from rlhf.train.data import Prompt, read_prompts
from rlhf.train.encoding import ChatEncoder, Exchange, TokenBatch, token_logprobs
from rlhf.train.judge import (
    JudgedSamplingConfig,
    RewardJudge,
    load_judge,
    sample_exchanges,
    sample_reported,
    training_sampler,
)
from rlhf.train.losses import (
    clipped_value_loss,
    gae,
    kl_penalised_rewards,
    logit,
    ppo_policy_loss,
    whiten,
)
from rlhf.train.rejection import unique_prompts
from rlhf.train.runs import (
    HELDOUT,
    OptimizerConfig,
    Progress,
    Run,
    TrainConfig,
    accumulate,
    doc,
    optimizer_step,
    stoppable,
)
from rlhf.train.trainable import count_parameters, freeze


@dataclass(kw_only=True)
class PPOConfig(OptimizerConfig, JudgedSamplingConfig, TrainConfig):
    data: Path = field(
        metadata=doc("prompts JSONL or comparison rows; held-out ones drive early stopping")
    )
    policy: Path = field(metadata=doc("policy checkpoint (also the frozen reference)"))
    helpfulness_rm: Path = field(
        metadata=doc("helpfulness reward model (also initialises the value model)")
    )
    steps: int = field(default=200, metadata=doc("PPO steps (Llama 2: 200 to 400)"))
    batch_size: int = field(default=512, metadata=doc("prompts per PPO step (Llama 2: 512)"))
    minibatch_size: int = field(
        default=64, metadata=doc("rollouts per optimizer step (Llama 2: 64)")
    )
    micro_batch_size: int = field(default=8, metadata=doc("rollouts per forward pass"))
    lr: float = field(default=1e-6, metadata=doc("policy learning rate (Llama 2: 1e-6, constant)"))
    value_lr: float = field(default=1e-6, metadata=doc("value model learning rate"))
    kl_beta: float = field(
        default=0.01, metadata=doc("KL penalty β (Llama 2: 0.01 for 7B/13B, 0.005 above)")
    )
    clip: float = field(default=0.2, metadata=doc("PPO clip ε"))
    value_clip: float = field(default=0.2, metadata=doc("value clip around the rollout's values"))
    gamma: float = field(default=1.0, metadata=doc("discount"))
    lam: float = field(default=0.95, metadata=doc("GAE λ"))
    eval_every: int = field(default=10, metadata=doc("steps between held-out evaluations; 0: none"))
    patience: int = field(
        default=3, metadata=doc("stop after this many evaluations without improvement; 0: never")
    )


@dataclass
class Rollouts:
    """A batch of sampled responses with what PPO needs of them, per token [B, T]."""

    sequences: TokenBatch
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def select(self, rows: Sequence[int]) -> Rollouts:
        index = torch.tensor(list(rows), device=self.logprobs.device)
        width = int(self.sequences.lengths[index].max())
        sequences = TokenBatch(
            self.sequences.tokens[index, :width],
            self.sequences.lengths[index],
            self.sequences.response_mask[index, :width],
        )
        return Rollouts(
            sequences,
            *(
                t[index, :width]
                for t in (self.logprobs, self.values, self.advantages, self.returns)
            ),
        )


class PPOObjective(nn.Module):
    """Policy and value losses summed over the response tokens of a minibatch (the two models
    share no weights, so one backward pass serves both optimizers)."""

    def __init__(self, policy: LlamaLM, value: ScalarModel, clip: float, value_clip: float):
        super().__init__()
        self.policy = policy
        self.value = value
        self.clip = clip
        self.value_clip = value_clip

    def forward(self, batch: Rollouts) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mask = batch.sequences.response_mask
        logprobs = token_logprobs(self.policy, batch.sequences.tokens, mask)
        policy_loss, clipped = ppo_policy_loss(
            logprobs.float(), batch.logprobs, batch.advantages, self.clip
        )
        values = shifted_values(self.value, batch.sequences.tokens)
        value_loss = clipped_value_loss(values, batch.values, batch.returns, self.value_clip)
        on = mask.float()
        return (policy_loss * on).sum() + (value_loss * on).sum(), {
            "policy_loss": (policy_loss * on).sum(),
            "value_loss": (value_loss * on).sum(),
            "clip_fraction": (clipped * on).sum(),
            "approx_kl": ((batch.logprobs - logprobs.float()) * on).sum(),
        }


def shifted_values(value: ScalarModel, tokens: torch.Tensor) -> torch.Tensor:
    """The value of the state before each token t: the value head read at t - 1. [B, T]"""
    values = value(tokens).float()
    return torch.cat([torch.zeros_like(values[:, :1]), values[:, :-1]], dim=1)


@stoppable
def run_ppo(config: PPOConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Train the policy with PPO; returns (and writes) the reward, KL and held-out curves."""
    rows = unique_prompts(read_prompts(config.data))
    train_prompts = [p for p in rows if not p.heldout]
    heldout_prompts = [p for p in rows if p.heldout]
    if not train_prompts:
        raise ValueError(f"{config.data}: no training (non-held-out) prompts")
    if config.strategy == "fsdp":
        # Every step samples from the policy outside the wrapped forward, and ranks sample for
        # different numbers of steps, so per-block weight gathering would never line up.
        raise ValueError("PPO trains with --strategy ddp: it samples between steps")
    run = Run(config, progress)
    run.check_batch(config.batch_size)
    run.check_batch(config.minibatch_size, "minibatch_size")
    if config.batch_size % config.minibatch_size:
        raise ValueError("batch_size must be a multiple of minibatch_size")
    policy, tokenizer = run.load_policy(config.policy)
    encoder = ChatEncoder(tokenizer, config.chat_template)
    judge = load_judge(run, config, encoder)
    reference = freeze(copy.deepcopy(policy))
    value = copy.deepcopy(judge.helpfulness)
    run.make_trainable(policy)
    run.make_trainable(value)
    adamw = {"weight_decay": config.weight_decay, "betas": (0.9, 0.95), "eps": 1e-5}
    optimizers = [
        make_adamw(policy, lr=config.lr, **adamw),
        make_adamw(value, lr=config.value_lr, **adamw),
    ]
    objective = PPOObjective(policy, value, config.clip, config.value_clip)
    trainer = PPOTrainer(run, config, encoder, judge, reference, objective, optimizers)
    evaluating = bool(heldout_prompts and config.eval_every)
    initial = run.cached(
        "heldout_initial.pt", lambda: trainer.heldout_reward(heldout_prompts, stop_at_once=True)
    )

    def step(index: int) -> tuple[float, dict[str, float]]:
        start = index * config.batch_size
        prompts = [
            train_prompts[(start + i) % len(train_prompts)] for i in range(config.batch_size)
        ]
        metrics = trainer.step(index, run.dist.shard(prompts))
        if evaluating and (index + 1) % config.eval_every == 0:
            # A stop asked for meanwhile waits for the step's end: the step is then complete.
            metrics["heldout_reward"] = trainer.heldout_reward(heldout_prompts, stop_at_once=False)
            earlier = [h["heldout_reward"] for h in run.history.steps if "heldout_reward" in h]
            if metrics["heldout_reward"] > max([initial, *earlier]):
                run.save_model(policy, tokenizer)  # model/ holds the best policy so far
        return metrics.pop("loss"), metrics

    def no_longer_improving(steps: list[dict[str, float]]) -> bool:
        curve = [initial, *(h["heldout_reward"] for h in steps if "heldout_reward" in h)]
        best = max(range(len(curve)), key=curve.__getitem__)
        return bool(config.patience) and len(curve) - 1 - best >= config.patience

    policy.train()
    history = run.train(
        total=config.steps,
        step=step,
        trained=objective,
        optimizers=optimizers,
        finished=no_longer_improving if evaluating else None,
    )
    if history.stopped:
        return {"stopped": True, "history": history.steps}
    curve = [h["heldout_reward"] for h in history.steps if "heldout_reward" in h]
    if not evaluating:
        run.save_model(policy, tokenizer)
    elif not curve or max(curve) <= initial:
        run.save_model(reference, tokenizer)  # no step beat the initial policy
    metrics = {
        "prompts": len(train_prompts),
        "heldout_prompts": len(heldout_prompts),
        "steps_run": len(history.steps),
        "heldout_reward_initial": initial,
        "heldout_reward_best": max([initial, *curve]),
        "generation_share": _generation_share(history.steps),
        **count_parameters(policy),
        "history": history.steps,
    }
    return run.finish(metrics)


def _generation_share(steps: list[dict[str, float]]) -> float | None:
    total = sum(h["generation_s"] + h["scoring_s"] + h["training_s"] for h in steps)
    return sum(h["generation_s"] for h in steps) / total if total else None


class PPOTrainer:
    """One PPO step: rollouts, their advantages, then the minibatch updates."""

    def __init__(
        self,
        run: Run,
        config: PPOConfig,
        encoder: ChatEncoder,
        judge: RewardJudge,
        reference: LlamaLM,
        objective: PPOObjective,
        optimizers: Sequence[torch.optim.Optimizer],
    ) -> None:
        self.run = run
        self.config = config
        self.encoder = encoder
        self.judge = judge
        self.reference = reference
        self.objective = objective
        self.wrapped = run.dist.wrap(objective, config.strategy)
        self.optimizers = optimizers
        # Rollouts and held-out answers: on a GPU through the compiled decoding step.
        self.sampler = training_sampler(objective.policy)

    def step(self, index: int, prompts: Sequence[Prompt]) -> dict[str, float]:
        config, dist = self.config, self.run.dist
        started = time.perf_counter()
        exchanges = sample_exchanges(
            self.sampler,
            self.encoder,
            prompts,
            temperature=config.temperature,
            max_new_tokens=config.max_new_tokens,
            seed=(config.seed * 1_000_003 + index) * dist.world + dist.rank,
            batch_size=config.generation_batch_size,
        )
        generated = time.perf_counter()
        judged = self.judge(exchanges, [p.risky for p in prompts]).combined
        rollouts, kl = self.rollouts(exchanges, judged)
        scored = time.perf_counter()
        losses = self.train(index, rollouts)
        trained = time.perf_counter()
        count = len(exchanges) * dist.world
        return {
            **losses,
            "reward": dist.sum(judged.sum()).item() / count,
            "kl": dist.sum(kl.sum()).item() / count,
            "response_tokens": dist.sum(rollouts.sequences.response_mask.sum()).item() / count,
            "generation_s": generated - started,
            "scoring_s": scored - generated,
            "training_s": trained - scored,
        }

    @torch.no_grad()
    def rollouts(
        self, exchanges: Sequence[Exchange], judged: torch.Tensor
    ) -> tuple[Rollouts, torch.Tensor]:
        """The rollouts of sampled exchanges judged R_c, and each one's summed KL to π_0."""
        config, device = self.config, self.run.device
        parts = []
        for start in range(0, len(exchanges), config.micro_batch_size):
            batch = TokenBatch.of(
                exchanges[start : start + config.micro_batch_size], self.encoder.pad_id, device
            )
            mask = batch.response_mask
            parts.append(
                (
                    batch,
                    token_logprobs(self.objective.policy, batch.tokens, mask).float(),
                    token_logprobs(self.reference, batch.tokens, mask).float(),
                    shifted_values(self.objective.value, batch.tokens),
                )
            )
        sequences = TokenBatch.of(exchanges, self.encoder.pad_id, device)
        width = sequences.tokens.shape[1]
        logprobs, reference, values = (
            torch.cat([nn.functional.pad(part[i], (0, width - part[i].shape[1])) for part in parts])
            for i in (1, 2, 3)
        )
        mask = sequences.response_mask
        score = whiten(logit(judged.to(device)), reduce=self.run.dist.sum)
        rewards = kl_penalised_rewards(score, logprobs, reference, mask, config.kl_beta)
        advantages, returns = gae(rewards, values * mask, mask, config.gamma, config.lam)
        advantages = whiten(advantages, mask, reduce=self.run.dist.sum)
        kl = ((logprobs - reference) * mask).sum(1)
        return Rollouts(sequences, logprobs, values * mask, advantages, returns), kl

    def train(self, index: int, rollouts: Rollouts) -> dict[str, float]:
        """One optimizer step per minibatch, over the rollouts in a seeded random order."""
        config, dist = self.config, self.run.dist
        local = rollouts.logprobs.shape[0]
        per_minibatch = config.minibatch_size // dist.world
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + index)
        order = torch.randperm(local, generator=generator).tolist()
        totals: dict[str, float] = {}
        minibatches = range(0, local, per_minibatch)
        for start in minibatches:
            rows = order[start : start + per_minibatch]
            micro = [
                rollouts.select(rows[i : i + config.micro_batch_size])
                for i in range(0, len(rows), config.micro_batch_size)
            ]
            tokens = dist.sum(rollouts.sequences.response_mask[rows].sum()).item()
            loss, metrics = accumulate(self.run, self.wrapped, micro, denominator=tokens)
            for optimizer in self.optimizers:
                optimizer_step(optimizer, None, config.max_grad_norm)
            for name, value in {"loss": loss, **metrics}.items():
                totals[name] = totals.get(name, 0.0) + value / len(minibatches)
        return totals

    def heldout_reward(self, prompts: Sequence[Prompt], *, stop_at_once: bool) -> float:
        """Mean R_c of greedy responses to the held-out prompts."""
        mine = self.run.dist.shard(prompts)
        exchanges = sample_reported(
            self.run,
            self.config,
            self.sampler,
            self.encoder,
            mine,
            seed=0,
            temperature=0.0,
            phase=HELDOUT,
            stop_at_once=stop_at_once,
        )
        judged = self.judge(exchanges, [p.risky for p in mine]).combined
        totals = self.run.dist.sum(torch.tensor([judged.sum().item(), float(len(mine))]))
        return (totals[0] / totals[1]).item()
