"""The objectives of every stage as plain tensor functions, so each can be checked by hand.

Per-token tensors are [B, T] and aligned with the tokens: entry t concerns token t (its
log-probability given tokens < t, the value of the state before it), and `mask` is True on the
response tokens a loss covers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Llama 2, section 3.4.2: a safety score below 0.15 marks a response unsafe; the reward of PPO and
# rejection sampling then comes from the safety reward model whatever the prompt.
UNSAFE_THRESHOLD = 0.15


def margin_ranking_loss(
    better: torch.Tensor, worse: torch.Tensor, margin: torch.Tensor
) -> torch.Tensor:
    """Llama 2's reward-model loss per pair, -log σ(r(x, y_c) - r(x, y_r) - m(r)): [B]."""
    return -F.logsigmoid(better - worse - margin)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """The sigmoid DPO loss per pair from summed response log-probabilities: [B].

    -log σ(β[(log π(y_c) - log π_ref(y_c)) - (log π(y_r) - log π_ref(y_r))]) (Rafailov et al.).
    """
    chosen = policy_chosen - reference_chosen
    rejected = policy_rejected - reference_rejected
    return -F.logsigmoid(beta * (chosen - rejected))


def chosen_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor) -> torch.Tensor:
    """The per-token negative log-likelihood of each chosen response: [B].

    Llama 3 adds it to DPO scaled by 0.2 so the chosen response's likelihood does not fall
    (Pang et al. 2024 normalise it by length the same way).
    """
    return -policy_chosen / chosen_tokens


def logit(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The inverse of the sigmoid, with p clamped into (eps, 1 - eps) to stay finite."""
    p = p.clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)


def whiten(
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """(x - mean) / std over the entries under `mask` (all by default; population variance),
    zero off the mask. `reduce` sums the moments over processes, so that data-parallel ranks
    whiten by the statistics of the whole batch."""
    weight = torch.ones_like(x) if mask is None else mask.to(x.dtype)
    moments = torch.stack([(x * weight).sum(), (x * x * weight).sum(), weight.sum()])
    if reduce is not None:
        moments = reduce(moments)
    mean = moments[0] / moments[2]
    variance = (moments[1] / moments[2] - mean**2).clamp(min=0)
    return (x - mean) * torch.rsqrt(variance + eps) * weight


def piecewise_reward(
    helpfulness: torch.Tensor, safety: torch.Tensor, risky: torch.Tensor
) -> torch.Tensor:
    """Llama 2's combined reward R_c from the two reward models' scores as probabilities.

    The safety score where the prompt is risky or the response looks unsafe (safety < 0.15),
    else the helpfulness score: [B].
    """
    use_safety = risky | (safety < UNSAFE_THRESHOLD)
    return torch.where(use_safety, safety, helpfulness)


def kl_penalised_rewards(
    score: torch.Tensor,
    logprobs: torch.Tensor,
    reference_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-token rewards [B, T]: -β(log π - log π_0) on every response token, and the sequence's
    score added on its last one (InstructGPT's form of Llama 2's R = R̃_c - β·KL)."""
    rewards = -beta * (logprobs - reference_logprobs) * mask
    last = _last_index(mask)
    return rewards.scatter_add(1, last[:, None], score[:, None].to(rewards.dtype))


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over each response: (advantages,
    returns), both [B, T] and zero off the mask. The state after a response's last token is
    terminal, with value 0."""
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        on = mask[:, t].to(rewards.dtype)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * on
        next_value = values[:, t] * on
        next_advantage = advantages[:, t]
    return advantages, (advantages + values) * mask


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token, -min(ρA, clip(ρ, 1-ε, 1+ε)A) with ρ = π/π_old, and
    whether the clip was active, both [B, T]."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).float()


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, clip: float
) -> torch.Tensor:
    """Half the squared error to the returns per token, the larger of the plain and the clipped
    one (values kept within ±clip of the rollout's), as the PPO baselines do: [B, T]."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True entry of each row of a [B, T] mask."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    return torch.where(mask.bool(), positions, -1).max(dim=1).values
