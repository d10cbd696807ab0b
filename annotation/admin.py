"""Django admin: batches with their statistics and exports; read-mostly views of the records.

The batch page shows `annotation.stats.batch_statistics` as `annotation.batch_figures` presents
it (tables, and two SVG charts drawn on the server). Lists annotate their counts in
`get_queryset` and join what they display (`list_select_related`), so a page of rows costs a
fixed number of queries. Labels, skips, comparisons and assignments are records of what
happened: the admin shows them and never edits them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from annotation import export, formatting, services
from annotation.admin_filters import GoldFilter, LabelGoldFilter, ReviewedFilter
from annotation.batch_figures import present
from annotation.models import (
    Assignment,
    Batch,
    Comparison,
    Dialogue,
    Label,
    Response,
    Review,
    Skip,
    Turn,
)
from annotation.stats import batch_statistics

# --- batches ------------------------------------------------------------------------------------


def _count(queryset: QuerySet, field: str) -> Coalesce:
    """The number of rows of `queryset` whose `field` is the outer row, as a subquery (joining
    comparisons and labels in one query would multiply the counts)."""
    counted = (
        queryset.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _stream(records, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        export.jsonl_lines(records), content_type="application/x-ndjson; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# What each export button and action streams, by the name in its file and URL.
EXPORTS = {
    "training": export.training_records,
    "trl": export.trl_records,
    "raw": export.raw_records,
}


def _export(batches: list[Batch], kind: str) -> StreamingHttpResponse:
    return _stream(EXPORTS[kind](batches), _export_name(batches, kind))


def _export_name(batches: list[Batch], kind: str) -> str:
    names = "+".join(b.name for b in batches[:3]) + ("+more" if len(batches) > 3 else "")
    return f"{kind}-{names or 'none'}.jsonl"


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    change_form_template = "admin/annotation/batch/change_form.html"
    change_list_template = "admin/annotation/batch/change_list.html"
    list_display = [
        "name",
        "status",
        "models",
        "temperatures",
        "comparison_count",
        "label_count",
        "heldout_count",
        "opened_at",
        "closed_at",
    ]
    list_filter = ["status"]
    list_select_related = ["model_a", "model_b"]
    search_fields = ["name"]
    readonly_fields = ["status", "opened_at", "closed_at"]
    fields = [
        "name",
        "status",
        ("model_a", "temperature_a"),
        ("model_b", "temperature_b"),
        ("top_p", "max_new_tokens"),
        ("heldout_share", "heldout_max"),
        "overlap",
        ("opened_at", "closed_at"),
    ]
    actions = ["close_batches", "open_next_batch", "export_training", "export_trl", "export_raw"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A batch opens through services.open_next_batch (the action and the button), which
        # closes the open one first: at most one batch is open.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Batch | None = None) -> bool:
        # A batch is the record of a week's collection: closed, never deleted.
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Batch]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                comparison_count=_count(Comparison.objects.all(), "batch"),
                heldout_count=_count(Comparison.objects.filter(heldout=True), "batch"),
                label_count=_count(Label.objects.all(), "comparison__batch"),
            )
        )

    @admin.display(description="models (a / b)")
    def models(self, batch: Batch) -> str:
        return f"{batch.model_a} / {batch.model_b}"

    @admin.display(description="temperatures (a / b)")
    def temperatures(self, batch: Batch) -> str:
        return f"{batch.temperature_a:g} / {batch.temperature_b:g}"

    @admin.display(description="comparisons", ordering="comparison_count")
    def comparison_count(self, batch: Batch) -> int:
        return batch.comparison_count

    @admin.display(description="labels", ordering="label_count")
    def label_count(self, batch: Batch) -> int:
        return batch.label_count

    @admin.display(description="held out", ordering="heldout_count")
    def heldout_count(self, batch: Batch) -> int:
        return batch.heldout_count

    def changelist_view(self, request: HttpRequest, extra_context=None):
        extra_context = {
            "can_open_next": self.has_change_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and not add:
            context["stats"] = present(batch_statistics(obj))
            context["export_urls"] = {
                kind: reverse("admin:annotation_batch_export", args=[obj.pk, kind])
                for kind in EXPORTS
            }
        return super().render_change_form(request, context, add, change, form_url, obj)

    # The actions. Closing and opening change state, so they need the change permission.

    @admin.action(description="Close the selected batches", permissions=["change"])
    def close_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        closed = services.close_batches(batches=queryset)
        self.message_user(request, f"Closed {closed} batch{'es' if closed != 1 else ''}.")

    @admin.action(
        description="Open the next batch (closes the open one; the selection is ignored)",
        permissions=["change"],
    )
    def open_next_batch(self, request: HttpRequest, queryset: QuerySet[Batch] | None = None):
        try:
            batch = services.open_next_batch()
        except services.AnnotationError as error:
            self.message_user(request, f"No batch opened: {error}", messages.ERROR)
            return None
        self.message_user(
            request,
            f"Opened batch {batch.name}, served by {batch.model_a} and {batch.model_b}.",
            messages.SUCCESS,
        )
        return None

    @admin.action(description="Export training rows (JSONL)", permissions=["view"])
    def export_training(self, request: HttpRequest, queryset: QuerySet[Batch]):
        return _export(list(queryset.order_by("opened_at")), "training")

    @admin.action(description="Export training rows for TRL (JSONL)", permissions=["view"])
    def export_trl(self, request: HttpRequest, queryset: QuerySet[Batch]):
        return _export(list(queryset.order_by("opened_at")), "trl")

    @admin.action(description="Export raw labels, reviews and skips (JSONL)", permissions=["view"])
    def export_raw(self, request: HttpRequest, queryset: QuerySet[Batch]):
        return _export(list(queryset.order_by("opened_at")), "raw")

    # Buttons on the pages: open the next batch (list), export this batch (batch page).

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "open-next/",
                wrap(require_POST(self.open_next_view)),
                name="annotation_batch_open_next",
            ),
            path(
                "<path:object_id>/export/<slug:kind>/",
                wrap(self.export_view),
                name="annotation_batch_export",
            ),
            *super().get_urls(),
        ]

    def open_next_view(self, request: HttpRequest):
        if not self.has_change_permission(request):
            raise PermissionDenied
        self.open_next_batch(request)
        return HttpResponseRedirect(reverse("admin:annotation_batch_changelist"))

    def export_view(self, request: HttpRequest, object_id: str, kind: str):
        if not self.has_view_permission(request):
            raise PermissionDenied
        batch = self.get_object(request, unquote(object_id))
        if batch is None or kind not in EXPORTS:
            raise Http404(f"no {kind} export of batch {object_id}")
        return _export([batch], kind)


# --- the records --------------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records of what happened: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def _comparison_link(comparison_id: int) -> str:
    url = reverse("admin:annotation_comparison_change", args=[comparison_id])
    return format_html('<a href="{}">c{}</a>', url, comparison_id)


def _excerpt(text: str, length: int = 80) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


class TurnInline(admin.TabularInline):
    model = Turn
    fields = ["index", "prompt", "prompt_tokens", "reply", "comparison_link"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("comparison")

    @admin.display(description="comparison")
    def comparison_link(self, turn: Turn) -> str:
        comparison = getattr(turn, "comparison", None)
        return _comparison_link(comparison.pk) if comparison else "–"


@admin.register(Dialogue)
class DialogueAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "batch",
        "source",
        "guideline",
        "risky",
        "author",
        "turn_count",
        "created_at",
    ]
    list_filter = [
        "batch",
        "source",
        "guideline",
        "risky",
        ("author", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["batch", "author"]
    search_fields = ["turns__prompt", "author__username"]
    # Tags may be corrected (a prompt that turns out to be adversarial); the rest is history.
    readonly_fields = ["batch", "author", "source", "created_at"]
    fields = ["batch", "author", "source", "guideline", "risky", "created_at"]
    inlines = [TurnInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(turn_count=Count("turns"))

    @admin.display(description="turns", ordering="turn_count")
    def turn_count(self, dialogue: Dialogue) -> int:
        return dialogue.turn_count


class ResponseInline(admin.TabularInline):
    model = Response
    fields = [
        "side",
        "model_version",
        "temperature",
        "top_p",
        "seed",
        "text",
        "num_tokens",
        "finish_reason",
        "generation_ms",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("model_version")


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    """A comparison is a record, except that an admin may make it a gold item: its expected
    choice (side a or b, as the responses below are named) and optionally safety label."""

    list_display = [
        "id",
        "batch",
        "prompt",
        "status",
        "left",
        "heldout",
        "gold_choice",
        "context_tokens",
        "label_count",
        "created_at",
    ]
    list_filter = [
        "batch",
        "turn__dialogue__guideline",
        "status",
        "heldout",
        GoldFilter,
        ReviewedFilter,
    ]
    list_select_related = ["batch", "turn"]
    search_fields = ["turn__prompt"]
    inlines = [ResponseInline]
    fields = [
        "batch",
        "turn",
        "prompt",
        "status",
        "left",
        "heldout",
        ("gold_choice", "gold_safety"),
        "context_tokens",
        "error",
        "created_at",
        "ready_at",
    ]
    readonly_fields = [
        "batch",
        "turn",
        "prompt",
        "status",
        "left",
        "heldout",
        "context_tokens",
        "error",
        "created_at",
        "ready_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(label_count=Count("labels"))

    @admin.display(description="prompt")
    def prompt(self, comparison: Comparison) -> str:
        return _excerpt(comparison.turn.prompt)

    @admin.display(description="labels", ordering="label_count")
    def label_count(self, comparison: Comparison) -> int:
        return comparison.label_count


@admin.register(Label)
class LabelAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "comparison_link",
        "batch",
        "annotator",
        "chosen",
        "position",
        "strength",
        "safety",
        "edited",
        "seconds",
        "review_status",
        "created_at",
    ]
    list_filter = [
        "comparison__batch",
        "comparison__turn__dialogue__guideline",
        "strength",
        "safety",
        ("annotator", admin.RelatedOnlyFieldListFilter),
        "review_status",
        "comparison__heldout",
        LabelGoldFilter,
    ]
    list_select_related = ["comparison__batch", "annotator"]
    search_fields = ["annotator__username", "rationale"]
    date_hierarchy = "created_at"

    @admin.display(description="comparison", ordering="comparison")
    def comparison_link(self, label: Label) -> str:
        return _comparison_link(label.comparison_id)

    @admin.display(description="batch", ordering="comparison__batch__name")
    def batch(self, label: Label) -> str:
        return label.comparison.batch.name

    @admin.display(description="shown")
    def position(self, label: Label) -> str:
        return "left" if label.chosen == label.comparison.left else "right"

    @admin.display(description="edited", boolean=True)
    def edited(self, label: Label) -> bool:
        return bool(label.edited_response)

    @admin.display(description="time", ordering="time_spent_ms")
    def seconds(self, label: Label) -> str:
        return formatting.seconds(label.time_spent_ms)


@admin.register(Skip)
class SkipAdmin(ReadOnlyAdmin):
    list_display = ["id", "comparison_link", "batch", "annotator", "reason", "note", "created_at"]
    list_filter = [
        "comparison__batch",
        "comparison__turn__dialogue__guideline",
        "reason",
        ("annotator", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["comparison__batch", "annotator"]
    search_fields = ["annotator__username", "note"]

    @admin.display(description="comparison", ordering="comparison")
    def comparison_link(self, skip: Skip) -> str:
        return _comparison_link(skip.comparison_id)

    @admin.display(description="batch", ordering="comparison__batch__name")
    def batch(self, skip: Skip) -> str:
        return skip.comparison.batch.name


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "comparison_link",
        "batch",
        "annotator",
        "status",
        "locked_until",
        "updated_at",
    ]
    list_filter = [
        "comparison__batch",
        "status",
        ("annotator", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["comparison__batch", "annotator"]
    search_fields = ["annotator__username"]

    @admin.display(description="comparison", ordering="comparison")
    def comparison_link(self, assignment: Assignment) -> str:
        return _comparison_link(assignment.comparison_id)

    @admin.display(description="batch", ordering="comparison__batch__name")
    def batch(self, assignment: Assignment) -> str:
        return assignment.comparison.batch.name


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "label_link",
        "annotator",
        "reviewer",
        "outcome",
        "reason",
        "note",
        "created_at",
    ]
    list_filter = [
        "label__comparison__batch",
        "outcome",
        "reason",
        ("label__annotator", admin.RelatedOnlyFieldListFilter),
        ("reviewer", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["label__annotator", "reviewer"]
    search_fields = ["label__annotator__username", "reviewer__username", "note"]

    @admin.display(description="label", ordering="label")
    def label_link(self, review: Review) -> str:
        url = reverse("admin:annotation_label_change", args=[review.label_id])
        return format_html('<a href="{}">l{}</a>', url, review.label_id)

    @admin.display(description="annotator", ordering="label__annotator__username")
    def annotator(self, review: Review) -> str:
        return review.label.annotator.get_username()
