"""Every research API operation, for every role: anonymous 401 (with the header saying how to
authenticate), annotators 403, researchers and admins let in. The operations come from the
schema, so a new endpoint is checked the moment it is documented."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

# The schema and its docs page are not in the schema themselves.
UNDOCUMENTED = [("get", "/api/schema/"), ("get", "/api/docs/")]


def operations() -> list[tuple[str, str]]:
    paths = SchemaGenerator().get_schema(public=True)["paths"]
    return [(method, path) for path, methods in paths.items() for method in methods] + UNDOCUMENTED


def call(client, method: str, path: str):
    if method == "post":
        return client.post(path, {}, format="json")
    return getattr(client, method)(path)


@pytest.mark.parametrize(("method", "path"), operations())
def test_anonymous_requests_are_401_with_how_to_authenticate(client_for, concrete, method, path):
    response = call(client_for("anonymous"), method, concrete(path))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    if (method, path) not in UNDOCUMENTED:  # those answer in their own format (YAML, HTML)
        assert response.json() == {
            "detail": "Authentication credentials were not provided.",
            "field": None,
        }


@pytest.mark.parametrize(("method", "path"), operations())
def test_annotators_are_403(client_for, concrete, method, path):
    response = call(client_for("annotator"), method, concrete(path))
    assert response.status_code == 403
    if (method, path) not in UNDOCUMENTED:
        assert response.json() == {
            "detail": "only researchers and admins may use the research API",
            "field": None,
        }


@pytest.mark.parametrize("role", ["researcher", "admin"])
@pytest.mark.parametrize(("method", "path"), operations())
def test_researchers_and_admins_are_let_in(client_for, concrete, role, method, path):
    response = call(client_for(role), method, concrete(path))
    assert response.status_code not in (401, 403), response.content
