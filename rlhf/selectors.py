"""What the research API reads: iterations, model versions, batches, and the files behind them
(an iteration's log, a model version's archive), and the figures drawn from them (rlhf.charts,
rlhf.ratings). Nothing here changes a record."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Prefetch, Q, QuerySet

from annotation.export import training_records
from annotation.models import Batch, Safety, Strength
from modelcore.checkpoint import load_checkpoint
from modelcore.hf_interop import save_hf_model
from rlhf import charts, ratings
from rlhf.models import Iteration, IterationStep, ModelVersion
from rlhf.services import LoopConflict

# An iteration's log tail reads at most this much of the file's end, whatever `lines` asks.
LOG_TAIL_BYTES = 256 * 1024
ARCHIVE_CHUNK = 1024 * 1024


def iteration_list(*, status: str | None = None, algorithm: str | None = None) -> QuerySet:
    iterations = Iteration.objects.select_related("parent", "created_by").prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.only("name", "iteration_id"))
    )
    if status:
        iterations = iterations.filter(status=status)
    if algorithm:
        iterations = iterations.filter(algorithm=algorithm)
    return iterations


def iteration_detail() -> QuerySet:
    """Iterations with what the detail shows: their steps too."""
    return iteration_list().prefetch_related(
        Prefetch("steps", queryset=IterationStep.objects.order_by("index"))
    )


def iteration_log_tail(*, iteration: Iteration, lines: int) -> list[str] | None:
    """The last `lines` lines of the iteration's log (None: no log yet). A line cut by the
    LOG_TAIL_BYTES window is left out rather than shown half."""
    path = iteration.log_path
    try:
        with path.open("rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - LOG_TAIL_BYTES))
            window = log.read()
    except FileNotFoundError:
        return None
    text = window.decode("utf-8", errors="replace").splitlines()
    if size > LOG_TAIL_BYTES:
        text = text[1:]
    return text[-lines:] if lines else []


def model_version_list(*, kind: str | None = None, status: str | None = None) -> QuerySet:
    versions = ModelVersion.objects.select_related("parent")
    if kind:
        versions = versions.filter(kind=kind)
    if status:
        versions = versions.filter(status=status)
    return versions


def batch_list() -> QuerySet[Batch]:
    """Batches with their counts, in one query: comparisons (held out), labels per strength
    and per safety label. The full statistics of one batch are annotation.stats'."""
    labels = "comparisons__labels"
    # Ordered explicitly: Django drops Meta.ordering from aggregating queries.
    batches = Batch.objects.select_related("model_a", "model_b").order_by("-opened_at", "-pk")
    return batches.annotate(
        comparison_count=Count("comparisons", distinct=True),
        heldout_count=Count("comparisons", filter=Q(comparisons__heldout=True), distinct=True),
        label_count=Count(labels),
        **{
            f"strength_{value}": Count(labels, filter=Q(comparisons__labels__strength=value))
            for value in Strength.values
        },
        **{
            f"safety_{value}": Count(labels, filter=Q(comparisons__labels__safety=value))
            for value in Safety.values
        },
    )


def model_archive(*, version: ModelVersion) -> tuple[str, Iterator[bytes]]:
    """The version as a tar archive, streamed: (file name, chunks). A policy comes in the
    Hugging Face Llama layout (written to a scratch folder under ARTIFACTS_ROOT first, so a
    broken checkpoint fails before the response starts); a reward model, which has no Hugging
    Face layout here, comes as its Tandem checkpoint (modelcore.checkpoint.load_checkpoint
    reads it)."""
    if version.status not in ModelVersion.AVAILABLE:
        raise LoopConflict(f"{version.name} is {version.status}: its files are not complete")
    if version.kind != ModelVersion.Kind.POLICY:
        return f"{version.name}.tar", _tar_stream(version.directory, version.name)
    scratch_root = Path(settings.ARTIFACTS_ROOT) / "exports"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{version.name}.", dir=scratch_root))
    try:
        checkpoint = load_checkpoint(version.directory)
        save_hf_model(checkpoint.model, checkpoint.tokenizer, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return f"{version.name}-hf.tar", _tar_stream(scratch, version.name, remove=True)


def _tar_stream(directory: Path, name: str, *, remove: bool = False) -> Iterator[bytes]:
    """The files of `directory` as a tar archive under the folder `name`, a megabyte at a time
    (tarfile's own writer would hold each file whole in memory). `remove`: delete the directory
    afterwards, also when the client goes away mid-download (Django closes the iterator)."""
    try:
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            info = tarfile.TarInfo(f"{name}/{path.name}")
            info.size, info.mtime, info.mode = path.stat().st_size, int(path.stat().st_mtime), 0o644
            yield info.tobuf(format=tarfile.PAX_FORMAT)
            with path.open("rb") as file:
                while chunk := file.read(ARCHIVE_CHUNK):
                    yield chunk
            if padding := -info.size % tarfile.BLOCKSIZE:
                yield tarfile.NUL * padding
        yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)  # the end-of-archive marker
    finally:
        if remove:
            shutil.rmtree(directory, ignore_errors=True)


# --- figures ------------------------------------------------------------------------------------


def iteration_figures(*, iteration: Iteration) -> list[dict[str, Any]]:
    """The iteration's figures (rlhf.charts.iteration_figures) from its steps' metrics: the
    policy stages' from their run's metrics file, which keeps the per-step history the row
    leaves out."""
    steps = {
        step.name: _run_metrics(step) if step.name in charts.POLICY_FIGURES else step.metrics
        for step in iteration.steps.all()
    }
    return charts.iteration_figures(steps)


def _run_metrics(step: IterationStep) -> dict[str, Any]:
    """The metrics file of the step's run once the run has finished (it is written last), else
    the row's metrics ({} before the step has run)."""
    if not step.output_dir:
        return step.metrics
    try:
        return json.loads((step.directory / "metrics.json").read_text())
    except (OSError, ValueError):  # not there yet, or being written by a worker right now
        return step.metrics


def policy_evaluations() -> list[dict[str, Any]]:
    """Every ready or published policy with its evaluation against its parent, oldest first."""
    versions = (
        ModelVersion.objects.filter(
            kind=ModelVersion.Kind.POLICY, status__in=ModelVersion.AVAILABLE
        )
        .select_related("parent")
        .order_by("created_at", "pk")
    )
    return [
        {
            "name": version.name,
            "parent": version.parent.name if version.parent else None,
            "evaluation": version.metrics.get("evaluation") or {},
        }
        for version in versions
        if version.metrics.get("evaluation")
    ]


def base_policy() -> ModelVersion | None:
    """The policy the lineage starts from (the oldest one without a parent): the ratings'
    anchor."""
    roots = ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY, parent__isnull=True)
    return roots.order_by("created_at", "pk").first()


def version_ratings(*, rounds: int = ratings.ROUNDS, seed: int = 0) -> dict[str, Any]:
    """The Bradley–Terry ratings of the versions that served, from every label so far (held-out
    ones too: they are human judgements all the same), anchored at the base policy."""
    anchor = base_policy()
    games = ratings.games_from_labels(training_records())
    rated = (
        ratings.rate(games, anchor=anchor.name, rounds=rounds, seed=seed)
        if games and anchor
        else []
    )
    return {
        "anchor": anchor.name if anchor else None,
        "anchor_rating": ratings.ANCHOR_RATING,
        "games": len(games),
        "rounds": rounds,
        "ratings": rated,
    }


def version_figures(*, rated: Sequence[ratings.Rating]) -> list[dict[str, Any]]:
    """The figures across versions, given their ratings (version_ratings' "ratings")."""
    return charts.version_figures(policy_evaluations(), rated)
