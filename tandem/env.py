"""Reading Tandem's settings from environment variables, with errors that name the variable.

Settings fail at start-up, not on the first request: a typo in `DATABASE_URL` must not become a
server that starts and then answers every page with a 500.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

_DATABASE_ENGINES = {
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "sqlite": "django.db.backends.sqlite3",
}


def get_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no"
    )


def get_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def get_float(name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name}={value:g} must be between {minimum:g} and {maximum:g}")
    return value


def get_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def get_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r}: expected one of {', '.join(choices)}")
    return value


def get_json_object(name: str, default: dict) -> dict:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object")
    return value


def get_cron(name: str, default: str):
    """A Celery crontab from a five-field cron line (minute hour day-of-month month
    day-of-week), parsed now so a typo fails at start-up, not when beat first runs."""
    from celery.schedules import crontab

    value = os.environ.get(name, "").strip() or default
    fields = value.split()
    if len(fields) != 5:
        raise ImproperlyConfigured(f"{name}={value!r}: expected 5 cron fields, got {len(fields)}")
    minute, hour, day_of_month, month, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month,
            day_of_week=day_of_week,
        )
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}={value!r}: {error}") from None


def get_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name, "").strip()
    return Path(raw).expanduser().resolve() if raw else default


def parse_database_url(url: str, *, name: str = "DATABASE_URL") -> dict:
    """Django's DATABASES entry for `postgres://user:password@host:port/name?option=value` or
    `sqlite:///relative/or//absolute/path.sqlite3`."""
    parts = urlsplit(url)
    engine = _DATABASE_ENGINES.get(parts.scheme)
    if engine is None:
        schemes = ", ".join(sorted(_DATABASE_ENGINES))
        raise ImproperlyConfigured(
            f"{name}={url!r}: unknown scheme {parts.scheme!r}; expected one of {schemes}"
        )
    if parts.scheme == "sqlite":
        path = unquote(parts.path)[
            1:
        ]  # sqlite:///var/db.sqlite3 is relative, sqlite:////x absolute
        if not path:
            raise ImproperlyConfigured(f"{name}={url!r}: a SQLite URL needs a file path")
        return {"ENGINE": engine, "NAME": path}
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ImproperlyConfigured(f"{name}={url!r}: the URL names no database")
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name}={url!r}: the port is not a number") from None
    return {
        "ENGINE": engine,
        "NAME": database,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def check_redis_url(url: str, *, name: str = "REDIS_URL") -> str:
    if urlsplit(url).scheme not in {"redis", "rediss"}:
        raise ImproperlyConfigured(f"{name}={url!r}: expected a redis:// or rediss:// URL")
    return url
