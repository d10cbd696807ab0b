"""Which weights a run trains (the cheap modes), and the plain model it writes out.

- all of them (the default);
- the top N decoder blocks only (`train_layers=N`): the final norm and, for a reward or value
  model, the new scalar head train too; the embedding stays frozen (SmolLM2 ties it to the LM
  head, so training it would change the bottom of the network as well). Nothing below the top
  blocks needs gradients, so the backward pass stops there;
- LoRA adapters (`lora_rank=r`) on the linear layers of the trained blocks, everything else
  frozen but a scalar head; merged into the weights when the model is written.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from modelcore.checkpoint import build_model
from modelcore.model import LlamaLM, ScalarModel
from rlhf.train.lora import add_lora, merged_state_dict


def select_trainable(
    model: LlamaLM | ScalarModel, *, train_layers: int, lora_rank: int, lora_alpha: float
) -> None:
    """Freeze `model` but for the chosen part, adding LoRA layers where asked (in place)."""
    layers = model.decoder.layers
    if not 0 <= train_layers <= len(layers):
        raise ValueError(f"train_layers must be 0 (all) to {len(layers)}, got {train_layers}")
    if lora_rank < 0:
        raise ValueError(f"lora_rank must be >= 0, got {lora_rank}")
    top = layers[len(layers) - train_layers :] if train_layers else layers
    if not train_layers and not lora_rank:
        model.requires_grad_(True)
        return
    model.requires_grad_(False)
    for block in top:
        if lora_rank:
            add_lora(block, lora_rank, lora_alpha)  # the adapters alone train
        else:
            block.requires_grad_(True)
    if not lora_rank:
        model.decoder.norm.requires_grad_(True)
    if isinstance(model, ScalarModel):
        model.score.requires_grad_(True)


_GATHERED = StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict as ordinary tensors on the CPU. Under FSDP every rank must call it:
    the shards are gathered from all of them, and rank 0 alone receives the result (the other
    ranks get an empty dict)."""
    return get_model_state_dict(model, options=_GATHERED)


def plain_copy(
    model: LlamaLM | ScalarModel, state: dict[str, torch.Tensor]
) -> LlamaLM | ScalarModel:
    """A model without adapters holding `state`, `model`'s full state dict (see
    `full_state_dict`), with LoRA merged: what a run writes out."""
    merged = {name: t.detach().clone() for name, t in merged_state_dict(model, state).items()}
    if isinstance(model, LlamaLM) and model.config.tie_embeddings:
        merged.pop("lm_head.weight", None)
    dtype = next(iter(merged.values())).dtype
    return build_model(model.config, merged, dtype, cls=type(model))


def count_parameters(model: nn.Module) -> dict[str, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"parameters": sum(p.numel() for p in model.parameters()), "trainable": trainable}


def freeze(model: nn.Module) -> nn.Module:
    """A frozen model in eval mode: the reference policy and the judging reward models."""
    return model.requires_grad_(False).eval()
