"""CPU sampling modes: every linear layer swapped for a faster inference-only one, in place.

Decoding is bound by streaming the weights from memory once per token, and by per-call overhead.
- float32 (default): weights pre-packed once into oneDNN's blocked layout (the private
  `torch.ops.mkldnn` linear ops PyTorch's own inductor uses on CPU). Plain `F.linear` goes through
  MKL's matrix-vector path, which here reads weights at about half the rate the packed kernel
  does (the LM head: 9.3 ms against 4.8 ms per token at batch 1; 23.6 against 8.7 at batch 8).
- int8: int8 weights with one float32 scale per output channel, a quarter of float32's bytes;
  activations stay float32, because quantizing them too (FBGEMM's dynamic int8 linear) wrecks
  SmolLM2, whose activations have outlier channels (half of the greedy predictions change).
  PyTorch's own weight-only int8 CPU kernel (`_weight_int8pack_mm`) is several times slower than
  float32 on AVX2 machines, so the product is a small AVX2 kernel (`kernels/int8_linear.cpp`),
  compiled with PyTorch's C++ extension builder the first time the mode is used (about 30 s;
  cached afterwards). A block's one-token decoding step runs as one call of that extension
  (`Int8Block`): eagerly its twenty-odd small operators cost more in dispatch than in arithmetic.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

import torch
from torch import nn
from torch.utils.cpp_extension import load_inline

from modelcore.model import Block, KVCache, LlamaLM
from modelcore.segments import Segments

# Compiled as one extension, the block's step calling the linear kernel's matrix product.
_KERNEL_SOURCES = [
    Path(__file__).parent / "kernels" / name
    for name in ("int8_linear.cpp", "int8_decode_block.cpp")
]


def int8_supported() -> bool:
    """Whether this CPU runs the int8 kernel (it is written for AVX2)."""
    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


@functools.cache
def int8_kernel() -> ModuleType:
    """The compiled kernel; an error on CPUs without AVX2."""
    if not int8_supported():
        capability = torch.backends.cpu.get_cpu_capability()
        raise RuntimeError(f"int8 sampling mode needs an AVX2 CPU; this one offers {capability}")
    return load_inline(
        name="tandem_int8",
        cpp_sources=[source.read_text() for source in _KERNEL_SOURCES],
        functions=["int8_linear", "int8_decode_block"],
        # at::parallel_for is an OpenMP loop in a header: without -fopenmp it runs on one thread.
        extra_cflags=["-O3", "-mavx2", "-mfma", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
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
        int8_kernel()  # compile (or load) the kernel now rather than at the first token

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float()
        # The extension's function itself, not a registered PyTorch operator: an operator's
        # Python dispatch costs about 15 us a call, 1.8 ms of a SmolLM2 token's 120 calls.
        out = int8_kernel().int8_linear(flat, self.weight, self.scale)
        return out.reshape(*x.shape[:-1], -1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, int8"


class Int8Block(nn.Module):
    """A decoder block of `Int8Linear` layers whose one-token decoding step is one call of the
    kernel (`kernels/int8_decode_block.cpp`); a prefill runs the block as it is."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.block = block

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | Segments | None,
        cache: KVCache | None,
        slots: torch.Tensor | None,
    ) -> torch.Tensor:
        if cache is None or slots is None or not isinstance(mask, torch.Tensor) or x.shape[1] != 1:
            return self.block(x, rope, mask, cache, slots)
        block = self.block
        attention, feed_forward = block.attention, block.feed_forward
        cos, sin = rope
        return int8_kernel().int8_decode_block(
            x.contiguous(),
            cos.contiguous(),
            sin.contiguous(),
            mask.contiguous(),
            int(slots),
            cache.k,
            cache.v,
            block.attention_norm.weight,
            block.attention_norm.eps,
            attention.wqkv.weight,
            attention.wqkv.scale,
            attention.wo.weight,
            attention.wo.scale,
            block.ffn_norm.weight,
            block.ffn_norm.eps,
            feed_forward.w13.weight,
            feed_forward.w13.scale,
            feed_forward.w2.weight,
            feed_forward.w2.scale,
            attention.n_heads,
        )


class PackedLinear(nn.Module):
    """A bias-free float32 `nn.Linear` with its weight in oneDNN's blocked layout."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        if linear.bias is not None:
            raise ValueError("PackedLinear supports bias-free layers only")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # The batch-size hint picks the blocking. Measured here, a hint of 8 is as fast as 1 for
        # one row and 1.6x faster for eight (the batch that samples annotators' pairs).
        self._packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, None, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"


def prepare_for_cpu_sampling(model: LlamaLM, *, int8: bool = False) -> LlamaLM:
    """Swap every linear layer of a float32 CPU policy for `PackedLinear` (or `Int8Linear`,
    and every block for an `Int8Block`), in place; returns the model, which can then sample but
    no longer train.

    The token embedding stays as it is: a lookup reads one row, not the whole table.
    """
    weight = model.decoder.embed.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise ValueError(
            f"CPU sampling modes need a float32 model on the CPU, not {weight.dtype} on "
            f"{weight.device.type}"
        )
    layer = Int8Linear if int8 else PackedLinear
    model.requires_grad_(False)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.Linear):
                setattr(module, name, layer(child))
    if int8:
        model.decoder.layers = nn.ModuleList(Int8Block(block) for block in model.decoder.layers)
    return model
