"""Every loss and transform against numbers worked out by hand."""

from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from rlhf.train.losses import (
    chosen_nll,
    clipped_value_loss,
    dpo_loss,
    gae,
    kl_penalised_rewards,
    logit,
    margin_ranking_loss,
    piecewise_reward,
    ppo_policy_loss,
    whiten,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_margin_ranking_loss() -> None:
    # -log σ(2 - 1 - 1) = log 2; -log σ(2 - 1 - 0) = log(1 + e^-1); a wrong order costs more.
    loss = margin_ranking_loss(t(2, 2, 1), t(1, 1, 2), t(1, 0, 0))
    assert_close(loss, t(math.log(2), math.log(1 + math.exp(-1)), math.log(1 + math.e)))


def test_dpo_loss_with_chosen_nll() -> None:
    # Chosen gained 1 nat over the reference, rejected lost 1: -log σ(0.1 · 2) = log(1 + e^-0.2).
    loss = dpo_loss(t(-1), t(-3), t(-2), t(-2), beta=0.1)
    assert_close(loss, t(math.log(1 + math.exp(-0.2))))
    # Llama 3's total: plus 0.2 × the chosen response's NLL per token (1 nat over 4 tokens).
    nll = chosen_nll(t(-1), t(4))
    assert_close(nll, t(0.25))
    assert_close(loss + 0.2 * nll, t(0.598139 + 0.05), atol=1e-6, rtol=0)


def test_ppo_clipped_objective() -> None:
    ratio = t(1.5, 1.5, 0.5, 0.5)
    advantages = t(2, -2, 2, -2)
    loss, clipped = ppo_policy_loss(
        ratio.log(), torch.zeros(4, dtype=torch.float64), advantages, 0.2
    )
    # ρA vs clip(ρ)A, the smaller kept: min(3, 2.4), min(-3, -2.4), min(1, 1.6), min(-1, -1.6).
    assert_close(loss, t(-2.4, 3.0, -1.0, 1.6))
    assert clipped.tolist() == [1.0, 0.0, 0.0, 1.0]


def test_clipped_value_loss_takes_the_larger_error() -> None:
    # Value 1.0 from 0.5 clipped to 0.7: max(½(1 - 2)², ½(0.7 - 2)²) = 0.845.
    assert_close(clipped_value_loss(t(1.0), t(0.5), t(2.0), 0.2), t(0.845))
    # Inside the clip range both errors agree.
    assert_close(clipped_value_loss(t(0.6), t(0.5), t(2.0), 0.2), t(0.5 * 1.4**2))


def test_gae_over_a_response_between_prompt_and_padding() -> None:
    mask = torch.tensor([[False, True, True, False]])
    rewards = t(0, 0.1, 1.0, 0).unsqueeze(0)
    values = t(9, 0.5, 0.25, 9).unsqueeze(0)  # prompt and padding values must not leak in
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.9)
    # t=2: δ = 1 - 0.25 = 0.75 (terminal next state); t=1: δ = 0.1 + 0.25 - 0.5 = -0.15,
    # A = -0.15 + 0.9 · 0.75 = 0.525. Returns are A + V.
    assert_close(advantages, t(0, 0.525, 0.75, 0).unsqueeze(0))
    assert_close(returns, t(0, 1.025, 1.0, 0).unsqueeze(0))


def test_gae_discount() -> None:
    mask = torch.ones(1, 2, dtype=torch.bool)
    advantages, _ = gae(t(0, 1).unsqueeze(0), t(0, 0).unsqueeze(0), mask, gamma=0.5, lam=1.0)
    assert_close(advantages, t(0.5, 1.0).unsqueeze(0))


def test_whiten() -> None:
    std = math.sqrt(1.25)
    assert_close(whiten(t(1, 2, 3, 4)), t(-1.5, -0.5, 0.5, 1.5) / std, atol=1e-6, rtol=0)
    # Statistics from the masked entries only; zero elsewhere.
    masked = whiten(t(1, 3, 100, 100), torch.tensor([True, True, False, False]))
    assert_close(masked, t(-1, 1, 0, 0), atol=1e-6, rtol=0)


def test_whiten_with_moments_summed_over_ranks_equals_whole_batch() -> None:
    whole = whiten(t(1, 2, 3, 7))
    other = t(3, 7)
    other_moments = torch.stack([other.sum(), (other * other).sum(), t(2)[0]])
    part = whiten(t(1, 2), reduce=lambda moments: moments + other_moments)
    assert_close(part, whole[:2])


def test_logit_inverts_the_sigmoid_and_stays_finite() -> None:
    assert_close(logit(torch.sigmoid(t(-3, 0, 2))), t(-3, 0, 2))
    assert torch.isfinite(logit(t(0.0, 1.0))).all()
    assert_close(logit(t(0.0)), t(math.log(1e-6) - math.log1p(-1e-6)))


def test_whitened_logit_of_probabilities() -> None:
    # Llama 2's R̃ = whiten(logit(R_c)): for R_c = σ(1), σ(2), σ(3) that is whiten(1, 2, 3).
    scores = whiten(logit(torch.sigmoid(t(1, 2, 3))))
    assert_close(scores, t(-1, 0, 1) * math.sqrt(1.5), atol=1e-6, rtol=0)


def test_piecewise_reward() -> None:
    helpfulness = t(0.9, 0.9, 0.9, 0.2)
    safety = t(0.8, 0.1, 0.8, 0.15)
    risky = torch.tensor([False, False, True, False])
    # safe and not risky: helpfulness; unsafe (< 0.15): safety; risky prompt: safety;
    # exactly 0.15 is not below the threshold.
    assert_close(piecewise_reward(helpfulness, safety, risky), t(0.9, 0.1, 0.8, 0.2))


def test_kl_penalised_rewards() -> None:
    mask = torch.tensor([[False, True, True, False]])
    logprobs = t(0, -1.0, -2.0, 0).unsqueeze(0)
    reference = t(0, -1.5, -1.0, 0).unsqueeze(0)
    rewards = kl_penalised_rewards(t(2.0), logprobs, reference, mask, beta=0.1)
    # -0.1 · 0.5 on the first response token; -0.1 · -1 plus the score 2 on the last.
    assert_close(rewards, t(0, -0.05, 2.1, 0).unsqueeze(0))
