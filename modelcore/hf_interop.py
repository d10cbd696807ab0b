"""Hugging Face Llama layout: read and write `config.json` + safetensors weights.

Hugging Face Llama checkpoints use rotate-half RoPE, as `modelcore.model` does, so q and k need
no permutation here; only the fused q/k/v and gate/up matrices are split and joined.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modelcore.checkpoint import CheckpointError, build_model, read_json
from modelcore.config import ConfigError, ModelConfig
from modelcore.model import LlamaLM
from modelcore.tokenizer import Tokenizer


def config_from_hf(hf: dict[str, Any], *, source: str = "config.json") -> ModelConfig:
    """Our config from a Hugging Face `LlamaConfig` dict; refuses what we do not implement."""
    if hf.get("model_type", "llama") not in ("llama", "mistral"):
        raise ConfigError(f"{source}: model_type {hf.get('model_type')!r} is not a Llama model")
    unsupported = {
        "hidden_act": (hf.get("hidden_act", "silu"), "silu"),
        "attention_bias": (hf.get("attention_bias", False), False),
        "mlp_bias": (hf.get("mlp_bias", False), False),
    }
    for key, (value, wanted) in unsupported.items():
        if value != wanted:
            raise ConfigError(f"{source}: {key}={value!r} is not supported (only {wanted!r})")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"{source}: RoPE scaling {rope!r} is not supported")
    try:
        config = ModelConfig(
            vocab_size=hf["vocab_size"],
            dim=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=hf["num_attention_heads"],
            n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"],
            max_seq_len=hf["max_position_embeddings"],
            rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        )
    except KeyError as missing:
        raise ConfigError(f"{source}: missing key {missing}") from None
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim != config.head_dim:
        raise ConfigError(f"{source}: head_dim {head_dim} != hidden_size / num_attention_heads")
    return config


def config_to_hf(
    config: ModelConfig,
    *,
    bos_id: int | None,
    eos_id: int | None,
    pad_id: int | None,
    dtype: torch.dtype,
) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.dim,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_seq_len,
        "rope_theta": config.rope_base,
        "rms_norm_eps": config.norm_eps,
        "tie_word_embeddings": config.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def state_dict_from_hf(hf: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """`LlamaForCausalLM` tensor names to ours, fusing q/k/v and gate/up."""
    hf = dict(hf)

    def take(name: str) -> torch.Tensor:
        try:
            return hf.pop(name)
        except KeyError:
            raise CheckpointError(f"checkpoint has no tensor {name!r}") from None

    ours = {
        "decoder.embed.weight": take("model.embed_tokens.weight"),
        "decoder.norm.weight": take("model.norm.weight"),
    }
    for i in range(config.n_layers):
        src, dst = f"model.layers.{i}.", f"decoder.layers.{i}."
        ours[dst + "attention.wqkv.weight"] = torch.cat(
            [take(src + f"self_attn.{p}_proj.weight") for p in "qkv"]
        )
        ours[dst + "attention.wo.weight"] = take(src + "self_attn.o_proj.weight")
        ours[dst + "feed_forward.w13.weight"] = torch.cat(
            [take(src + "mlp.gate_proj.weight"), take(src + "mlp.up_proj.weight")]
        )
        ours[dst + "feed_forward.w2.weight"] = take(src + "mlp.down_proj.weight")
        ours[dst + "attention_norm.weight"] = take(src + "input_layernorm.weight")
        ours[dst + "ffn_norm.weight"] = take(src + "post_attention_layernorm.weight")
    if config.tie_embeddings:
        hf.pop("lm_head.weight", None)  # some tied checkpoints store the copy anyway
    else:
        ours["lm_head.weight"] = take("lm_head.weight")
    # Buffers some writers save; everything else left over means a different architecture.
    leftover = [name for name in hf if not name.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise CheckpointError(f"checkpoint has tensors this architecture lacks: {leftover[:5]}")
    return ours


def state_dict_to_hf(model: LlamaLM) -> dict[str, torch.Tensor]:
    config = model.config
    kv_dim = config.n_kv_heads * config.head_dim
    hf = {
        "model.embed_tokens.weight": model.decoder.embed.weight,
        "model.norm.weight": model.decoder.norm.weight,
    }
    for i, layer in enumerate(model.decoder.layers):
        dst = f"model.layers.{i}."
        q, k, v = layer.attention.wqkv.weight.split([config.dim, kv_dim, kv_dim])
        gate, up = layer.feed_forward.w13.weight.chunk(2)
        hf |= {
            dst + "self_attn.q_proj.weight": q,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v,
            dst + "self_attn.o_proj.weight": layer.attention.wo.weight,
            dst + "mlp.gate_proj.weight": gate,
            dst + "mlp.up_proj.weight": up,
            dst + "mlp.down_proj.weight": layer.feed_forward.w2.weight,
            dst + "input_layernorm.weight": layer.attention_norm.weight,
            dst + "post_attention_layernorm.weight": layer.ffn_norm.weight,
        }
    if not config.tie_embeddings:
        hf["lm_head.weight"] = model.lm_head.weight
    return {name: t.detach().contiguous() for name, t in hf.items()}


def read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a HF directory: one safetensors file or a sharded, indexed set."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
    elif (directory / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise CheckpointError(f"{directory}: no model.safetensors (or index) found")
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = directory / shard
        try:
            tensors |= load_file(path)
        except (OSError, SafetensorError) as error:
            raise CheckpointError(f"{path}: cannot read safetensors weights: {error}") from error
    return tensors


def load_hf_model(
    directory: str | Path, *, dtype: torch.dtype = torch.float32
) -> tuple[LlamaLM, Tokenizer]:
    """A policy and its tokenizer from a Hugging Face Llama-layout directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: directory not found")
    config = config_from_hf(
        read_json(directory / "config.json"), source=str(directory / "config.json")
    )
    model = build_model(config, state_dict_from_hf(read_hf_weights(directory), config), dtype)
    return model, Tokenizer.load(directory)


def save_hf_model(model: LlamaLM, tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write the layout `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer` read."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = next(model.parameters()).dtype
    hf_config = config_to_hf(
        model.config,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        dtype=dtype,
    )
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(state_dict_to_hf(model), directory / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save(directory)
    return directory
