"""int8 sampling mode for serving annotators on CPUs.

Decoding one sequence is bound by streaming the weights from memory; int8 weights are a quarter of
float32. Weights are quantized per output channel (symmetric). On this PyTorch the fast CPU path
for int8 weights is FBGEMM's dynamic linear, which also quantizes each activation row to int8 on
the fly (per-row scale) and accumulates in int32; PyTorch's weight-only int8 kernel
(`_weight_int8pack_mm`) is several times slower than float32 on AVX2 CPUs. Inference only.
"""

from __future__ import annotations

import torch
from torch import nn

from modelcore.model import LlamaLM


class Int8Linear(nn.Module):
    """A bias-free `nn.Linear` with per-output-channel int8 weights, for inference."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear supports bias-free layers only")
        weight = linear.weight.detach().float().cpu()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        zero_points = torch.zeros(self.out_features, dtype=torch.long)
        quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        self._packed = torch.ops.quantized.linear_prepack(quantized, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        # reduce_range: 7-bit activations, because AVX2's u8*s8 multiply-add saturates int16
        # with full 8-bit ranges on both sides (the output is then garbage, not just noisy).
        out = torch.ops.quantized.linear_dynamic(
            x.reshape(-1, shape[-1]).float(), self._packed, reduce_range=True
        )
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: LlamaLM) -> LlamaLM:
    """Replace every linear layer of a CPU policy by `Int8Linear`, in place; returns the model.

    The token embedding stays in float: a lookup reads one row, not the whole table.
    """
    if model.decoder.embed.weight.device.type != "cpu":
        raise ValueError("int8 sampling mode runs on CPU only")
    model.requires_grad_(False)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child))
    return model
