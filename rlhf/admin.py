from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from rlhf.authentication import create_api_token, revoke_api_tokens
from rlhf.models import ApiToken, ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "num_params", "created_at", "published_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "source"]
    readonly_fields = ["sha256", "created_at", "published_at", "num_params"]


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
