"""The research API's shapes: what a request may send (inputs, query filters) and what it gets
back. They check types and choices only; the loop's rules are rlhf.services'."""

from __future__ import annotations

from typing import Any, TypedDict

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from annotation.models import Batch, Safety, Strength
from rlhf import charts
from rlhf.models import Iteration, IterationStep, ModelVersion

# A header travels as Latin-1; the key is stored (scoped to its user) and compared, so only
# printable ASCII of a bounded length is accepted.
MAX_LOG_LINES = 1000


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what is wrong, written for the researcher")
    field = serializers.CharField(
        allow_null=True, help_text="the offending input (dotted for nested ones), or null"
    )


# --- inputs ---------------------------------------------------------------------------------


class IterationStartInput(serializers.Serializer):
    algorithm = serializers.ChoiceField(choices=Iteration.Algorithm.choices)
    batches = serializers.ListField(
        child=serializers.SlugField(max_length=50),
        required=False,
        max_length=1000,
        help_text="batch names; default: every closed batch",
    )
    hyperparameters = serializers.DictField(
        required=False, help_text="per stage, the fields to set: see GET /api/hyperparameters/"
    )
    parent = serializers.SlugRelatedField(
        slug_field="name",
        queryset=ModelVersion.objects.all(),
        required=False,
        help_text="the policy to improve; default: the newest published one",
    )
    auto_publish = serializers.BooleanField(default=True)


class RollbackInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class IterationFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=Iteration.Status.choices, required=False)
    algorithm = serializers.ChoiceField(choices=Iteration.Algorithm.choices, required=False)


class IterationDetailQuery(serializers.Serializer):
    log_lines = serializers.IntegerField(
        min_value=0,
        max_value=MAX_LOG_LINES,
        default=50,
        help_text="how many of the log's last lines to show",
    )


class ModelVersionFilter(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ModelVersion.Kind.choices, required=False)
    status = serializers.ChoiceField(choices=ModelVersion.Status.choices, required=False)


class LabelsQuery(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=[
            ("training", "training rows (prompt/chosen/rejected)"),
            ("raw", "everything stored, skips too"),
        ],
        default="training",
    )
    format = serializers.ChoiceField(
        choices=[
            ("tandem", "Tandem's training rows"),
            ("trl", "TRL's conversational preference rows (prompt/chosen/rejected messages)"),
        ],
        default="tandem",
        help_text="the training rows' format (kind=training only)",
    )

    def validate(self, data):
        if data["kind"] == "raw" and data["format"] != "tandem":
            raise serializers.ValidationError({"format": "applies to kind=training only"})
        return data


# --- outputs --------------------------------------------------------------------------------


class HyperparameterField(TypedDict):
    """One field a stage's hyper-parameters may set (rlhf.hyperparameters.describe)."""

    name: str
    type: str
    required: bool
    default: Any
    help: str


# GET /api/hyperparameters/: stage -> its fields.
Hyperparameters = dict[str, list[HyperparameterField]]


class IterationStepSerializer(serializers.ModelSerializer):
    class Meta:
        model = IterationStep
        fields = [
            "index",
            "name",
            "status",
            "attempts",
            "metrics",
            "error",
            "started_at",
            "finished_at",
            "seconds",
        ]


class IterationSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    versions = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True, help_text="the model versions it trained"
    )

    class Meta:
        model = Iteration
        fields = [
            "id",
            "status",
            "algorithm",
            "batches",
            "hyperparameters",
            "device",
            "auto_publish",
            "parent",
            "created_by",
            "current_step",
            "progress",
            "metrics",
            "error",
            "attempts",
            "versions",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
        ]


class IterationDetailSerializer(IterationSerializer):
    steps = IterationStepSerializer(many=True, read_only=True)
    log_tail = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        read_only=True,
        help_text="the last log_lines lines of the iteration's log; null before it has one",
    )

    class Meta(IterationSerializer.Meta):
        fields = [*IterationSerializer.Meta.fields, "traceback", "steps", "log_tail"]


class ModelVersionSerializer(serializers.ModelSerializer):
    parent = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "name",
            "kind",
            "status",
            "parent",
            "iteration",
            "trained_on",
            "metrics",
            "sha256",
            "num_params",
            "source",
            "created_at",
            "published_at",
        ]


class BinSerializer(serializers.Serializer):
    key = serializers.CharField()
    label = serializers.CharField()
    count = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True)


class AnnotatorStatisticsSerializer(serializers.Serializer):
    username = serializers.CharField()
    labels = serializers.IntegerField()
    hours = serializers.FloatField()
    labels_per_hour = serializers.FloatField(allow_null=True)
    median_ms = serializers.FloatField(allow_null=True)
    left_share = serializers.FloatField(allow_null=True)


class DayCountSerializer(serializers.Serializer):
    day = serializers.DateField()
    labels = serializers.IntegerField()


class BatchStatisticsSerializer(serializers.Serializer):
    """annotation.stats.BatchStatistics, field by field."""

    labels = serializers.IntegerField()
    per_strength = BinSerializer(many=True)
    per_safety = BinSerializer(many=True)
    unsure_share = serializers.FloatField(allow_null=True)
    heldout_labels = serializers.IntegerField()
    prompt_tokens_mean = serializers.FloatField(allow_null=True)
    response_tokens_mean = serializers.FloatField(allow_null=True)
    dialogues = serializers.IntegerField()
    turns_per_dialogue_mean = serializers.FloatField(allow_null=True)
    turns_per_dialogue_max = serializers.IntegerField(allow_null=True)
    median_ms = serializers.FloatField(allow_null=True)
    left_share = serializers.FloatField(allow_null=True)
    annotators = AnnotatorStatisticsSerializer(many=True)
    overlap_items = serializers.IntegerField()
    overlap_pairs = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    labels_per_day = serializers.SerializerMethodField()
    comparisons = serializers.IntegerField()
    heldout = serializers.IntegerField()
    ready = serializers.IntegerField()
    failed = serializers.IntegerField()
    skips = serializers.IntegerField()
    skips_by_reason = BinSerializer(many=True)

    @extend_schema_field(DayCountSerializer(many=True))
    def get_labels_per_day(self, statistics) -> list[dict]:
        return [{"day": day, "labels": count} for day, count in statistics.labels_per_day]


class BatchSerializer(serializers.ModelSerializer):
    """A batch with the counts selectors.batch_list annotates."""

    model_a = serializers.SlugRelatedField(slug_field="name", read_only=True)
    model_b = serializers.SlugRelatedField(slug_field="name", read_only=True)
    comparisons = serializers.IntegerField(source="comparison_count", read_only=True)
    heldout = serializers.IntegerField(
        source="heldout_count", read_only=True, help_text="comparisons held out for evaluation"
    )
    labels = serializers.IntegerField(source="label_count", read_only=True)
    labels_per_strength = serializers.SerializerMethodField()
    labels_per_safety = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "name",
            "status",
            "opened_at",
            "closed_at",
            "model_a",
            "model_b",
            "temperature_a",
            "temperature_b",
            "comparisons",
            "heldout",
            "labels",
            "labels_per_strength",
            "labels_per_safety",
        ]

    def get_labels_per_strength(self, batch: Batch) -> dict[str, int]:
        return {value: getattr(batch, f"strength_{value}") for value in Strength.values}

    def get_labels_per_safety(self, batch: Batch) -> dict[str, int]:
        return {value: getattr(batch, f"safety_{value}") for value in Safety.values}


class BatchDetailSerializer(BatchSerializer):
    statistics = BatchStatisticsSerializer(
        read_only=True, help_text="annotation.stats.batch_statistics"
    )

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "statistics"]


# --- figures (rlhf.charts) and ratings (rlhf.ratings) ---------------------------------------


@extend_schema_field({"oneOf": [{"type": "number"}, {"type": "string"}]})
class ChartXField(serializers.JSONField):
    """A point's x: a number (a step, K, a mean reward) or a category (a strength, a batch, a
    model version)."""


class ChartPointSerializer(serializers.Serializer):
    x = ChartXField()
    y = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="intervals: the lower bound")
    high = serializers.FloatField(allow_null=True, help_text="intervals: the upper bound")
    label = serializers.CharField(allow_null=True, help_text="what the point is, in words")


class ChartSeriesSerializer(serializers.Serializer):
    name = serializers.CharField()
    points = ChartPointSerializer(many=True)


class FigureSerializer(serializers.Serializer):
    """One figure's data, exactly what the research page draws (rlhf.charts)."""

    key = serializers.CharField(help_text="stable identifier, e.g. reward-accuracy-by-strength")
    title = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=charts.KINDS,
        help_text="bars and intervals: x is a category; lines: x is a number; path: points "
        "joined in order, each labelled",
    )
    x_label = serializers.CharField()
    y_label = serializers.CharField()
    y_range = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="[low, high] or null: auto"
    )
    series = ChartSeriesSerializer(many=True)
    empty = serializers.CharField(
        allow_null=True, help_text="why there is no data yet; null when there is"
    )


class IterationChartsSerializer(serializers.Serializer):
    iteration = serializers.IntegerField()
    figures = FigureSerializer(many=True)


class VersionChartsSerializer(serializers.Serializer):
    figures = FigureSerializer(many=True)


class RatingSerializer(serializers.Serializer):
    version = serializers.CharField()
    rating = serializers.FloatField()
    low = serializers.FloatField(help_text="2.5th percentile of the bootstrap")
    high = serializers.FloatField(help_text="97.5th percentile of the bootstrap")
    games = serializers.IntegerField(help_text="labels comparing it with another version")
    wins = serializers.IntegerField()


class RatingsSerializer(serializers.Serializer):
    anchor = serializers.CharField(
        allow_null=True, help_text="the base policy, fixed at anchor_rating"
    )
    anchor_rating = serializers.FloatField()
    games = serializers.IntegerField(help_text="labels whose two responses came from two versions")
    rounds = serializers.IntegerField(help_text="bootstrap rounds behind the intervals")
    ratings = RatingSerializer(many=True)
