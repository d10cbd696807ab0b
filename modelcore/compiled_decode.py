"""Sampling with the one-token decoding step compiled: the GPU serving path (gpt-fast's recipe).

Decoding one token of a small model is hundreds of tiny kernels, so on a GPU its time is kernel
launches, not arithmetic. `torch.compile` fuses the step, and on CUDA its "reduce-overhead" mode
records it as a CUDA graph that is replayed with one launch per token. A graph is recorded
against fixed buffers, so the model keeps its KV caches between calls of the same shape
(`Decoder.keep_caches`), and the step sees tensors, never Python ints, for positions.

The prefill runs eagerly: its length changes with every prompt, and recompiling for each would
cost more than it saves.
"""

from __future__ import annotations

from typing import Any

import torch

from modelcore.model import LlamaLM


class CompiledDecoding:
    """A policy whose decoding step is compiled; pass it to `modelcore.sampling.generate`.

    `generate` needs only `config`, `decoder` and the call. The first call at a new batch size
    or total length compiles (tens of seconds); later calls of that shape replay.
    """

    def __init__(self, model: LlamaLM, *, mode: str | None = None) -> None:
        self.model = model
        self.config = model.config
        self.decoder = model.decoder
        self.decoder.keep_caches = True
        self.cuda_graphs = mode is None and model.decoder.embed.weight.device.type == "cuda"
        self._step = torch.compile(model, mode="reduce-overhead" if self.cuda_graphs else mode)

    def __call__(self, tokens: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if tokens.shape[1] != 1:
            return self.model(tokens, **kwargs)
        if self.cuda_graphs:
            # Each token is a new step of the recorded graph: its previous outputs (the last
            # logits, already sampled from) may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        return self._step(tokens, **kwargs)
