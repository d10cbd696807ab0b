"""The loop's records. A ModelVersion is a checkpoint under ARTIFACTS_ROOT that Tandem knows by
name; it becomes visible (READY or PUBLISHED) only once its files are complete and its digest is
recorded, so a half-written model is never served."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


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
    source = models.CharField(max_length=500, blank=True, help_text="where the weights came from")
    num_params = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status__in=["ready", "published"]) | ~models.Q(sha256=""),
                name="available_model_version_has_digest",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def directory(self) -> Path:
        return Path(settings.ARTIFACTS_ROOT) / self.artifact_path
