"""Who may use the research API: API tokens for scripts, the session for the browser, and only
researchers and admins.

A token is `tdm_` and 43 URL-safe characters (256 random bits), sent as `Authorization: Bearer
<token>` (or `Token <token>`). Only its SHA-256 is stored (ApiToken.digest) and a request finds
its row by that digest: the database compares hashes the client cannot choose, so comparing
them leaks nothing about a stored token, and a leaked database holds no working token.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from annotation.permissions import RESEARCHER, has_role
from rlhf.models import ApiToken

TOKEN_PREFIX = "tdm_"
KEYWORDS = (b"bearer", b"token")
# last_used_at is written at most this often: a script polling every second would otherwise
# turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(*, user: AbstractBaseUser, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`: its row, and the token itself, which is never stored and so can
    be shown only now."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=token[: ApiToken._meta.get_field("prefix").max_length],
        digest=token_digest(token),
    )
    return row, token


def revoke_api_tokens(*, tokens: QuerySet[ApiToken]) -> int:
    """Refuse these tokens from now on (the rows stay, for the record); returns how many were
    still live."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>` or `Token <token>`. A request without that header is
    left to the next authenticator (the session); one with a bad token is refused."""

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() not in KEYWORDS:
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                "the Authorization header must be 'Bearer <token>'"
            )
        try:
            token = words[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("invalid token") from None
        row = (
            ApiToken.objects.select_related("user")
            .filter(digest=token_digest(token), revoked_at__isnull=True)
            .first()
        )
        if row is None or not row.user.is_active:
            raise exceptions.AuthenticationFailed("invalid or revoked token")
        now = timezone.now()
        if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        return row.user, row

    def authenticate_header(self, request) -> str:
        # Named in the 401's WWW-Authenticate; without it DRF would answer 403 to anonymous.
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes ApiTokenAuthentication."""

    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "a token from `manage.py create_api_token USERNAME --name NAME`",
        }


class IsResearcher(BasePermission):
    message = "only researchers and admins may use the research API"

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, RESEARCHER)
