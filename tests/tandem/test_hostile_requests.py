"""Hostile request bodies and cookies, on every kind of endpoint: each is a 400 that says why
(JSON on the APIs, a page elsewhere), stores nothing, and leaves the session usable."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from annotation import services
from annotation.models import Assignment, Comparison, Dialogue, Label, Response, Skip
from rlhf.models import Iteration

DEEP_LIST = "[" * 50_000 + "]" * 50_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000

# (method, path) on each surface: the annotators' API (with and without a body of its own), the
# research API, the pages' form posts, the login pages and admin. "{held}" is a comparison the
# annotator holds.
ENDPOINTS = [
    ("POST", "/annotate/api/dialogues/"),
    ("POST", "/annotate/api/queue/next/"),
    ("GET", "/annotate/api/progress/"),
    ("POST", "/annotate/api/comparisons/{held}/label/"),
    ("POST", "/annotate/api/comparisons/{held}/skip/"),
    ("POST", "/api/iterations/"),
    ("GET", "/api/models/"),
    ("POST", "/annotate/dialogues/"),
    ("POST", "/annotate/queue/"),
    ("GET", "/annotate/"),
    ("POST", "/accounts/login/"),
    ("POST", "/admin/login/"),
    ("GET", "/admin/"),
]


@pytest.fixture
def held(batch):
    """A ready queue item; the annotator claims it in `annotator_client`."""
    [comparison] = services.import_prompts(
        batch=batch, rows=[{"prompt": "Why?", "guideline": "safety"}]
    )
    Response.objects.filter(comparison=comparison).update(
        text="Because.", num_tokens=2, finish_reason="stop"
    )
    Comparison.objects.filter(pk=comparison.pk).update(status=Comparison.Status.READY)
    return comparison


@pytest.fixture
def annotator(make_user):
    return make_user("rita", "annotator", "researcher", staff=True)


@pytest.fixture
def annotator_client(annotator, held) -> Client:
    client = Client()
    client.force_login(annotator)
    assert services.claim_next(annotator=annotator).pk == held.pk
    return client


def stored() -> dict[str, int]:
    return {
        "dialogues": Dialogue.objects.count(),
        "labels": Label.objects.count(),
        "skips": Skip.objects.count(),
        "iterations": Iteration.objects.count(),
        "locked": Assignment.objects.filter(status=Assignment.Status.LOCKED).count(),
    }


def assert_refused(response, path: str, why: str) -> None:
    assert response.status_code == 400, response.content[:300]
    if path.startswith(("/api/", "/annotate/api/")):
        body = response.json()
        assert body["field"] is None and why in body["detail"], body
    else:
        page = response.content.decode()
        assert "This request was refused" in page and why in page, page[:300]


def assert_session_works(client: Client) -> None:
    response = client.get("/annotate/api/progress/")
    assert response.status_code == 200 and response.json()["batch"] == "test-week"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("body", [DEEP_LIST, DEEP_OBJECT], ids=["list", "object"])
def test_deeply_nested_json_is_400_everywhere(annotator_client, held, method, path, body):
    path = path.format(held=held.pk)
    before = stored()
    response = annotator_client.generic(method, path, body, content_type="application/json")
    assert_refused(response, path, "the JSON is nested too deeply")
    assert stored() == before
    assert_session_works(annotator_client)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_a_body_over_the_limit_is_400_everywhere(
    annotator_client, held, settings, method, path, content_type
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    path = path.format(held=held.pk)
    if content_type == "application/json":
        body = json.dumps({"prompt": "x" * 2_000, "guideline": "helpfulness"})
    else:
        body = "prompt=" + "x" * 2_000 + "&guideline=helpfulness"
    before = stored()
    response = annotator_client.generic(method, path, body, content_type=content_type)
    assert_refused(response, path, "the request body is over the limit of 1000 bytes")
    assert stored() == before
    assert_session_works(annotator_client)


@pytest.mark.parametrize("path", ["/annotate/dialogues/", "/accounts/login/", "/admin/login/"])
def test_a_multipart_form_over_the_limit_is_a_readable_400(annotator_client, settings, path):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    before = stored()
    response = annotator_client.post(path, {"prompt": "x" * 2_000, "guideline": "helpfulness"})
    assert_refused(response, path, "the request body is over the limit of 1000 bytes")
    assert stored() == before
    assert_session_works(annotator_client)


def test_too_many_form_fields_is_a_readable_400(annotator_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    body = "&".join(f"f{i}=x" for i in range(20))
    response = annotator_client.generic(
        "POST", "/annotate/dialogues/", body, content_type="application/x-www-form-urlencoded"
    )
    assert_refused(response, "/annotate/dialogues/", "the request has too many fields")
    assert_session_works(annotator_client)


# Every JSON field of the annotators' API, choice fields included: a lone surrogate (the JSON
# escape, which decodes to an unencodable string) or a NUL.
FIELDS = [
    ("/annotate/api/dialogues/", {"prompt": "Hi", "guideline": "helpfulness"}, "prompt"),
    ("/annotate/api/dialogues/", {"prompt": "Hi", "guideline": "helpfulness"}, "guideline"),
    ("/annotate/api/comparisons/{held}/label/", {"chosen": "left"}, "chosen"),
    ("/annotate/api/comparisons/{held}/label/", {"strength": "better"}, "strength"),
    ("/annotate/api/comparisons/{held}/label/", {"safety": "both_safe"}, "safety"),
    ("/annotate/api/comparisons/{held}/label/", {"rationale": "mine"}, "rationale"),
    ("/annotate/api/comparisons/{held}/label/", {"edited_response": "e"}, "edited_response"),
    ("/annotate/api/comparisons/{held}/skip/", {"reason": "other"}, "reason"),
    ("/annotate/api/comparisons/{held}/skip/", {"reason": "other", "note": "n"}, "note"),
    ("/api/iterations/", {"algorithm": "dpo"}, "algorithm"),
]
LABEL = {"chosen": "left", "strength": "better", "safety": "both_safe", "time_spent_ms": 5}


@pytest.mark.parametrize(("path", "base", "field"), FIELDS)
@pytest.mark.parametrize(
    ("escape", "why"),
    [("\\ud800", "a lone surrogate"), ("\\udfff", "a lone surrogate"), ("\\u0000", "a NUL")],
)
def test_unstorable_text_in_any_field_is_400(
    annotator_client, held, path, base, field, escape, why
):
    path = path.format(held=held.pk)
    data = {**(LABEL if "label" in path else {}), **base, field: "x"}
    body = json.dumps(data).replace(f'"{field}": "x"', f'"{field}": "a{escape}b"')
    assert escape in body
    before = stored()
    response = annotator_client.post(path, body, content_type="application/json")
    assert_refused(response, path, why)
    assert stored() == before
    assert_session_works(annotator_client)


def test_unstorable_text_in_a_form_is_a_readable_400(annotator_client):
    before = stored()
    response = annotator_client.post(
        "/annotate/dialogues/", {"prompt": "Hi\x00there", "guideline": "helpfulness"}
    )
    assert response.status_code == 400
    assert "Null characters are not allowed" in response.content.decode()
    assert stored() == before
    assert_session_works(annotator_client)


def test_an_error_message_quoting_a_surrogate_still_renders():
    from rest_framework.exceptions import ValidationError

    from tandem.api_errors import exception_handler

    response = exception_handler(ValidationError({"guideline": ['"\ud800" is not valid.']}), {})
    assert response.status_code == 400
    assert response.data == {"detail": 'guideline: "\\ud800" is not valid.', "field": "guideline"}
    json.dumps(response.data, ensure_ascii=False).encode("utf-8")  # encodable: no exception


@pytest.mark.parametrize(
    "cookie",
    [
        "abc\x00def" * 5,
        "\x00" * 32,
        "x" * 10_000,
        "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF",  # the right length, not Django's alphabet
        "%%%%%%%%%%%%%%%%%%%%",
        "é" * 32,
    ],
    ids=["nul", "all-nul", "long", "uppercase", "garbage", "non-ascii"],
)
def test_a_malformed_session_cookie_is_no_session(batch, make_user, cookie):
    make_user("sam")
    client = Client()
    client.cookies["sessionid"] = cookie
    page = client.get("/annotate/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    api = client.get("/annotate/api/progress/")
    assert api.status_code == 403 and "detail" in api.json()
    # The same client logs in, and its new session works.
    login = client.post("/accounts/login/", {"username": "sam", "password": "sam-password"})
    assert login.status_code == 302
    assert_session_works(client)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/annotation/batch/?q=%00",  # admin's search: PostgreSQL refuses a NUL
        "/admin/auth/user/?q=a%00b",
        "/admin/annotation/batch/?status%00=open",
        "/api/models/?kind=%00",
        "/annotate/api/progress/?x=%00",
        "/accounts/login/?next=%00",
    ],
)
def test_a_nul_in_the_query_string_is_400(annotator_client, path):
    response = annotator_client.get(path)
    assert_refused(response, path.split("?")[0], "the query string holds a NUL character")
    assert_session_works(annotator_client)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
@pytest.mark.parametrize(
    ("username", "password"),
    [("ri\x00ta", "rita-password"), ("rita", "rita\x00password"), ("r" * 10_000, "x")],
    ids=["nul-username", "nul-password", "long-username"],
)
def test_hostile_login_fields_are_refused_on_the_form(make_user, path, username, password):
    from axes.models import AccessAttempt

    make_user("rita", staff=True)
    client = Client()
    response = client.post(path, {"username": username, "password": password})
    assert response.status_code == 200  # the login form again, with its error
    page = response.content.decode()
    assert "Null characters are not allowed" in page or "correct username and password" in page
    # A failure counts (a long name cut to what axes stores); a NUL never reaches a lookup.
    recorded = list(AccessAttempt.objects.values_list("username", flat=True))
    assert recorded == ([] if "\x00" in username + password else [username[:255]])
    login = client.post(path, {"username": "rita", "password": "rita-password"})
    assert login.status_code == 302
