"""The admin lists' filters that Django's built-in ones cannot express: a condition computed
over related rows. Their lookups are fixed choices, so they cost no query; the condition is one
EXISTS or one column test in the list's own query, whatever the number of rows."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Exists, OuterRef

from annotation.models import Review


class GoldFilter(admin.SimpleListFilter):
    """Gold items (an expected choice set) or ordinary ones, on comparisons."""

    title = "gold item"
    parameter_name = "gold"
    gold_choice = "gold_choice"  # the path to Comparison.gold_choice from the listed model

    def lookups(self, request, model_admin):
        return [("yes", "gold items"), ("no", "ordinary items")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(**{self.gold_choice: ""})
        if self.value() == "no":
            return queryset.filter(**{self.gold_choice: ""})
        return queryset


class LabelGoldFilter(GoldFilter):
    """Labels of gold items or of ordinary ones."""

    gold_choice = "comparison__gold_choice"


class ReviewedFilter(admin.SimpleListFilter):
    """Comparisons with a reviewed label, or with none (a label's own review status is a field
    of its list)."""

    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("yes", "a label was reviewed"), ("no", "no label reviewed")]

    def queryset(self, request, queryset):
        reviewed = Exists(Review.objects.filter(label__comparison=OuterRef("pk")))
        if self.value() == "yes":
            return queryset.filter(reviewed)
        if self.value() == "no":
            return queryset.filter(~reviewed)
        return queryset
