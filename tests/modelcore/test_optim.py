from __future__ import annotations

import dataclasses

import pytest
import torch

from modelcore.config import ModelConfig
from modelcore.model import LlamaLM, RMSNorm
from modelcore.optim import estimate_mfu, flops_per_token, make_adamw, param_groups

TINY = ModelConfig.from_name(
    "smollm2-135m",
    vocab_size=10,
    dim=8,
    n_layers=2,
    n_heads=2,
    n_kv_heads=1,
    intermediate_size=12,
    max_seq_len=16,
)


@pytest.mark.parametrize("tied", [True, False])
def test_groups_hold_every_parameter_once(tied: bool) -> None:
    model = LlamaLM(dataclasses.replace(TINY, tie_embeddings=tied))
    decay, no_decay = param_groups(model, 0.1)
    grouped = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters()}  # parameters() dedups ties
    if tied:
        assert sum(p is model.lm_head.weight for p in decay["params"]) == 1


def test_norms_are_not_decayed_and_matrices_are() -> None:
    model = LlamaLM(TINY)
    decay, no_decay = param_groups(model, 0.1)
    norms = {id(m.weight) for m in model.modules() if isinstance(m, RMSNorm)}
    assert {id(p) for p in no_decay["params"]} == norms
    assert no_decay["weight_decay"] == 0.0
    assert decay["weight_decay"] == 0.1
    assert all(p.dim() == 2 for p in decay["params"])


def test_frozen_parameters_are_left_out() -> None:
    model = LlamaLM(TINY)
    model.decoder.embed.requires_grad_(False)  # tied: the LM head freezes with it
    grouped = {id(p) for group in param_groups(model, 0.1) for p in group["params"]}
    assert id(model.decoder.embed.weight) not in grouped
    assert id(model.decoder.layers[0].attention.wqkv.weight) in grouped


def test_adamw_decays_matrices_only() -> None:
    """With zero gradients, AdamW's only change is the decoupled decay w -= lr * wd * w."""
    model = LlamaLM(TINY)
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    with torch.no_grad():
        model.decoder.norm.weight.fill_(2.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_adamw(model, lr=0.5, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6)
    assert optimizer.defaults["betas"] == (0.8, 0.9) and optimizer.defaults["eps"] == 1e-6
    assert optimizer.defaults["fused"]  # PyTorch has a fused AdamW for CPU tensors
    optimizer.step()
    for name, param in model.named_parameters():
        scale = 1 - 0.5 * 0.1 if param.dim() >= 2 else 1.0
        torch.testing.assert_close(param.detach(), before[name] * scale)


def test_flops_per_token_by_hand() -> None:
    # head_dim 4, kv width 4. Per layer: q 8*8 + k 8*4 + v 8*4 + o 8*8 = 192,
    # gate/up/down 3*8*12 = 288, two norms 2*8 = 16: 496. Two layers 992, final norm 8,
    # LM head 10*8 = 80: N = 1080. Attention at T=16: 12 * 2 layers * 2 heads * 4 * 16 = 3072.
    assert flops_per_token(TINY, 16) == 6 * 1080 + 3072
    # The LM head costs the same FLOPs whether or not it shares the embedding's weights.
    untied = dataclasses.replace(TINY, tie_embeddings=False)
    assert flops_per_token(untied, 16) == flops_per_token(TINY, 16)


def test_estimate_mfu() -> None:
    assert estimate_mfu(TINY, 16, tokens_per_s=1000.0, peak_flops=1e9) == pytest.approx(
        (6 * 1080 + 3072) * 1000 / 1e9
    )
