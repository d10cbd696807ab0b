"""`/healthz`: can this process serve? For compose's health check and load balancers.

Checks what every request or job needs: the database answers a query, the Celery broker
accepts a connection, and the artifacts root (models, runs) is a writable folder. 200 with
each check's result when all pass, else 503 naming the failures. Unauthenticated and cheap:
nothing here reads user data.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from tandem.celery import app


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=2)


def _artifacts() -> None:
    root = settings.ARTIFACTS_ROOT
    if not root.is_dir():
        raise OSError(f"{root} is not a folder")
    if not os.access(root, os.W_OK):
        raise OSError(f"{root} is not writable")


CHECKS: dict[str, Callable[[], None]] = {
    "database": _database,
    "broker": _broker,
    "artifacts": _artifacts,
}


@never_cache
@require_GET
def healthz(request):
    results, healthy = {}, True
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as error:  # any failure is the answer, never a 500
            results[name] = f"{type(error).__name__}: {error}"
            healthy = False
    return JsonResponse(results, status=200 if healthy else 503)
