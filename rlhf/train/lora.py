"""LoRA (Hu et al. 2021): a frozen linear layer plus a trainable low-rank update B·A.

The update is merged into the weight whenever a model is written out, so checkpoints are plain
modelcore models that sample as fast as any other.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# The linear layers of a modelcore block: fused q/k/v, attention output, fused gate/up, down.
TARGETS = ("wqkv", "wo", "w13", "w2")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        like = {"dtype": base.weight.dtype, "device": base.weight.device}
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, **like))
        # B starts at zero, so the adapted model starts exactly as the base model.
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, **like))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # nn.Linear's own initialisation
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def add_lora(block: nn.Module, rank: int, alpha: float) -> None:
    """Replace the target linear layers of one decoder block by LoRA layers, in place."""
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if name in TARGETS and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, alpha))


def merged_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state`, the full state dict of `model`, with every LoRA layer merged into its weight,
    under the plain layer's names."""
    scales = {name: m.scale for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    merged = {}
    for name, tensor in state.items():
        prefix, _, leaf = name.rpartition(".")
        owner = prefix.removesuffix(".base")
        if owner in scales:
            if leaf == "weight" and prefix.endswith(".base"):
                update = state[f"{owner}.lora_b"] @ state[f"{owner}.lora_a"]
                merged[f"{owner}.weight"] = tensor + update * scales[owner]
            continue  # lora_a, lora_b
        merged[name] = tensor
    return merged
