"""Every response carries the Content-Security-Policy (tandem.security) beside Django's security
headers, and no page Tandem serves needs an inline script: the annotators' pages, the research
pages, admin, Swagger UI and the error pages."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tandem.security import CONTENT_SECURITY_POLICY

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


@pytest.fixture
def staff_client(make_user, batch) -> Client:
    admin = make_user("ada", "annotator", "researcher", staff=True)
    admin.is_superuser = True  # admin's change lists need the model permissions
    admin.save(update_fields=["is_superuser"])
    client = Client()
    client.force_login(admin)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/annotate/",
        "/research/",
        "/admin/",
        "/admin/annotation/batch/",
        "/admin/rlhf/iteration/",
        "/api/docs/",
        "/annotate/comparisons/999999/",  # a 404 page
    ],
)
def test_pages_have_the_policy_and_no_inline_script(staff_client, path):
    response = staff_client.get(path)
    assert response.status_code in (200, 404), path
    assert response["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    page = response.content.decode()
    assert not INLINE_SCRIPT.findall(page), INLINE_SCRIPT.findall(page)
    assert not INLINE_HANDLER.findall(page), INLINE_HANDLER.findall(page)


def test_the_policy_allows_no_inline_script_and_keeps_the_other_headers(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    # The API's JSON and error responses carry it too.
    api = client.post("/annotate/api/queue/next/")
    assert api.status_code == 403 and "Content-Security-Policy" in api


def test_swagger_ui_loads_its_start_up_script_from_its_own_url(staff_client):
    page = staff_client.get("/api/docs/").content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', page)
    start_up = [src for src in scripts if "script" in src.split("?", 1)[-1]]
    assert len(start_up) == 1, scripts
    script = staff_client.get(start_up[0].replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
