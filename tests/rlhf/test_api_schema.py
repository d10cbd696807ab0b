"""The OpenAPI schema: it builds with no warnings, the docs page is served from the installed
package's own files, and every documented operation answers as documented."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command


def test_the_schema_builds_with_no_warnings_or_errors(db, tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/iterations/" in text
    assert "/annotate/api/" not in text  # the annotators' API is not the research API


def test_the_docs_page_uses_the_sidecar_static_files(researcher):
    response = researcher.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_every_documented_operation_answers_as_documented(researcher, concrete):
    schema = researcher.get("/api/schema/", {"format": "json"}).json()
    operations = [
        (method, path, spec)
        for path, methods in schema["paths"].items()
        for method, spec in methods.items()
    ]
    assert len(operations) == 17
    # Each operation once, as a researcher: the write operations with a body of defaults (an
    # empty object), in the schema's order.
    for method, path, spec in operations:
        if method == "post":
            response = researcher.post(concrete(path), {}, format="json")
        else:
            response = researcher.get(concrete(path))
        assert str(response.status_code) in spec["responses"], (method, path, response.status_code)
        if response.status_code >= 400:
            assert set(response.json()) == {"detail", "field"}, (method, path)


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_are_for_researchers_only(client_for, path):
    assert client_for("anonymous").get(path).status_code == 401
    assert client_for("annotator").get(path).status_code == 403
    assert client_for("admin").get(path).status_code == 200
