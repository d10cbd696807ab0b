"""The loop in Django admin: model versions with their lineage and metrics, iterations (read
only, with their steps and figures, and a cancel action), API tokens. The figures and every
change come from rlhf.selectors / rlhf.charts and rlhf.services."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from rlhf import charts, selectors, services
from rlhf.authentication import create_api_token, revoke_api_tokens
from rlhf.models import ApiToken, Iteration, IterationStep, ModelVersion

ADMIN_LOG_LINES = 20


def _pretty_json(data: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(data, indent=2, sort_keys=True))


def _change_link(obj: Any) -> str:
    if obj is None:
        return "—"
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "status",
        "parent",
        "iteration",
        "num_params",
        "created_at",
        "published_at",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["parent", "iteration"]
    search_fields = ["name", "source"]
    readonly_fields = [
        "sha256",
        "created_at",
        "published_at",
        "num_params",
        "lineage",
        "metrics_table",
    ]

    @admin.display(description="lineage")
    def lineage(self, obj: ModelVersion) -> str:
        """Its ancestors back to the base, the iteration that trained it, and its children."""
        ancestors, parent = [], obj.parent
        while parent is not None:
            ancestors.append(parent)
            parent = parent.parent
        children = list(obj.children.order_by("created_at"))
        return format_html(
            "<p>ancestors: {}</p><p>trained by: {}</p><p>children: {}</p>",
            format_html_join(" ← ", "{}", ((_change_link(a),) for a in ancestors)) or "none",
            _change_link(obj.iteration),
            format_html_join(", ", "{}", ((_change_link(c),) for c in children)) or "none",
        )

    @admin.display(description="metrics (as recorded)")
    def metrics_table(self, obj: ModelVersion) -> str:
        return _pretty_json(obj.metrics)


class IterationStepInline(admin.TabularInline):
    model = IterationStep
    fields = [
        "index",
        "name",
        "status",
        "attempts",
        "seconds",
        "started_at",
        "finished_at",
        "error",
        "headline",
    ]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Iteration | None = None) -> bool:
        return False

    @admin.display(description="metrics")
    def headline(self, step: IterationStep) -> str:
        return _pretty_json(step.metrics) if step.metrics else "—"


@admin.register(Iteration)
class IterationAdmin(admin.ModelAdmin):
    """Iterations as a record: nothing is edited here (the research API starts them); the one
    action, cancel, goes through services.cancel_iteration."""

    change_form_template = "rlhf/admin_iteration_change_form.html"
    list_display = [
        "id",
        "status",
        "algorithm",
        "current_step",
        "progress_display",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "algorithm"]
    list_select_related = ["created_by", "parent"]
    search_fields = ["created_by__username", "parent__name"]
    inlines = [IterationStepInline]
    actions = ["cancel"]
    fields = [
        ("status", "algorithm", "device"),
        ("parent", "auto_publish"),
        "batches",
        "hyperparameters",
        "created_by",
        ("current_step", "progress_display"),
        "versions_trained",
        "metrics_table",
        "error",
        "traceback",
        ("worker", "heartbeat_at", "attempts"),
        ("created_at", "started_at", "finished_at"),
        "log_tail",
    ]
    readonly_fields = [
        "status",
        "algorithm",
        "device",
        "parent",
        "auto_publish",
        "batches",
        "hyperparameters",
        "created_by",
        "current_step",
        "progress_display",
        "versions_trained",
        "metrics_table",
        "error",
        "traceback",
        "worker",
        "heartbeat_at",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "log_tail",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Iteration | None = None) -> bool:
        return False  # a read-only record: the detail page is a view page

    def has_delete_permission(self, request: HttpRequest, obj: Iteration | None = None) -> bool:
        return False  # its versions and run directories refer to it

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.display(description="progress")
    def progress_display(self, obj: Iteration) -> str:
        progress = obj.progress or {}
        if not progress.get("total"):
            return "—"
        share = progress["step"] / progress["total"]
        phase = f" ({progress['phase']})" if progress.get("phase") else ""
        return f"{progress['step']}/{progress['total']} ({share:.0%}){phase}"

    @admin.display(description="versions trained")
    def versions_trained(self, obj: Iteration) -> str:
        versions = obj.versions.order_by("created_at")
        return format_html_join(", ", "{}", ((_change_link(v),) for v in versions)) or "none"

    @admin.display(description="metrics")
    def metrics_table(self, obj: Iteration) -> str:
        return _pretty_json(obj.metrics) if obj.metrics else "—"

    @admin.display(description="the end of its log")
    def log_tail(self, obj: Iteration) -> str:
        lines = selectors.iteration_log_tail(iteration=obj, lines=ADMIN_LOG_LINES)
        return "no log yet" if lines is None else format_html("<pre>{}</pre>", "\n".join(lines))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        iteration = self.get_object(request, unquote(object_id))
        if iteration is not None:
            figures = selectors.iteration_figures(iteration=iteration)
            extra_context = {**(extra_context or {}), "charts": charts.rendered(figures)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Cancel the selected iterations", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Iteration]) -> None:
        cancelled, refused = 0, []
        for iteration in queryset:
            try:
                services.cancel_iteration(iteration=iteration)
            except services.LoopConflict as error:
                refused.append(f"{iteration.pk}: {error}")
            else:
                cancelled += 1
        if cancelled:
            self.message_user(
                request,
                f"Cancelling {cancelled} iteration{'s' if cancelled != 1 else ''} "
                "(a running one stops at its next step).",
            )
        if refused:
            self.message_user(request, "Not cancelled: " + "; ".join(refused), messages.WARNING)


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("no", "live"), ("yes", "revoked")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens for the research API. Adding one shows the token once, in a message: only its
    digest is stored. A token is never edited; it is revoked (the row stays, for the record)."""

    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "revoked_at"]
    list_filter = [RevokedFilter]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None):
        if obj is None:
            return ["user", "name"]
        return ["user", "name", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None):
        return [] if obj is None else self.get_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: ApiToken, form, change: bool) -> None:
        if change:  # every field is read-only: nothing to save
            return
        created, token = create_api_token(user=obj.user, name=obj.name)
        # The admin goes on with `obj` (its log entry, the redirect): make it the new row.
        obj.pk = created.pk
        obj.refresh_from_db()
        self.message_user(
            request,
            f"The token for {obj.user} ({obj.name}): {token} — copy it now, it is not shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = revoke_api_tokens(tokens=queryset)
        self.message_user(request, f"Revoked {revoked} token{'s' if revoked != 1 else ''}.")
