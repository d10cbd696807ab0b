"""The LM head's log-probabilities chunk by chunk (logits recomputed in the backward pass) equal
those computed at once, values and gradients."""

from __future__ import annotations

import pytest
import torch

from rlhf.train import encoding
from rlhf.train.encoding import token_logprobs
from tests.rlhf_train.train_fixtures import tiny_policy


def logprobs_and_grads(chunk: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(encoding, "LOGITS_CHUNK", chunk)
    policy = tiny_policy(vocab_size=64).train()
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 64, (3, 40), generator=generator)
    targets = torch.rand(3, 40, generator=generator) < 0.7
    out = token_logprobs(policy, tokens, targets)
    out.sum().backward()
    with torch.no_grad():
        frozen = token_logprobs(policy, tokens, targets)
    return out.detach(), frozen, {n: p.grad for n, p in policy.named_parameters()}


def test_chunked_head_log_probabilities_equal_those_at_once(monkeypatch) -> None:
    whole, whole_frozen, whole_grads = logprobs_and_grads(10_000, monkeypatch)
    chunked, chunked_frozen, chunked_grads = logprobs_and_grads(7, monkeypatch)  # 12+ chunks
    assert (whole != 0).sum() > 7 * 10  # many chunks' worth of targets
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked_frozen, whole_frozen, rtol=0, atol=1e-6)
    assert whole_grads.keys() == chunked_grads.keys()
    for name, grad in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
