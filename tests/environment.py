"""Loaded with `-p tests.environment` (pyproject addopts) before pytest-django reads Tandem's
settings: a throwaway home and test database name, a test secret key, and plain HTTP for the
test client and the browser (HTTPS=1 would redirect them)."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-that-is-long-enough-for-django-checks")
os.environ.setdefault("HTTPS", "0")
os.environ.setdefault("TANDEM_HOME", tempfile.mkdtemp(prefix="tandem-tests-"))
# On PostgreSQL, a test database of this run's own (test runs at the same time don't collide).
os.environ.setdefault("DATABASE_TEST_NAME", f"test_tandem_{os.getpid()}")
# Playwright's sync API keeps an event loop running in the test's thread, which makes Django
# refuse database calls there (SynchronousOnlyOperation); the tests call Django synchronously.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
