"""Weeks of the loop without people (manage.py simulate): each week the open batch collects
gold prompts, written by simulated annotators or imported into its queue for them
(`annotators`, the two modes), and their labels; an iteration on the `train` worker
turns its labels into reward models and a new policy and publishes it (which closes the batch
and opens the next, served by the new and the previous policy), and the gold judge measures
the new version on held-out prompts (`evaluation`). The report (`report`) is rewritten after
every week, and every published version is exported in the Hugging Face layout beside it.

Everything goes through the services a person's requests go through: start_dialogue or
claim_next, and submit_label, for the annotators, import_prompts for the admin,
start_iteration for the researcher. The command trains nothing itself; it needs a worker on
`default,generate` and one on `train`.

Reproducible from the seed: the prompts, the services' random draws (see `annotators`: the
claims' too), the annotators' generators, the evaluation's sampling seeds and every training
stage's `seed` (set to the simulation's unless the hyper-parameters give one) all follow from
it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError

from annotation.models import Batch
from annotation.permissions import RESEARCHER
from annotation.services import open_next_batch
from annotation.stats import batch_statistics
from modelcore.checkpoint import load_checkpoint
from modelcore.hf_interop import save_hf_model
from rlhf import hyperparameters as loop_hyperparameters
from rlhf import services
from rlhf.models import Iteration, IterationStep, ModelVersion
from rlhf.simulation import evaluation, report
from rlhf.simulation.annotators import (
    MODES,
    QUEUE,
    WRITE,
    SimulationError,
    annotate_queued,
    annotate_written,
    enlist,
)
from rlhf.train.data import write_jsonl
from rlhf.train.gold import TRAIN, generate_prompts

Progress = Callable[[str], None]
FOLLOW_SECONDS = 1.0  # how often the iteration's row is read
PRINT_SECONDS = 5.0  # how often unchanged progress is printed again


@dataclass(frozen=True)
class SimulationConfig:
    weeks: int
    annotators: int
    prompts_per_week: int
    report: Path
    seed: int = 0
    algorithm: str = Iteration.Algorithm.REJECTION_SAMPLING
    mode: str = WRITE  # annotators write their prompts, or label the queue's imported ones
    overlap: int = 1  # queue mode: annotators per imported prompt (the batch's overlap)
    noise: float = 0.25  # AlpacaFarm's share of flipped preferences
    edit_rate: float = 0.1
    risky_share: float = 0.25
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    eval_prompts: int = 50  # held-out harmless prompts, and as many risky ones
    # The longest response, in the batches (an admin's batch setting) and in the evaluation.
    max_new_tokens: int = 128
    heldout_share: float = 0.1  # of each batch's comparisons, for the reward models' accuracy
    cumulative: bool = False  # train each week on every simulated batch so far, not the last
    timeout: float = 24 * 3600.0  # the longest wait for the workers, per wait

    def checked(self) -> SimulationConfig:
        """This config with the hyper-parameters normalised; SimulationError on bad values."""
        positive = {
            "weeks": self.weeks,
            "annotators": self.annotators,
            "prompts_per_week": self.prompts_per_week,
            "eval_prompts": self.eval_prompts,
            "max_new_tokens": self.max_new_tokens,
            "timeout": self.timeout,
        }
        for name, value in positive.items():
            if value <= 0:
                raise SimulationError(f"{name} must be at least 1, got {value}")
        for name in ("noise", "edit_rate", "risky_share", "heldout_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SimulationError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mode not in MODES:
            raise SimulationError(f"unknown mode {self.mode!r}: expected one of {', '.join(MODES)}")
        self._check_overlap()
        if self.algorithm not in Iteration.Algorithm.values:
            raise SimulationError(
                f"unknown algorithm {self.algorithm!r}: expected one of "
                f"{', '.join(Iteration.Algorithm.values)}"
            )
        try:
            given = loop_hyperparameters.validate(self.hyperparameters)
        except loop_hyperparameters.HyperparameterError as error:
            raise SimulationError(f"hyperparameters: {error}") from None
        # Every stage seeded from the simulation unless the researcher chose a seed.
        seeded = {
            stage: {"seed": self.seed, **given.get(stage, {})}
            for stage in loop_hyperparameters.STAGE_CONFIGS
        }
        return SimulationConfig(**{**asdict(self), "hyperparameters": seeded})

    def _check_overlap(self) -> None:
        """The overlap as the batch's form checks it (its field's validators), and one a queue
        can give: each place of a prompt goes to a different annotator."""
        try:
            for validator in Batch._meta.get_field("overlap").validators:
                validator(self.overlap)
        except ValidationError as error:
            raise SimulationError(f"overlap: {' '.join(error.messages)}") from None
        if self.mode == WRITE and self.overlap != 1:
            raise SimulationError(
                "overlap is for queue mode: in write mode each annotator labels the prompt it "
                "wrote (add --mode queue)"
            )
        if self.overlap > self.annotators:
            raise SimulationError(
                f"overlap {self.overlap} needs at least as many annotators, got {self.annotators}"
            )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "report": str(self.report)}


def simulate(config: SimulationConfig, progress: Progress) -> dict[str, Any]:
    """Run the weeks; returns the report (also written to config.report)."""
    config = config.checked()
    (config.report / "samples").mkdir(parents=True, exist_ok=True)
    base = ModelVersion.objects.published_policies().order_by("-published_at").first()
    if base is None:
        raise SimulationError("no published policy to start from: import one (import_model)")
    if not Batch.objects.filter(status=Batch.Status.OPEN).exists():
        open_next_batch()
    researcher = _user("sim-researcher", RESEARCHER)
    annotators = enlist(
        config.annotators, seed=config.seed, noise=config.noise, edit_rate=config.edit_rate
    )
    gold = GoldMeasure(config)
    findings: dict[str, Any] = {"config": config.to_json(), "base": base.name, "weeks": []}
    findings["versions"] = [gold.measure(base, week=0, progress=progress)]
    report.write(config.report, findings)
    trained_on: list[str] = []
    for week in range(1, config.weeks + 1):
        say = _prefixed(progress, f"week {week}/{config.weeks}")
        batch = _prepare_open_batch(config)
        say(f"batch {batch.name}, served by {batch.model_a.name} and {batch.model_b.name}")
        started = time.monotonic()
        prompts = generate_prompts(
            config.seed * 1_000_003 + week,
            config.prompts_per_week,
            split=TRAIN,
            risky_share=config.risky_share,
        )
        key = f"{config.seed}:{week}"
        if config.mode == QUEUE:
            labels = annotate_queued(
                annotators, prompts, batch=batch, key=key, timeout=config.timeout, progress=say
            )
        else:
            labels = annotate_written(
                annotators, prompts, key=key, timeout=config.timeout, progress=say
            )
        annotation_seconds = time.monotonic() - started
        trained_on = [*trained_on, batch.name] if config.cumulative else [batch.name]
        iteration = _train(config, researcher, trained_on, say)
        policy = ModelVersion.objects.get(name=iteration.metrics["published"])
        if policy.status != ModelVersion.Status.PUBLISHED:
            raise SimulationError(f"{policy.name} was not published ({policy.status})")
        measured = gold.measure(policy, week=week, progress=say)
        steps = list(iteration.steps.all())
        reward = {
            s.name: s.metrics.get("heldout", {}) for s in steps if s.name in Iteration.REWARD_STEPS
        }
        findings["weeks"].append(
            {
                "week": week,
                "batch": batch.name,
                "served_by": [batch.model_a.name, batch.model_b.name],
                "labels": {
                    "mode": config.mode,
                    "overlap": batch.overlap,
                    **labels.to_json(),
                    "between_annotators": _agreement(batch),
                },
                "iteration": iteration.pk,
                "algorithm": iteration.algorithm,
                "trained_on": trained_on,
                "published": policy.name,
                "next_batch": Batch.objects.get(status=Batch.Status.OPEN).name,
                "reward_models": {
                    name: {
                        key: metrics.get(key)
                        for key in ("accuracy", "pairs", "accuracy_by_strength")
                    }
                    for name, metrics in reward.items()
                },
                "evaluation_by_reward_models": iteration.metrics.get("evaluate", {}),
                "seconds": {
                    "annotation": round(annotation_seconds, 2),
                    "iteration_steps": {s.name: round(s.seconds, 2) for s in steps},
                    **measured["seconds"],
                },
            }
        )
        findings["versions"].append(measured)
        report.write(config.report, findings)
        say(
            f"{policy.name}: gold helpfulness {measured['gold_helpfulness']:.3f}, unsafe rate "
            f"{measured['unsafe_rate']:.3f}, win rate vs base {measured['win_rate_vs_base']:.3f}"
        )
    return findings


class GoldMeasure:
    """Measures versions with the gold judge against the base model (the first one measured),
    and exports each in the Hugging Face layout beside the report."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.gold = evaluation.GoldSet.drawn(config.seed, config.eval_prompts)
        self.base_answers: list[str] | None = None

    def measure(self, version: ModelVersion, *, week: int, progress: Progress) -> dict[str, Any]:
        progress(f"evaluating {version.name} on {len(self.gold.prompts)} held-out gold prompts")
        started = time.monotonic()
        answers = evaluation.answer(
            version,
            self.gold.prompts,
            seed=self.config.seed * 1_000_003,
            max_new_tokens=self.config.max_new_tokens,
        )
        if self.base_answers is None:  # the first version measured is the base
            self.base_answers = answers
        scores = evaluation.gold_scores(self.gold, answers, self.base_answers)
        write_jsonl(
            self.config.report / "samples" / f"{version.name}.jsonl",
            evaluation.samples(version.name, self.gold, answers),
        )
        seconds = time.monotonic() - started
        exported = Path("models") / version.name
        checkpoint = load_checkpoint(version.directory)
        save_hf_model(checkpoint.model, checkpoint.tokenizer, self.config.report / exported)
        return {
            "name": version.name,
            "week": week,
            "parent": version.parent.name if version.parent else None,
            **scores,
            "hf_export": str(exported),
            "samples": f"samples/{version.name}.jsonl",
            "seconds": {
                "evaluation": round(seconds, 2),
                "export": round(time.monotonic() - started - seconds, 2),
            },
        }


def _prepare_open_batch(config: SimulationConfig) -> Batch:
    """The open batch with the simulation's settings (the longest response, the held-out share,
    the overlap), set as an admin sets them in the batch's form before the week's first prompt
    (a batch the loop opens has the defaults)."""
    batch = Batch.objects.select_related("model_a", "model_b").get(status=Batch.Status.OPEN)
    if batch.comparisons.exists():
        raise SimulationError(
            f"the open batch {batch.name} has comparisons already: a simulation starts on an "
            "empty batch (close this one in admin first)"
        )
    Batch.objects.filter(pk=batch.pk).update(
        max_new_tokens=config.max_new_tokens,
        heldout_share=config.heldout_share,
        overlap=config.overlap,
    )
    batch.refresh_from_db()
    return batch


def _agreement(batch: Batch) -> dict[str, Any]:
    """The batch page's agreement figures over the items labelled by two annotators or more
    (queue mode with an overlap above 1; None where no item has two labels)."""
    stats = batch_statistics(batch)
    return {
        "items": stats.overlap_items,
        "agreement": stats.agreement,
        "alpha": stats.alpha,
        "fleiss_kappa": stats.fleiss_kappa,
    }


def _train(config: SimulationConfig, researcher, batches: list[str], say: Progress) -> Iteration:
    """Start the week's iteration as the researcher and follow it to its end."""
    try:
        iteration = services.start_iteration(
            actor=researcher,
            algorithm=config.algorithm,
            batches=batches,
            hyperparameters=config.hyperparameters,
        ).iteration
    except services.LoopError as error:
        hint = " (raise --heldout-share or --prompts-per-week)" if error.field == "batches" else ""
        raise SimulationError(f"cannot start the iteration: {error}{hint}") from None
    say(f"iteration {iteration.pk} ({iteration.algorithm}) queued on the train worker")
    deadline = time.monotonic() + config.timeout
    shown, shown_at, done = "", 0.0, set()
    while iteration.status not in Iteration.FINISHED:
        if time.monotonic() > deadline:
            raise SimulationError(
                f"iteration {iteration.pk} still {iteration.status} after {config.timeout:.0f} s: "
                "is a Celery worker running on the train queue?"
            )
        time.sleep(FOLLOW_SECONDS)
        iteration.refresh_from_db()
        # Every finished step from its row (a short one may start and end between two reads).
        for step in iteration.steps.filter(status=IterationStep.Status.SUCCEEDED):
            if step.name not in done:
                say(f"iteration {iteration.pk}: {step.name} done in {step.seconds:.1f} s")
                done.add(step.name)
        line = _progress_line(iteration)
        if line != shown or time.monotonic() - shown_at >= PRINT_SECONDS:
            say(line)
            shown, shown_at = line, time.monotonic()
    if iteration.status != Iteration.Status.SUCCEEDED:
        raise SimulationError(
            f"iteration {iteration.pk} {iteration.status}: {iteration.error or 'no error recorded'}"
        )
    return iteration


def _progress_line(iteration: Iteration) -> str:
    if iteration.status != Iteration.Status.RUNNING:
        return f"iteration {iteration.pk} {iteration.status}"
    progress = iteration.progress or {}
    line = f"iteration {iteration.pk}: {iteration.current_step or 'starting'}"
    if progress.get("total"):
        line += f" {progress.get('phase')} {progress['step']}/{progress['total']}"
        if progress.get("loss") is not None:
            line += f" loss {progress['loss']:.4f}"
    return line


def _user(username: str, role: str):
    user, _ = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda message: progress(f"{prefix}: {message}")
