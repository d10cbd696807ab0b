"""Login throttling (django-axes) on both login pages: failures past the limit lock the account
and the client for the cool-off time, with a readable page; a success clears the count."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django.utils import timezone

LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def limit_of_three(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.LOGIN_FAILURE_DELAY_MS = 0


def attempt(path: str, username: str, password: str, address: str = "10.0.0.1"):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


def assert_locked_out(response) -> None:
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins" in page and "after 3 failed attempts" in page
    assert "0:15:00" in page


@pytest.mark.parametrize("path", LOGIN_PAGES)
def test_failures_past_the_limit_lock_the_account_and_the_client(make_user, path):
    make_user("rita", "annotator", staff=True)
    make_user("sam", "annotator", staff=True)
    for _ in range(2):
        refused = attempt(path, "rita", "wrong")
        assert refused.status_code == 200
        assert "correct username and password" in refused.content.decode()
    assert_locked_out(attempt(path, "rita", "wrong"))
    # Locked: the right password is refused too, for the account from another client, and for
    # another account from this client.
    assert_locked_out(attempt(path, "rita", "rita-password"))
    assert_locked_out(attempt(path, "rita", "rita-password", address="10.0.0.2"))
    assert_locked_out(attempt(path, "sam", "sam-password"))
    # Another account from another client logs in.
    assert attempt(path, "sam", "sam-password", address="10.0.0.3").status_code == 302
    # After the cool-off the account logs in again.
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    assert attempt(path, "rita", "rita-password").status_code == 302


def test_a_successful_login_clears_the_count(make_user):
    make_user("rita")
    path = "/accounts/login/"
    for _ in range(2):
        assert attempt(path, "rita", "wrong").status_code == 200
    assert attempt(path, "rita", "rita-password").status_code == 302
    for _ in range(2):
        assert attempt(path, "rita", "wrong").status_code == 200
    client = Client(REMOTE_ADDR="10.0.0.1")
    logged_in = client.post(path, {"username": "rita", "password": "rita-password"})
    assert logged_in.status_code == 302
    assert client.get("/annotate/api/progress/").status_code == 409  # in: no batch is open


def test_failures_slow_down_before_the_lock_and_the_lock_answers_at_once(make_user, settings):
    settings.AXES_FAILURE_LIMIT = 4
    settings.LOGIN_FAILURE_DELAY_MS = 300
    make_user("rita")
    waits = []
    for expected in (200, 200, 200, 429, 429):
        started = time.monotonic()
        assert attempt("/accounts/login/", "rita", "wrong").status_code == expected
        waits.append(time.monotonic() - started)
    # The second failure waits one delay, the third two; the one that locks, and every attempt
    # while locked, is answered without waiting (a locked attempt checks no password either).
    assert waits[1] >= 0.3 and waits[2] >= 0.6, waits
    assert waits[4] < waits[2] - 0.3, waits
