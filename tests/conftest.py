"""Suite-wide set-up: Django fixtures and the services check (tests/environment.py sets the
environment Tandem's settings read, earlier than any conftest could).

The suite runs twice (scripts/test.sh): on the embedded default (SQLite, filesystem broker)
and with DATABASE_URL/REDIS_URL pointing at PostgreSQL and Redis. Tests marked `services` need
the second; under CI=true a service that cannot be reached ends the run instead of skipping.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest

pytest_plugins = ["tests.django_fixtures", "tests.browser_fixtures"]

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=3):
            return True
    except OSError:
        return False


def services_missing() -> str | None:
    """Why the PostgreSQL + Redis configuration is not available, or None if it is."""
    database, redis = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database.startswith("postgres") or not redis:
        return "needs DATABASE_URL=postgres://… and REDIS_URL=redis://… (scripts/test.sh sets them)"
    for url, port in ((database, 5432), (redis, 6379)):
        if not _reachable(url, port):
            return f"cannot reach {urlsplit(url).netloc}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needing = [item for item in items if item.get_closest_marker("services")]
    if not needing:
        return
    reason = services_missing()
    if reason is None:
        return
    configured = os.environ.get("DATABASE_URL", "").startswith("postgres")
    if IN_CI and configured:
        raise pytest.UsageError(f"CI=true and the services are configured but down: {reason}")
    for item in needing:
        item.add_marker(pytest.mark.skip(reason=reason))
