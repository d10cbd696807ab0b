"""A tiny random model with SmolLM2's real tokenizer and chat template, for tests and benchmarks.

Two layers of width 64: a worker samples from it in milliseconds, while everything that reads
prompts (token counts, the chat format, special tokens) sees the real vocabulary. Its words are
noise: never serve it to annotators.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from modelcore.assets import smollm2_gguf_path
from modelcore.checkpoint import save_checkpoint
from modelcore.config import ModelConfig
from modelcore.model import LlamaLM, init_weights
from modelcore.tokenizer import Tokenizer


def tiny_config() -> ModelConfig:
    return dataclasses.replace(
        ModelConfig.from_name("smollm2-135m"),
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        intermediate_size=96,
        max_seq_len=1024,
    )


def save_tiny_model(directory: Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the tiny model's checkpoint to `directory` (the same weights for the same seed)."""
    torch.manual_seed(seed)
    model = LlamaLM(tiny_config())
    init_weights(model)
    tokenizer = Tokenizer.from_gguf(smollm2_gguf_path())
    return save_checkpoint(model, tokenizer, directory, overwrite=overwrite)
