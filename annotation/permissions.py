"""Roles are Django groups (created by a migration); admins are staff."""

from __future__ import annotations

from rest_framework.permissions import BasePermission

ANNOTATOR, REVIEWER, RESEARCHER = "annotator", "reviewer", "researcher"
ROLES = (ANNOTATOR, REVIEWER, RESEARCHER)


def has_role(user, role: str) -> bool:
    return user.is_authenticated and (user.is_staff or user.groups.filter(name=role).exists())


class IsAnnotator(BasePermission):
    message = "only annotators may do this"

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, ANNOTATOR)
