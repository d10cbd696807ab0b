"""Tandem's training stages on modelcore: SFT, reward models, rejection sampling, PPO, DPO and
evaluation, as the Llama 2 and Llama 3 papers run them. Pure PyTorch: no Django import here.

Every stage is one function taking a typed config dataclass and an optional progress callback,
returning its metrics as a JSON-ready dict (also written to the run directory):

    from rlhf.train import RewardConfig, train_reward_model

    def progress(step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        row.update(step=step, total=total, loss=loss)   # e.g. the Celery task's database row
        return row.cancel_requested                     # True stops the run (resumable)

    metrics = train_reward_model(
        RewardConfig(data="train.jsonl", policy="models/v3", out="runs/rm-help-7",
                     target="helpfulness", train_layers=4, checkpoint_every=50),
        progress,
    )
    metrics["heldout"]["accuracy_by_strength"]

| function                  | config            | writes to config.out                           |
| ------------------------- | ----------------- | ---------------------------------------------- |
| `run_sft`                 | `SFTConfig`       | model/, metrics.json                           |
| `train_reward_model`      | `RewardConfig`    | model/ (a scalar checkpoint), metrics.json     |
| `run_rejection_sampling`  | `RejectionConfig` | best.jsonl, samples.pt, model/, metrics.json   |
| `run_ppo`                 | `PPOConfig`       | model/ (best on held-out prompts), metrics.json |
| `run_dpo`                 | `DPOConfig`       | reference_logprobs.pt, model/, metrics.json    |
| `evaluate_policy`         | `EvalConfig`      | eval.json                                      |

model/ is a Tandem checkpoint (`modelcore.checkpoint`), written atomically and only when the
stage completes, with LoRA adapters merged. Input files are JSONL in the annotation export's
format, validated before anything else happens (`rlhf.train.data`; a bad line raises
`DataError` naming the file and line).

Run directory and resume: with `checkpoint_every=N` the training state is saved to
out/resume.pt every N steps, and when the callback asks to stop. Calling the same function
with the same config again resumes from there and ends with the result of an uninterrupted run.
A stopped run returns `{"stopped": True, "history": [...]}`. Every step's loss and metrics also
go to TensorBoard event files in out/tensorboard/.

Progress phases: the callback's `metrics.phase` is "train" (optimizer steps), "sample" (the
generation chunks of rejection sampling and evaluation; loss NaN) or "heldout" (PPO's held-out
evaluation); a stop while sampling ends the stage within one chunk (see `runs.Progress`).

Configs from plain values: `rlhf.train.configs.build_config(RewardConfig, {"batch-size": "16",
...})` converts and checks them, raising `ConfigError` (`.field`, `.message`); `config_fields`
describes every field (name, type, required, default, help).

Cheap modes: `train_layers=N` trains the top N decoder blocks only; `lora_rank=r` trains LoRA
adapters instead of the weights.

Command line: `python -m rlhf.train {sft,reward,rejection,ppo,dpo,eval} --help`; the options
are the config fields, and `--config FILE` (YAML or JSON) gives them from a file. Data parallel: `torchrun --nproc-per-node N -m rlhf.train ...` (DDP on
CPU with gloo or on GPUs with NCCL; `--strategy fsdp` shards per decoder block, for every stage
but PPO, which samples between steps). The
Python functions work under torchrun the same way.
"""

import importlib
from typing import Any

# Each public name and the module that defines it, imported on first use: the web app imports
# `rlhf.train.data` (the training-row contract) and must not pay for loading every stage.
_EXPORTS = {
    "DataError": "data",
    "DPOConfig": "dpo",
    "run_dpo": "dpo",
    "EvalConfig": "evaluate",
    "evaluate_policy": "evaluate",
    "PPOConfig": "ppo",
    "run_ppo": "ppo",
    "RejectionConfig": "rejection",
    "run_rejection_sampling": "rejection",
    "RewardConfig": "reward",
    "train_reward_model": "reward",
    "PhaseMetrics": "runs",
    "Progress": "runs",
    "SFTConfig": "sft",
    "run_sft": "sft",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
