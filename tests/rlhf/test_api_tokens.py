"""API tokens: made by the command and the admin (shown once, stored hashed), accepted as
Bearer or Token, refused once revoked; the browser's session with its CSRF check."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from rlhf.authentication import create_api_token, revoke_api_tokens
from rlhf.models import ApiToken

URL = "/api/models/"


def with_header(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def test_the_command_prints_a_token_that_is_stored_only_as_its_digest(db, people):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "rita", "--name", "laptop", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert re.fullmatch(r"tdm_[A-Za-z0-9_-]{43}", token)
    assert err.getvalue() == ""
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.prefix) == (people.researcher, "laptop", token[:12])
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ApiToken.objects.values().get())

    for keyword in ("Bearer", "Token", "bearer"):
        assert with_header(f"{keyword} {token}").get(URL).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_the_command_warns_for_a_user_the_api_would_refuse(db, people):
    err = io.StringIO()
    call_command("create_api_token", "ann", "--name", "x", stdout=io.StringIO(), stderr=err)
    assert "neither a researcher nor an admin" in err.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["nobody", "--name", "x"], "no user named"), (["rita", "--name", " "], "--name must")],
)
def test_the_command_refuses_bad_arguments(db, people, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_token", *args)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer tdm_not-a-token",
        "Bearer",
        "Bearer a b",
        "Token tdm_é".encode().decode("latin-1"),
    ],
)
def test_bad_tokens_are_401(db, people, header):
    response = with_header(header).get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert set(response.json()) == {"detail", "field"}


def test_revoked_tokens_and_inactive_users_are_refused(db, people):
    row, token = create_api_token(user=people.researcher, name="ci")
    client = with_header(f"Bearer {token}")
    assert client.get(URL).status_code == 200
    assert revoke_api_tokens(tokens=ApiToken.objects.filter(pk=row.pk)) == 1
    assert revoke_api_tokens(tokens=ApiToken.objects.filter(pk=row.pk)) == 0
    assert client.get(URL).json() == {"detail": "invalid or revoked token", "field": None}

    _, token = create_api_token(user=people.researcher, name="ci-2")
    people.researcher.is_active = False
    people.researcher.save()
    assert with_header(f"Bearer {token}").get(URL).status_code == 401


def test_an_annotators_token_is_403(db, people):
    _, token = create_api_token(user=people.annotator, name="curious")
    assert with_header(f"Bearer {token}").get(URL).status_code == 403


def test_a_session_write_needs_the_csrf_token_and_a_token_write_does_not(world, people):
    url = f"/api/iterations/{world.iteration.pk}/cancel/"
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(people.researcher)
    assert browser.get(URL).status_code == 200  # reads need no CSRF token
    refused = browser.post(url)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]

    _, token = create_api_token(user=people.researcher, name="script")
    script = APIClient(enforce_csrf_checks=True)
    script.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert script.post(url).status_code == 200


def test_the_admin_shows_a_new_token_once_and_revokes_tokens(db, people, client):
    people.admin.is_superuser = True
    people.admin.save()
    client.force_login(people.admin)
    response = client.post(
        "/admin/rlhf/apitoken/add/", {"user": people.researcher.pk, "name": "notebook"}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    token = re.search(r"tdm_[A-Za-z0-9_-]{43}", shown[0]).group()
    row = ApiToken.objects.get()
    assert row.digest == hashlib.sha256(token.encode()).hexdigest()
    assert with_header(f"Bearer {token}").get(URL).status_code == 200

    listing = client.get("/admin/rlhf/apitoken/").content.decode()
    assert row.prefix in listing and token not in listing
    assert token not in client.get(f"/admin/rlhf/apitoken/{row.pk}/change/").content.decode()

    client.post(
        "/admin/rlhf/apitoken/",
        {"action": "revoke", "_selected_action": [row.pk]},
    )
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert with_header(f"Bearer {token}").get(URL).status_code == 401
    assert client.get("/admin/rlhf/apitoken/", {"revoked": "no"}).context["cl"].result_count == 0
