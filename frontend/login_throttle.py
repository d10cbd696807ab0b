"""django-axes's login throttling, Tandem's part: the username it records, and the slow-down.

Repeated failed logins slow down before django-axes locks them out (tandem/settings.py,
"Logins"): each failure of an account or from a client address waits LOGIN_FAILURE_DELAY_MS
for every failure before it, so a guesser's next tries come slower and slower until the lock.
Bounded: the failure that reaches the limit and every attempt while locked are answered at
once (axes refuses those without checking a password), so a request waits at most
(limit - 2) delays."""

from __future__ import annotations

import time

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Q


def recorded_username(request, credentials: dict | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the username a login attempt sent, cut to what axes's column
    holds. The login forms check no length, so a client may send thousands of characters, which
    would overflow the column (on PostgreSQL a failed insert: a 500 instead of the form)."""
    source = credentials if credentials else request.POST
    username = source.get(settings.AXES_USERNAME_FORM_FIELD)
    if not isinstance(username, str):
        return username
    return username[: AccessAttempt._meta.get_field("username").max_length]


def slow_down(sender, credentials: dict, request=None, **kwargs) -> None:
    """user_login_failed receiver, connected after axes's own (which has counted this one)."""
    if request is None or getattr(request, "axes_locked_out", True):
        return  # locked out (or not seen by axes): refused at once
    username = recorded_username(request, credentials)
    earlier = AccessAttempt.objects.filter(
        Q(username=username) | Q(ip_address=request.axes_ip_address)
    ).aggregate(failures=Max("failures_since_start"))["failures"]
    failures = min(earlier or 1, settings.AXES_FAILURE_LIMIT) - 1
    time.sleep(failures * settings.LOGIN_FAILURE_DELAY_MS / 1000)
