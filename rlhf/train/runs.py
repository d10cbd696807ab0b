"""What every training stage shares: its configuration, its run directory, and the step machinery
with progress reports, stop requests and exact resume.

A run directory holds

    model/          the trained model (Tandem checkpoint), written once training is done
    metrics.json    the stage's metrics, written after model/
    tensorboard/    every step's loss and metrics as TensorBoard event files, as it goes
    resume.pt       the training state every `checkpoint_every` steps (and on a stop request):
                    trained weights, optimizer and scheduler states, RNG states, the step reached
                    and the metrics so far; removed when the run completes

Data order is a function of the seed and the step, so the step is the data position: a run
killed anywhere and started again with the same config restarts from resume.pt and ends where an
uninterrupted run ends.
"""

from __future__ import annotations

import functools
import json
import math
import random
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from modelcore.checkpoint import load_checkpoint, save_checkpoint
from modelcore.model import LlamaLM, ScalarModel
from modelcore.tokenizer import Tokenizer
from rlhf.train import faults
from rlhf.train.distributed import Distributed, setup
from rlhf.train.scalars import TensorBoardLog
from rlhf.train.trainable import full_state_dict, plain_copy, select_trainable

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

Progress = Callable[[int, int, float, dict[str, float]], bool | None]
"""(step, total, loss, metrics) -> True to stop. `metrics` is a `PhaseMetrics`: a dict of floats
whose `phase` attribute says what step and total count.

    "train"    optimizer steps; loss and metrics are the step's. A stop writes resume.pt, and
               calling the stage again with the same config carries on from there.
    "sample"   generation chunks: rejection sampling's K responses per prompt, evaluation's
               answers (the policy's, then the baseline's: 1..total twice). Loss is NaN and
               metrics holds nothing else. A stop ends the stage after the chunk; it returns
               {"stopped": True, "phase": "sample", "history": []} and keeps nothing of the
               phase, so calling it again samples again (the same samples: chunks are seeded).
    "heldout"  PPO's held-out evaluation (greedy responses) before training and every
               `eval_every` steps, reported as "sample" is. A stop before training ends the
               stage as in "sample"; during training it takes effect at the end of the step.
"""
TRAIN, SAMPLE, HELDOUT = "train", "sample", "heldout"
Stage = TypeVar("Stage", bound=Callable[..., dict[str, Any]])


class PhaseMetrics(dict[str, float]):
    """A progress report's metrics, with the phase they come from (see `Progress`)."""

    def __init__(self, metrics: dict[str, float], phase: str) -> None:
        super().__init__(metrics)
        self.phase = phase


class Stopped(Exception):
    """The progress callback asked to stop a phase that keeps nothing of its partial work."""

    def __init__(self, phase: str) -> None:
        super().__init__(f"stopped during {phase}")
        self.phase = phase


def stoppable(stage: Stage) -> Stage:
    """`stage`, returning {"stopped": True, "phase": ..., "history": []} when one of its phases
    raised `Stopped`."""

    @functools.wraps(stage)
    def run_stage(config: Any, progress: Progress | None = None) -> dict[str, Any]:
        try:
            return stage(config, progress)
        except Stopped as stop:
            return {"stopped": True, "phase": stop.phase, "history": []}

    return typing.cast(Stage, run_stage)


def doc(help: str) -> dict[str, str]:
    """The metadata of a config field: its command-line help (see `cli`)."""
    return {"help": help}


@dataclass(kw_only=True)
class RunConfig:
    """Settings every stage has."""

    out: Path = field(metadata=doc("run directory (model/, metrics.json, resume.pt)"))
    seed: int = field(default=0, metadata=doc("seed of data order, sampling and init"))
    device: str = field(default="cpu", metadata=doc("cpu or cuda"))
    dtype: str = field(default="float32", metadata=doc(f"one of {', '.join(DTYPES)}"))
    chat_template: str = field(default="model", metadata=doc("model, chatml or llama2"))

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))  # paths as strings


@dataclass(kw_only=True)
class TrainConfig(RunConfig):
    """Settings every training stage has; each stage's config adds its own."""

    max_seq_len: int = field(
        default=1024, metadata=doc("longer exchanges are left out (and counted)")
    )
    checkpoint_every: int = field(
        default=0, metadata=doc("steps between resume checkpoints; 0: none")
    )
    train_layers: int = field(
        default=0, metadata=doc("cheap mode: train only the top N decoder blocks; 0: all")
    )
    lora_rank: int = field(
        default=0, metadata=doc("cheap mode: LoRA adapters of this rank instead; 0: off")
    )
    lora_alpha: float = field(default=16.0, metadata=doc("LoRA scale numerator"))
    strategy: str = field(default="ddp", metadata=doc("under torchrun: ddp, or fsdp (not for ppo)"))


@dataclass(kw_only=True)
class OptimizerConfig:
    """AdamW's settings, shared by every training stage (each may declare a field again to set
    its paper's default)."""

    lr: float = field(default=1e-5, metadata=doc("peak learning rate"))
    weight_decay: float = field(default=0.1, metadata=doc("AdamW weight decay (Llama 2: 0.1)"))
    max_grad_norm: float = field(default=1.0, metadata=doc("gradient clipping norm (Llama 2: 1.0)"))


@dataclass
class History:
    """The metrics of every step so far (the curves), and whether a stop was requested."""

    steps: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False


class Run:
    """One stage's run: process group, device, run directory and its steps."""

    def __init__(self, config: RunConfig, progress: Progress | None = None) -> None:
        if config.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {config.dtype!r}: expected one of {tuple(DTYPES)}")
        self.config = config
        self.progress = progress
        self.dist: Distributed = setup(config.device)
        self.device = self.dist.device
        self.dtype = DTYPES[config.dtype]
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.history = History()
        self.stop_requested = False
        seed_everything(config.seed)

    @property
    def resume_path(self) -> Path:
        return self.out / "resume.pt"

    @property
    def model_dir(self) -> Path:
        return self.out / "model"

    @property
    def tensorboard_dir(self) -> Path:
        return self.out / "tensorboard"

    def load_policy(self, path: str | Path) -> tuple[LlamaLM, Tokenizer]:
        checkpoint = load_checkpoint(path, dtype=self.dtype, device=self.device)
        if not isinstance(checkpoint.model, LlamaLM):
            raise ValueError(f"{path}: expected a policy (lm) checkpoint, found a reward model")
        return checkpoint.model, checkpoint.tokenizer

    def load_reward_model(self, path: str | Path) -> ScalarModel:
        """A reward model, frozen: it only judges."""
        model = load_checkpoint(path, dtype=self.dtype, device=self.device).model
        if not isinstance(model, ScalarModel):
            raise ValueError(f"{path}: expected a reward model (scalar) checkpoint")
        return model.requires_grad_(False).eval()

    def make_trainable(self, model: LlamaLM | ScalarModel) -> None:
        config = self.config
        assert isinstance(config, TrainConfig), "only training stages train"
        select_trainable(
            model,
            train_layers=config.train_layers,
            lora_rank=config.lora_rank,
            lora_alpha=config.lora_alpha,
        )

    def report(
        self,
        phase: str,
        step: int,
        total: int,
        loss: float = math.nan,
        metrics: dict[str, float] | None = None,
    ) -> bool:
        """Tell the progress callback (rank 0's); returns on every rank whether a stop has been
        asked for, by this report or an earlier one."""
        wants_stop = False
        if self.progress is not None and self.dist.is_main:
            report = PhaseMetrics(metrics or {}, phase)
            wants_stop = bool(self.progress(step, total, loss, report))
        self.stop_requested |= self.dist.broadcast_flag(wants_stop)
        return self.stop_requested

    def check_batch(self, batch_size: int, name: str = "batch_size") -> None:
        if batch_size < 1 or batch_size % self.dist.world:
            raise ValueError(
                f"{name} {batch_size} must be a positive multiple of the {self.dist.world} "
                "processes"
            )

    def train(
        self,
        *,
        total: int,
        step: Callable[[int], tuple[float, dict[str, float]]],
        trained: nn.Module,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler] = (),
        finished: Callable[[list[dict[str, float]]], bool] | None = None,
    ) -> History:
        """Run `step(i)` for i up to `total`, resuming from resume.pt when there is one.

        `step` does one optimizer step and returns (loss, metrics); `self.history` holds the
        steps before it. `trained` is the module holding every trained weight (not a DDP
        wrapper); its trainable weights, the optimizers' and schedulers' states and the RNG
        states are what a resume restores. `finished(steps)` may end the run early (early
        stopping).
        """
        assert isinstance(self.config, TrainConfig), "only training stages train"
        history = self.history
        start = self._resume(history, trained, optimizers, schedulers)
        log = TensorBoardLog(self.tensorboard_dir, history.steps) if self.dist.is_main else None
        try:
            for index in range(start, total):
                loss, metrics = step(index)
                record = {"step": index + 1, "loss": loss, **metrics}
                history.steps.append(record)
                if log is not None:
                    log.add(record)
                history.stopped = self.report(TRAIN, index + 1, total, loss, metrics)
                every = self.config.checkpoint_every
                if history.stopped or (every and (index + 1) % every == 0 and index + 1 < total):
                    self._save_resume(index + 1, history, trained, optimizers, schedulers)
                faults.reached(f"{self.out.name}:{index + 1}")
                if history.stopped or (finished is not None and finished(history.steps)):
                    break
        finally:
            if log is not None:
                log.close()
        return history

    def cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """`compute()`, saved in the run directory as `name` the first time and read back when
        the run resumes (for work done once per run, before its steps)."""
        path = self.out / name
        exists = path.exists()
        self.dist.barrier()  # every rank has looked before rank 0 may write it
        if exists:
            return torch.load(path, map_location="cpu", weights_only=True)
        value = compute()
        if self.dist.is_main:
            staging = path.with_name(f".{name}.tmp")
            torch.save(value, staging)
            staging.replace(path)
        return value

    def save_model(self, model: LlamaLM | ScalarModel, tokenizer: Tokenizer) -> None:
        """Write `model` (adapters merged) to model/, atomically. Every rank calls it: under
        FSDP the weights are gathered from all of them."""
        state = full_state_dict(model)
        if self.dist.is_main:
            save_checkpoint(plain_copy(model, state), tokenizer, self.model_dir, overwrite=True)
        self.dist.barrier()

    def finish(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write metrics.json (with the config) and drop the resume state: the run is done."""
        metrics = {"config": self.config.to_json(), **metrics}
        if self.dist.is_main:
            write_json(self.out / "metrics.json", metrics)
            self.resume_path.unlink(missing_ok=True)
        self.dist.barrier()
        return metrics

    def _save_resume(
        self,
        step: int,
        history: History,
        trained: nn.Module,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler],
    ) -> None:
        model_state, optimizer_state = get_state_dict(trained, list(optimizers), options=_FULL)
        if self.dist.is_main:
            state = {
                "step": step,
                "history": history.steps,
                "model": model_state,
                "optimizers": optimizer_state,
                "schedulers": [s.state_dict() for s in schedulers],
                "rng": rng_states(),
                "config": self.config.to_json(),
            }
            staging = self.resume_path.with_suffix(".tmp")
            torch.save(state, staging)
            staging.replace(self.resume_path)  # a kill mid-write leaves the previous state
        self.dist.barrier()

    def _resume(
        self,
        history: History,
        trained: nn.Module,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence[torch.optim.lr_scheduler.LRScheduler],
    ) -> int:
        if not self.resume_path.exists():
            return 0
        state = torch.load(self.resume_path, map_location="cpu", weights_only=True)
        if "config" in state:  # resume.pt files of older versions carry none
            self._check_same_run(state["config"])
        set_state_dict(
            trained,
            list(optimizers),
            model_state_dict=state["model"],
            optim_state_dict=state["optimizers"],
            options=StateDictOptions(full_state_dict=True, strict=False),
        )
        for scheduler, scheduler_state in zip(schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(scheduler_state)
        set_rng_states(state["rng"])
        history.steps = state["history"]
        return state["step"]

    def _check_same_run(self, written: dict[str, Any]) -> None:
        """Refuse to resume a run under a config that would change its result."""
        current = self.config.to_json()
        changed = [
            f"{name} {written.get(name)!r} -> {value!r}"
            for name, value in current.items()
            if name not in RESUME_MAY_CHANGE and written.get(name) != value
        ]
        if changed:
            raise ValueError(
                f"{self.resume_path} belongs to a run with another config ({'; '.join(changed)}): "
                "resume it with the config it was started with, or start in a new directory"
            )


# Fields that change how a run does its work, not its result: a run may resume with others.
RESUME_MAY_CHANGE = frozenset(
    {"out", "checkpoint_every", "micro_batch_size", "eval_batch_size", "score_batch_size"}
)
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)


def accumulate(
    run: Run,
    wrapped: nn.Module,
    microbatches: Sequence[Any],
    denominator: float,
) -> tuple[float, dict[str, float]]:
    """Forward and backward over this rank's micro-batches of one global batch.

    `wrapped(batch)` returns (loss summed over the batch's items, metric sums); `denominator`
    counts the items of the whole global batch, so the gradient is that of the global mean (see
    `distributed`). Returns the global mean loss and metrics.
    """
    totals = None
    names: list[str] = []
    for index, batch in enumerate(microbatches):
        with run.dist.gradient_sync(wrapped, enabled=index == len(microbatches) - 1):
            loss_sum, sums = wrapped(batch)
            (loss_sum * (run.dist.world / denominator)).backward()
        names = list(sums)
        part = torch.stack(
            [loss_sum.detach().float(), *(v.detach().float() for v in sums.values())]
        )
        totals = part if totals is None else totals + part
    assert totals is not None, "a step needs at least one micro-batch"
    means = (run.dist.sum(totals) / denominator).tolist()
    return means[0], dict(zip(names, means[1:], strict=True))


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    max_grad_norm: float,
) -> float:
    """Clip the gradient norm, step, and clear the gradients; returns the norm before clipping."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def write_json(path: Path, data: Any) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=2) + "\n")
    staging.replace(path)
