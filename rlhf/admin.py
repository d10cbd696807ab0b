from django.contrib import admin

from rlhf.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "status", "num_params", "created_at", "published_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "source"]
    readonly_fields = ["sha256", "created_at", "published_at", "num_params"]
