"""Hostile and malformed input to the research API: every one a 400 (or 415 for a body that is
not JSON at all) in the API's error format, never a 500, and nothing stored."""

from __future__ import annotations

import pytest

from rlhf.models import Iteration, PublicationEvent

START = "/api/iterations/"


def post_raw(client, path: str, body: bytes | str, content_type="application/json"):
    return client.generic("POST", path, body, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{algorithm:", "JSON parse error"),
        ('{"algorithm": "dpo",}', "JSON parse error"),
        (b'{"algorithm": "dp\xff"}', "JSON parse error"),  # not UTF-8
        ('{"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": NaN}}}', "NaN"),
        ('{"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": Infinity}}}', "Infinity"),
        ('{"algorithm": "dpo", "batches": ["\\ud800"]}', "lone surrogate"),
        ('{"algorithm": "dpo", "hyperparameters": {"dpo": {"\\udfff": 1}}}', "lone surrogate"),
        ('{"algorithm": "dpo", "batches": ["a\\u0000"]}', "NUL"),
        ('{"algorithm": "dpo", "hyperparameters": {"dpo": {"x": "\\u0000"}}}', "NUL"),
        ('{"algorithm": "dpo", "hyperparameters": {"dpo": {"\\u0000": 1}}}', "NUL"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    ],
)
def test_bodies_that_are_not_usable_json_are_400(world, researcher, body, why):
    response = post_raw(researcher, START, body)
    assert response.status_code == 400, response.content
    assert why in response.json()["detail"]
    assert response.json()["field"] is None
    assert Iteration.objects.count() == 1


def test_a_body_over_the_upload_limit_is_400(world, researcher, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = '{"algorithm": "dpo", "hyperparameters": {"dpo": {"x": "%s"}}}' % ("y" * 10_000)
    response = post_raw(researcher, START, body)
    assert response.status_code == 400
    assert response.json()["detail"] == "the request body is over the limit of 10000 bytes"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([1, 2], None),
        ("dpo", None),
        ({"algorithm": 5}, "algorithm"),
        ({"algorithm": ["dpo"]}, "algorithm"),
        ({"algorithm": "dpo", "batches": "2026-w47"}, "batches"),
        ({"algorithm": "dpo", "batches": [["2026-w47"]]}, "batches.0"),
        ({"algorithm": "dpo", "batches": ["w"] * 1001}, "batches"),
        ({"algorithm": "dpo", "hyperparameters": ["dpo"]}, "hyperparameters"),
        ({"algorithm": "dpo", "hyperparameters": {"dpo": 3}}, "hyperparameters.dpo"),
        (
            {"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": [0.1]}}},
            "hyperparameters.dpo.beta",
        ),
        ({"algorithm": "dpo", "parent": {"name": "tiny"}}, "parent"),
        ({"algorithm": "dpo", "auto_publish": "maybe"}, "auto_publish"),
        # A literal backslash-u is text like any other, not a NUL.
        (
            {"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": "\\u0000"}}},
            "hyperparameters.dpo.beta",
        ),
        ({"algorithm": "dpo", "x" * 10_000: 1, "auto_publish": []}, "auto_publish"),
    ],
)
def test_wrong_types_are_400_naming_the_field(world, researcher, body, field):
    response = researcher.post(START, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert Iteration.objects.count() == 1


def test_deep_but_parseable_nesting_in_hyperparameters_is_400(world, researcher):
    value: object = 1
    for _ in range(500):
        value = {"v": value}
    response = researcher.post(
        START, {"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": value}}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field"] == "hyperparameters.dpo.beta"


def test_a_body_that_is_not_json_is_415(world, researcher):
    response = post_raw(researcher, START, "algorithm=dpo", "application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert set(response.json()) == {"detail", "field"}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("status=%00", 400),
        ("status=%ED%A0%80", 400),
        ("algorithm=" + "x" * 100_000, 400),
        ("page=-1", 404),
        ("page_size=%FF", 200),  # DRF ignores a page size it cannot read
    ],
)
def test_hostile_query_parameters_are_answered(world, researcher, query, code):
    response = researcher.get(f"{START}?{query}")
    assert response.status_code == code
    if code != 200:
        assert set(response.json()) == {"detail", "field"}


@pytest.mark.parametrize(
    "path", ["/api/models/%00/", "/api/models/%ED%A0%80/", "/api/batches/..%2F..%2Fetc/"]
)
def test_hostile_names_in_the_path_are_404(world, researcher, path):
    assert researcher.get(path).status_code == 404


def test_unencodable_text_in_a_rollback_reason_is_400(world, researcher):
    researcher.post("/api/models/tiny-dpo-1/publish/")
    response = post_raw(researcher, "/api/models/tiny-dpo-1/rollback/", '{"reason": "bad \\ud83d"}')
    assert response.status_code == 400
    assert not PublicationEvent.objects.filter(action="rollback").exists()
