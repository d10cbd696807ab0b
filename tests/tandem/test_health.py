"""/healthz answers for the database, the broker and the artifacts root, unauthenticated."""

from __future__ import annotations

import pytest


@pytest.mark.django_db
def test_healthy(client, artifacts_root):
    artifacts_root.mkdir(parents=True, exist_ok=True)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "artifacts": "ok"}


@pytest.mark.django_db
def test_a_missing_artifacts_root_is_a_503_naming_it(client, settings, tmp_path):
    settings.ARTIFACTS_ROOT = tmp_path / "gone"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["artifacts"] == f"OSError: {tmp_path / 'gone'} is not a folder"
    assert response.json()["database"] == "ok"


@pytest.mark.django_db
def test_an_unreachable_broker_is_a_503(client, monkeypatch):
    from tandem.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:1/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] != "ok"


def test_only_get(client):
    assert client.post("/healthz").status_code == 405
