"""The loop's records: model versions, iterations and their steps, publication events, API tokens.

A ModelVersion is a checkpoint under ARTIFACTS_ROOT that Tandem knows by name; it becomes visible
(READY or PUBLISHED) only once its files are complete and its digest is recorded, so a half-written
model is never served.

An Iteration is one turn of the weekly loop: the batches it trains on, the algorithm and its
hyper-parameters, the policy it starts from. Its IterationSteps (export, the two reward models,
the policy stage(s), evaluation, publishing) are the truth a worker resumes from: a step that
succeeded is never run again, and a step in progress continues from its run directory.

This module imports no other Tandem app: batches are named, not referenced.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersionQuerySet(models.QuerySet):
    def available(self) -> ModelVersionQuerySet:
        """Versions whose files are complete and hashed: the only ones that may be served."""
        return self.filter(status__in=ModelVersion.AVAILABLE).exclude(sha256="")

    def published_policies(self) -> ModelVersionQuerySet:
        return self.filter(kind=ModelVersion.Kind.POLICY, status=ModelVersion.Status.PUBLISHED)


class ModelVersion(models.Model):
    class Kind(models.TextChoices):
        POLICY = "policy", "policy"
        REWARD_HELPFULNESS = "reward_helpfulness", "helpfulness reward model"
        REWARD_SAFETY = "reward_safety", "safety reward model"

    class Status(models.TextChoices):
        IMPORTING = "importing", "importing"
        READY = "ready", "ready"
        PUBLISHED = "published", "published"
        RETIRED = "retired", "retired"
        FAILED = "failed", "failed"

    AVAILABLE = (Status.READY, Status.PUBLISHED)

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.POLICY)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IMPORTING)
    # Relative to ARTIFACTS_ROOT, so the root can move (or be mounted elsewhere on a worker).
    artifact_path = models.CharField(max_length=500)
    # The checkpoint's manifest digest (modelcore.checkpoint.checkpoint_digest); empty until the
    # files are complete.
    sha256 = models.CharField(max_length=64, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    # The iteration that trained it (None for an imported model).
    iteration = models.ForeignKey(
        "Iteration", null=True, blank=True, on_delete=models.PROTECT, related_name="versions"
    )
    # Names of the batches whose labels it was trained on (a reward model's or a policy's).
    trained_on = models.JSONField(default=list, blank=True)
    # A reward model's held-out accuracy (overall, per strength level, per batch); a policy's
    # evaluation against its parent (win rate, mean rewards, KL).
    metrics = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=500, blank=True, help_text="where the weights came from")
    num_params = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status__in=["ready", "published"]) | ~Q(sha256=""),
                name="available_model_version_has_digest",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def directory(self) -> Path:
        return Path(settings.ARTIFACTS_ROOT) / self.artifact_path


class PublicationEvent(models.Model):
    """Append-only: every publish and roll-back, who did it, and what served before."""

    class Action(models.TextChoices):
        PUBLISH = "publish", "published"
        ROLLBACK = "rollback", "rolled back"

    action = models.CharField(max_length=8, choices=Action.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="events")
    # The newest published policy just before the event (what served until then).
    previous = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The batch opened by the switch, by name.
    batch = models.CharField(max_length=50, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class Iteration(models.Model):
    class Algorithm(models.TextChoices):
        REJECTION_SAMPLING = "rejection_sampling", "rejection sampling"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        REJECTION_SAMPLING_PPO = "rejection_sampling+ppo", "rejection sampling, then PPO"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        CANCELLING = "cancelling", "cancelling"
        CANCELLED = "cancelled", "cancelled"
        FAILED = "failed", "failed"
        SUCCEEDED = "succeeded", "succeeded"

    # A worker may still pick these up (or is working on them).
    ACTIVE = (Status.QUEUED, Status.RUNNING, Status.CANCELLING)
    FINISHED = (Status.CANCELLED, Status.FAILED, Status.SUCCEEDED)

    # The pipeline's steps: both reward models, the algorithm's policy stage(s) (each starting
    # from the one before), evaluation against the parent, publishing.
    REWARD_STEPS = ("reward_helpfulness", "reward_safety")
    POLICY_STEPS = {
        Algorithm.REJECTION_SAMPLING: ("rejection_sampling",),
        Algorithm.PPO: ("ppo",),
        Algorithm.DPO: ("dpo",),
        Algorithm.REJECTION_SAMPLING_PPO: ("rejection_sampling", "ppo"),
    }

    # Names of the batches it trains on; each batch's held-out comparisons are evaluated on,
    # never trained on.
    batches = models.JSONField(default=list)
    algorithm = models.CharField(max_length=24, choices=Algorithm.choices)
    # Per stage, the fields given for its config ({"reward": {...}, "ppo": {...}}), validated
    # against the stage's config class; the defaults fill in the rest when a step starts.
    hyperparameters = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=16, default="cpu")
    auto_publish = models.BooleanField(default=True)
    parent = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="iterations_started"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A retried request with the same key returns this iteration instead of starting another:
    # the API's Idempotency-Key header scoped to its user ("user-12:abc"), or the weekly
    # rollover's "rollover:<batch>".
    idempotency_key = models.CharField(max_length=300, blank=True)
    # What the request asked for, to tell a retry from a conflicting reuse of the key.
    request_fingerprint = models.CharField(max_length=64, blank=True)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    current_step = models.CharField(max_length=32, blank=True)
    # {"step", "total", "loss", "eta_seconds", "phase"} of the step in progress.
    progress = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    # The lease: which worker process holds the iteration, and when it last said so. A lease
    # whose heartbeat is stale, or whose process is gone, may be taken over (see rlhf.pipeline).
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="one_iteration_per_idempotency_key",
            )
        ]
        indexes = [models.Index(fields=["status"], name="iteration_status")]

    def __str__(self) -> str:
        return f"iteration {self.pk} ({self.algorithm}, {self.status})"

    @classmethod
    def step_names(cls, algorithm: str) -> list[str]:
        return ["export", *cls.REWARD_STEPS, *cls.POLICY_STEPS[algorithm], "evaluate", "publish"]

    @property
    def directory(self) -> Path:
        """Where its steps write (the run directories) and its log. Named by id and creation
        time: an id can come back (a database restored or started afresh beside the same
        artifacts root), and a step must never find another iteration's finished run there."""
        return (
            Path(settings.ARTIFACTS_ROOT)
            / "iterations"
            / f"{self.pk}-{self.created_at:%Y%m%d-%H%M%S-%f}"
        )

    @property
    def log_path(self) -> Path:
        return self.directory / "iteration.log"


class IterationStep(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    iteration = models.ForeignKey(Iteration, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=32)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # The step's run directory, relative to ARTIFACTS_ROOT.
    output_dir = models.CharField(max_length=500, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds spent in the step over all attempts (a resumed step adds its new attempt's).
    seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["iteration", "index"]
        constraints = [
            models.UniqueConstraint(fields=["iteration", "name"], name="one_step_per_name"),
            models.UniqueConstraint(fields=["iteration", "index"], name="one_step_per_index"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def directory(self) -> Path:
        return Path(settings.ARTIFACTS_ROOT) / self.output_dir


class ApiToken(models.Model):
    """A researcher's token for scripts. Only its SHA-256 is stored: the token itself is shown
    once, when it is made, and a leaked database does not leak working tokens."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="what the token is for")
    # The first characters of the token, so a user can tell their tokens apart.
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
