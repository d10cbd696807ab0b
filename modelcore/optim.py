"""AdamW with weight-decay groups, and the FLOP count behind MFU (nanoGPT style).

Weight decay applies to matrices (linear weights, embeddings) and not to norm gains: decaying
a gain towards zero shrinks the whole normalised activation, which is not a regulariser.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from modelcore.config import ModelConfig

# Device types with a fused AdamW kernel (CPU gained one in PyTorch 2.4): one kernel launch per
# parameter group instead of one per operation per tensor.
_FUSED_ADAMW_DEVICES = frozenset({"cuda", "cpu", "xpu", "mps"})


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decay on weights of 2 or more dimensions, none on norms and biases.

    `named_parameters` yields a tied weight (embedding = LM head) once, so it is updated once.
    Frozen parameters are left out.
    """
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_adamw(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused where the parameters' device has the kernel."""
    groups = param_groups(model, weight_decay)
    devices = {p.device.type for group in groups for p in group["params"]}
    fused = bool(devices) and devices <= _FUSED_ADAMW_DEVICES
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12·L·H·Q·T.

    N is every non-embedding parameter plus the LM head, tied or not: the head is a matrix
    product at every position, while the embedding is a lookup that costs no FLOPs. 12·L·H·Q·T
    is the attention scores and their weighted sum over a context of T tokens.
    """
    head = config.vocab_size * config.dim
    n = config.num_params(include_embedding=False) + (head if config.tie_embeddings else 0)
    attention = 12 * config.n_layers * config.n_heads * config.head_dim * seq_len
    return 6 * n + attention


def estimate_mfu(
    config: ModelConfig, seq_len: int, tokens_per_s: float, peak_flops: float
) -> float:
    """Model FLOPs utilisation: achieved training FLOP/s over the hardware's peak."""
    return flops_per_token(config, seq_len) * tokens_per_s / peak_flops
