"""An iteration's hyper-parameters: per stage, the fields a researcher may set, their defaults
for the device the loop trains on, and the check of what a researcher sends.

The stage configs of `rlhf.train` are the one definition of every field (type, paper default,
help); this module only says which of them the pipeline fills in itself (paths, the device) and
which defaults differ on a CPU-only installation, where the cheap modes (the top decoder blocks
only, small batches, short responses) let one iteration on a small workload finish in minutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rlhf.train import DPOConfig, EvalConfig, PPOConfig, RejectionConfig, RewardConfig
from rlhf.train.configs import ConfigError, build_config, config_fields

# The stage name in `Iteration.hyperparameters` -> the config it fills.
STAGE_CONFIGS: dict[str, type] = {
    "reward": RewardConfig,
    "rejection_sampling": RejectionConfig,
    "ppo": PPOConfig,
    "dpo": DPOConfig,
    "evaluate": EvalConfig,
}

# Set by the pipeline for every step: where the data, the models and the run directory are.
PIPELINE_FIELDS = frozenset(
    {
        "data",
        "policy",
        "baseline",
        "out",
        "helpfulness_rm",
        "safety_rm",
        "previous_best",
        "target",
        "device",
        "strategy",
    }
)

# Defaults on a GPU are the stage configs' own (the papers'), with resume checkpoints on.
_GPU = {stage: {"checkpoint_every": 50} for stage in STAGE_CONFIGS if stage != "evaluate"}

# Two CPU cores: the top two blocks train, batches of a few pairs, responses of a few dozen
# tokens, a resume checkpoint every few steps (a step takes seconds, not milliseconds).
_CPU_TRAINING = {"train_layers": 2, "checkpoint_every": 4, "max_seq_len": 512}
_CPU_SAMPLING = {"max_new_tokens": 48, "generation_batch_size": 8, "score_batch_size": 8}
_CPU = {
    "reward": {**_CPU_TRAINING, "batch_size": 8, "micro_batch_size": 4, "eval_batch_size": 8},
    "rejection_sampling": {
        **_CPU_TRAINING,
        **_CPU_SAMPLING,
        "samples": 4,
        "epochs": 1,
        "batch_size": 4,
        "micro_batch_size": 2,
    },
    "ppo": {
        **_CPU_TRAINING,
        **_CPU_SAMPLING,
        "steps": 4,
        "batch_size": 8,
        "minibatch_size": 4,
        "micro_batch_size": 2,
        "eval_every": 2,
    },
    "dpo": {**_CPU_TRAINING, "batch_size": 4, "micro_batch_size": 2, "eval_batch_size": 8},
    "evaluate": dict(_CPU_SAMPLING),
}


class HyperparameterError(ValueError):
    """Hyper-parameters that cannot be used; `field` names the offender ("ppo.kl_beta")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def device_defaults(device: str) -> dict[str, dict[str, Any]]:
    """The loop's defaults per stage on `device` (beyond the stage configs' own)."""
    chosen = _CPU if device == "cpu" else _GPU
    return {stage: dict(chosen.get(stage, {})) for stage in STAGE_CONFIGS}


def validate(hyperparameters: Any) -> dict[str, dict[str, Any]]:
    """Check what a researcher sent: a mapping of stage -> {field: value}, each field one the
    stage's config has and the pipeline does not set itself, each value of the field's type.
    Returns it normalised (values as the config holds them, JSON-ready)."""
    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, Mapping):
        raise HyperparameterError("hyperparameters", "must be an object of stage -> fields")
    checked: dict[str, dict[str, Any]] = {}
    for stage, values in hyperparameters.items():
        config_class = STAGE_CONFIGS.get(stage)
        if config_class is None:
            raise HyperparameterError(
                stage, f"unknown stage; expected one of {', '.join(STAGE_CONFIGS)}"
            )
        if not isinstance(values, Mapping):
            raise HyperparameterError(stage, "must be an object of field -> value")
        fields = {f.name for f in dataclasses.fields(config_class)}
        for name in values:
            if name in PIPELINE_FIELDS and name in fields:
                raise HyperparameterError(f"{stage}.{name}", "is set by the pipeline itself")
        checked[stage] = _normalised(stage, config_class, values)
    return checked


def stage_config(
    stage: str, device: str, given: Mapping[str, dict[str, Any]], **pipeline: Any
) -> Any:
    """The config a step runs with: the stage config's defaults, then the device's, then the
    researcher's, then the pipeline's own fields (paths, the device)."""
    values = {**device_defaults(device)[stage], **given.get(stage, {}), **pipeline}
    return _build(stage, STAGE_CONFIGS[stage], {"device": device, **values})


def describe() -> dict[str, list[dict[str, Any]]]:
    """Per stage, the fields a researcher may set: name, type, default, help (for the API)."""
    return {
        stage: [f for f in config_fields(config) if f["name"] not in PIPELINE_FIELDS]
        for stage, config in STAGE_CONFIGS.items()
    }


def _normalised(stage: str, config_class: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` converted by the stage config's own types (a config with placeholder paths
    checks them), as JSON-ready values."""
    placeholders = {
        f["name"]: "."
        for f in config_fields(config_class)
        if f["name"] in PIPELINE_FIELDS and f["required"]
    }
    config = _build(stage, config_class, {**placeholders, **values})
    return {name: config.to_json()[name] for name in values}


def _build(stage: str, config_class: type, values: Mapping[str, Any]) -> Any:
    try:
        return build_config(config_class, values)
    except ConfigError as error:
        raise HyperparameterError(f"{stage}.{error.field}", error.message) from None
