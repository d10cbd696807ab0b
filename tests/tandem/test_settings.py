"""Settings from the environment: the parsers, and what the whole settings module does with
good and bad values (in a subprocess, since settings load once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tandem import env

ROOT = Path(__file__).resolve().parents[2]


def run_django(code: str, tmp_path: Path, **environ: str) -> subprocess.CompletedProcess:
    """Run `code` after django.setup() in a fresh interpreter with only `environ` set."""
    clean = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG"}}
    clean.update(DJANGO_SETTINGS_MODULE="tandem.settings", TANDEM_HOME=str(tmp_path), **environ)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_database_urls():
    assert env.parse_database_url("postgres://u:p%40ss@db.example:6543/tandem?sslmode=require") == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "tandem",
        "USER": "u",
        "PASSWORD": "p@ss",
        "HOST": "db.example",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }
    assert env.parse_database_url("sqlite:////abs/db.sqlite3")["NAME"] == "/abs/db.sqlite3"
    assert env.parse_database_url("sqlite:///rel/db.sqlite3")["NAME"] == "rel/db.sqlite3"


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://x/y", "unknown scheme 'mysql'"),
        ("postgres://host:port/db", "port is not a number"),
        ("postgres://host:5432", "names no database"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_bad_database_urls_name_the_problem(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        env.parse_database_url(url)


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
        env.get_bool("DEBUG", False)
    monkeypatch.setenv("ANNOTATION_LOCK_SECONDS", "ten")
    with pytest.raises(ImproperlyConfigured, match="ANNOTATION_LOCK_SECONDS='ten'"):
        env.get_int("ANNOTATION_LOCK_SECONDS", 5)
    monkeypatch.setenv("ANNOTATION_LOCK_SECONDS", "0")
    with pytest.raises(ImproperlyConfigured, match="must be at least 1"):
        env.get_int("ANNOTATION_LOCK_SECONDS", 5, minimum=1)
    with pytest.raises(ImproperlyConfigured, match="redis://"):
        env.check_redis_url("http://localhost:6379")


def test_production_needs_a_secret_key(tmp_path):
    result = run_django("", tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_bad_database_url_stops_start_up(tmp_path):
    result = run_django("", tmp_path, DEBUG="1", DATABASE_URL="oracle://x/y")
    assert result.returncode != 0
    assert "DATABASE_URL='oracle://x/y': unknown scheme" in result.stderr


def test_the_embedded_default_and_the_switch_to_services(tmp_path):
    show = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, "
        "s.CACHES['default']['BACKEND'].rsplit('.', 1)[1])"
    )
    embedded = run_django(show, tmp_path, DEBUG="1")
    assert embedded.stdout.split() == [
        "django.db.backends.sqlite3",
        "filesystem://",
        "FileBasedCache",
    ], embedded.stderr
    served = run_django(
        show,
        tmp_path,
        DEBUG="1",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
        REDIS_URL="redis://127.0.0.1:6379/3",
    )
    assert served.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://127.0.0.1:6379/3",
        "RedisCache",
    ], served.stderr


def test_production_settings_pass_the_deployment_checks(tmp_path):
    production = {
        "SECRET_KEY": "k" * 20 + "-production-secret-with-enough-variety-0123456789",
        "ALLOWED_HOSTS": "tandem.example.org",
        "DEBUG": "0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "TANDEM_HOME": str(tmp_path),
            **production,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
