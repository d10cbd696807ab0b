"""int8 weight-only sampling mode, for serving annotators on CPUs.

Decoding one sequence is bound by streaming the weights from memory, and int8 weights are a
quarter of float32. Each output channel gets its own symmetric scale; activations stay float32,
because quantizing them too (FBGEMM's dynamic int8 linear) wrecks SmolLM2, whose activations have
outlier channels (half of the greedy predictions change). PyTorch's own weight-only int8 CPU kernel
(`_weight_int8pack_mm`) is several times slower than float32 on AVX2 machines, so the matrix-vector
product is a small AVX2 kernel (`kernels/int8_linear.cpp`), compiled with PyTorch's C++ extension
builder the first time the mode is used (about 30 s; cached afterwards). Inference only.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.utils.cpp_extension import load_inline

from modelcore.model import LlamaLM

_KERNEL_SOURCE = Path(__file__).parent / "kernels" / "int8_linear.cpp"


@functools.cache
def int8_kernel() -> ModuleType:
    """The compiled kernel; an error on CPUs without AVX2 (the kernel is written for it)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        raise RuntimeError(f"int8 sampling mode needs an AVX2 CPU; this one offers {capability}")
    return load_inline(
        name="tandem_int8_linear",
        cpp_sources=[_KERNEL_SOURCE.read_text()],
        functions=["int8_linear"],
        extra_cflags=["-O3", "-mavx2", "-mfma"],
    )


class Int8Linear(nn.Module):
    """A bias-free `nn.Linear` with int8 weights and one float32 scale per output channel."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Int8Linear supports bias-free layers only")
        weight = linear.weight.detach().float().cpu()
        scale = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.register_buffer("weight", (weight / scale[:, None]).round().to(torch.int8))
        self.register_buffer("scale", scale)
        self._kernel = int8_kernel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float()
        out = self._kernel.int8_linear(flat, self.weight, self.scale)
        return out.reshape(*x.shape[:-1], -1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, int8"


def quantize_int8(model: LlamaLM) -> LlamaLM:
    """Replace every linear layer of a CPU policy by `Int8Linear`, in place; returns the model.

    The token embedding stays float32: a lookup reads one row, not the whole table.
    """
    if model.decoder.embed.weight.device.type != "cpu":
        raise ValueError("int8 sampling mode runs on CPU only")
    model.requires_grad_(False)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, Int8Linear(child))
    return model
