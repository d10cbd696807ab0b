"""tandem.sessions: Django's database sessions with a hand-written load."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from tandem.sessions import SessionStore


@pytest.mark.django_db
def test_a_saved_session_loads_with_its_data():
    session = SessionStore()
    session["annotator"] = {"name": "rita", "items": [1, 2]}
    session.create()
    loaded = SessionStore(session.session_key)
    assert loaded["annotator"] == {"name": "rita", "items": [1, 2]}
    assert loaded.session_key == session.session_key


@pytest.mark.django_db
def test_an_expired_or_unknown_session_loads_empty_and_gets_a_new_key():
    session = SessionStore()
    session["annotator"] = "rita"
    session.create()
    Session.objects.filter(pk=session.session_key).update(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    for key in (session.session_key, "no-such-session-key-of-any-length"):
        loaded = SessionStore(key)
        assert dict(loaded.items()) == {}
        assert loaded.session_key is None
        loaded["annotator"] = "someone else"
        loaded.save()
        assert loaded.session_key not in (None, key)


@pytest.mark.django_db
def test_logging_in_and_out_through_the_pages(client, make_user):
    make_user("rita")
    response = client.post("/accounts/login/", {"username": "rita", "password": "rita-password"})
    assert response.status_code == 302
    # Logged in: past the role check, to the missing open batch.
    assert client.get("/annotate/api/progress/").status_code == 409
    client.post("/accounts/logout/")
    assert client.get("/annotate/api/progress/").status_code == 403
