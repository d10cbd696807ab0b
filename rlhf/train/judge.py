"""Sampling responses from a policy, and judging them with the reward models.

The judged reward is Llama 2's R_c: the safety reward model's score where the prompt is risky
or the response scores below 0.15 on safety, else the helpfulness model's, both as
probabilities (the sigmoid of the scalar head). Without a safety model R_c is the helpfulness
score alone.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modelcore.compiled_decode import CompiledDecoding
from modelcore.model import LlamaLM, ScalarModel
from modelcore.sampling import SamplingParams, generate
from modelcore.sampling_modes import SAMPLING_MODES, prepare_for_sampling
from rlhf.train.data import Prompt
from rlhf.train.encoding import ChatEncoder, Exchange, TokenBatch
from rlhf.train.losses import piecewise_reward
from rlhf.train.runs import Run, Stopped, doc


@dataclass(kw_only=True)
class JudgedSamplingConfig:
    """How a stage samples responses and judges them (rejection sampling, PPO, evaluation);
    each stage declares a field again where its default differs."""

    helpfulness_rm: Path = field(metadata=doc("helpfulness reward model checkpoint"))
    safety_rm: Path | None = field(
        default=None, metadata=doc("safety reward model checkpoint (else helpfulness only)")
    )
    temperature: float = field(default=1.0, metadata=doc("sampling temperature; 0: greedy"))
    max_new_tokens: int = field(default=256, metadata=doc("longest response sampled"))
    generation_batch_size: int = field(default=16, metadata=doc("sequences sampled at once"))
    score_batch_size: int = field(default=16, metadata=doc("sequences per reward-model pass"))


@dataclass(kw_only=True)
class FrozenSamplingConfig:
    """For a stage whose policy only samples (rejection sampling, evaluation)."""

    sampling_mode: str = field(
        default="auto",
        metadata=doc(
            f"how the policy samples, one of {', '.join(SAMPLING_MODES)} "
            "(modelcore.sampling_modes): auto is int8 weights on a CPU, the decoding step as a "
            "CUDA graph on a GPU; reference samples with the weights as loaded"
        ),
    )


def frozen_sampler(policy: LlamaLM, mode: str) -> LlamaLM | CompiledDecoding:
    """`policy` prepared to sample in `mode`, for a stage that does not train it meanwhile. On
    a CPU every mode swaps the linear layers for inference-only ones, so it prepares a copy:
    the stage's policy keeps its weights as loaded (for log-probabilities, or training after)."""
    if policy.decoder.embed.weight.device.type == "cpu":
        policy = copy.deepcopy(policy)
    return prepare_for_sampling(policy.eval(), mode)


def training_sampler(policy: LlamaLM) -> LlamaLM | CompiledDecoding:
    """`policy`, which trains between its samples (PPO), ready to sample: on a GPU with its
    decoding step compiled as a CUDA graph, recorded against the parameters themselves, so
    each replay reads the weights the optimizer last wrote in place; on a CPU as it is (the
    int8 modes would quantize a copy again after every step, and sample a policy a little off
    the one trained)."""
    if policy.decoder.embed.weight.device.type == "cuda":
        return CompiledDecoding(policy)
    return policy


@torch.no_grad()
def score_exchanges(
    model: ScalarModel, exchanges: Sequence[Exchange], *, pad_id: int, batch_size: int
) -> torch.Tensor:
    """The reward model's raw score of each exchange, float32 on the CPU: [N]."""
    device = model.score.weight.device
    scores = []
    for start in range(0, len(exchanges), batch_size):
        batch = TokenBatch.of(exchanges[start : start + batch_size], pad_id, device)
        scores.append(model.reward(batch.tokens, batch.lengths).float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


@dataclass
class Judgement:
    """Per exchange, as probabilities: [N] each."""

    helpfulness: torch.Tensor
    safety: torch.Tensor | None
    combined: torch.Tensor  # R_c


class RewardJudge:
    def __init__(
        self,
        helpfulness: ScalarModel,
        safety: ScalarModel | None,
        *,
        pad_id: int,
        batch_size: int,
    ) -> None:
        self.helpfulness = helpfulness
        self.safety = safety
        self.pad_id = pad_id
        self.batch_size = batch_size

    def __call__(self, exchanges: Sequence[Exchange], risky: Sequence[bool]) -> Judgement:
        def probabilities(model: ScalarModel) -> torch.Tensor:
            scores = score_exchanges(
                model, exchanges, pad_id=self.pad_id, batch_size=self.batch_size
            )
            return torch.sigmoid(scores)

        helpfulness = probabilities(self.helpfulness)
        if self.safety is None:
            return Judgement(helpfulness, None, helpfulness)
        safety = probabilities(self.safety)
        combined = piecewise_reward(helpfulness, safety, torch.tensor(list(risky)))
        return Judgement(helpfulness, safety, combined)


def load_judge(run: Run, config: JudgedSamplingConfig, encoder: ChatEncoder) -> RewardJudge:
    safety = config.safety_rm
    return RewardJudge(
        run.load_reward_model(config.helpfulness_rm),
        run.load_reward_model(safety) if safety is not None else None,
        pad_id=encoder.pad_id,
        batch_size=config.score_batch_size,
    )


def sample_reported(
    run: Run,
    config: JudgedSamplingConfig,
    policy: LlamaLM | CompiledDecoding,
    encoder: ChatEncoder,
    prompts: Sequence[Prompt],
    *,
    seed: int,
    temperature: float,
    phase: str,
    stop_at_once: bool,
) -> list[Exchange]:
    """`sample_exchanges` of this rank's `prompts` (the same samples), chunk by chunk, each
    reported to the run's progress callback as `phase`. With `stop_at_once` a stop request
    raises `Stopped` after the chunk; without, it is left for the run's next step to take."""
    size = config.generation_batch_size
    # Every rank reports as many chunks: each report is a collective (the stop flag).
    total = max(run.dist.gather([math.ceil(len(prompts) / size)]))
    exchanges: list[Exchange] = []
    for chunk in range(total):
        exchanges += sample_exchanges(
            policy,
            encoder,
            prompts[chunk * size : (chunk + 1) * size],
            temperature=temperature,
            max_new_tokens=config.max_new_tokens,
            seed=seed + chunk,  # as sample_exchanges seeds its chunks
            batch_size=size,
        )
        if run.report(phase, chunk + 1, total) and stop_at_once:
            raise Stopped(phase)
    return exchanges


def sample_exchanges(
    policy: LlamaLM | CompiledDecoding,
    encoder: ChatEncoder,
    prompts: Sequence[Prompt],
    *,
    temperature: float,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
) -> list[Exchange]:
    """One sampled response per prompt (repeat a prompt for several), in `batch_size` rows at a
    time, chunk i seeded with seed + i so the same call gives the same samples. A policy in
    training mode samples in eval mode (no dropout) and goes back to training after."""
    exchanges = []
    model = policy.model if isinstance(policy, CompiledDecoding) else policy
    was_training = model.training
    if was_training:
        model.eval()
    for chunk, start in enumerate(range(0, len(prompts), batch_size)):
        prompt_ids = [encoder.prompt(p) for p in prompts[start : start + batch_size]]
        params = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop_ids=encoder.stop_ids,
            seed=seed + chunk,
        )
        completions = generate(policy, prompt_ids, params, pad_id=encoder.pad_id)
        exchanges += [
            Exchange(ids=ids + c.tokens, prompt_len=len(ids))
            for ids, c in zip(prompt_ids, completions, strict=True)
        ]
    if was_training:
        model.train()
    return exchanges
