"""`python -m rlhf.train STAGE --option value ...`: every stage from the command line.

The options are the fields of the stage's config dataclass (underscores become dashes), so the
command line and the Python API cannot drift apart; `--config FILE` reads them from a YAML or
JSON file instead, and the options given beside it override the file's values. Progress shows as a tqdm bar on stderr;
the metrics, less the per-step history, are printed as JSON on stdout. Run it under
`torchrun --nproc-per-node N -m rlhf.train ...` for data parallelism.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist
from tqdm import tqdm

from rlhf.train.configs import build_config, config_fields, read_config_file
from rlhf.train.dpo import DPOConfig, run_dpo
from rlhf.train.evaluate import EvalConfig, evaluate_policy
from rlhf.train.ppo import PPOConfig, run_ppo
from rlhf.train.rejection import RejectionConfig, run_rejection_sampling
from rlhf.train.reward import RewardConfig, train_reward_model
from rlhf.train.runs import TRAIN, RunConfig
from rlhf.train.sft import SFTConfig, run_sft

STAGES: dict[str, tuple[type[RunConfig], Callable[..., dict[str, Any]]]] = {
    "sft": (SFTConfig, run_sft),
    "reward": (RewardConfig, train_reward_model),
    "rejection": (RejectionConfig, run_rejection_sampling),
    "ppo": (PPOConfig, run_ppo),
    "dpo": (DPOConfig, run_dpo),
    "eval": (EvalConfig, evaluate_policy),
}


class TqdmProgress:
    """A progress callback drawing a tqdm bar per phase (see `Progress`); it never asks to stop."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.bar: tqdm | None = None
        self.phase: str | None = None

    def __call__(self, step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        phase = getattr(metrics, "phase", TRAIN)
        if self.bar is None or phase != self.phase or total != self.bar.total or step <= self.bar.n:
            self.close()  # a new phase, or the same again (evaluation samples twice)
            description = self.stage if phase == TRAIN else f"{self.stage} {phase}"
            self.bar = tqdm(total=total, initial=step - 1, desc=description, file=sys.stderr)
            self.phase = phase
        self.bar.update(step - self.bar.n)
        if not math.isnan(loss):
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        return False

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """--config FILE and a flag per config field. A flag's value stays as given (a string, for
    `build_config` to convert) and is set only when the flag is, so that it overrides the file."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML or JSON file of field values (dashes or underscores); flags override it",
    )
    for field in config_fields(config_class):
        given = "required" if field["required"] else f"default: {field['default']}"
        options: dict[str, Any] = {
            "help": f"{field['help']} ({given})".replace("%", "%%"),  # argparse formats it
            "default": argparse.SUPPRESS,
        }
        if field["type"] == "boolean":
            options["action"] = argparse.BooleanOptionalAction
        elif field["type"].startswith("list of"):
            options["nargs"] = "*"
        parser.add_argument("--" + field["name"].replace("_", "-"), dest=field["name"], **options)


def config_from_arguments(config_class: type, args: argparse.Namespace) -> Any:
    """The config file's values, if there is one, overridden by the flags given."""
    values = read_config_file(args.config) if args.config is not None else {}
    flags = {k: v for k, v in vars(args).items() if k not in ("stage", "config")}
    return build_config(config_class, {**values, **flags})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rlhf.train", description=__doc__)
    commands = parser.add_subparsers(dest="stage", required=True)
    for name, (config_class, function) in STAGES.items():
        summary = (function.__doc__ or "").split("\n")[0]
        sub = commands.add_parser(name, help=summary, description=summary)
        add_config_arguments(sub, config_class)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_class, function = STAGES[args.stage]
    progress = TqdmProgress(args.stage)
    try:
        metrics = function(config_from_arguments(config_class, args), progress)
    except (ValueError, OSError) as error:  # bad config, data or checkpoint: no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        if dist.is_initialized():
            dist.destroy_process_group()
    summary = {k: v for k, v in metrics.items() if k not in ("history", "samples", "config")}
    print(json.dumps(summary, default=str))
    return 0 if not metrics.get("stopped") else 1
