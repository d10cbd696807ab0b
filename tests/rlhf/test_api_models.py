"""The research API's model versions: lineage, publishing and rolling back (with the batch
switch), and downloads: policies in the Hugging Face Llama layout, reward models as Tandem
checkpoints, both streamed."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from rest_framework.throttling import ScopedRateThrottle

from annotation.models import Batch
from rlhf.models import ModelVersion, PublicationEvent

API = "/api/models/"


def archive(response) -> tarfile.TarFile:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-tar"
    return tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)))


def test_versions_are_listed_with_their_lineage(world, researcher):
    listing = researcher.get(API).json()
    assert [v["name"] for v in listing["results"]] == ["tiny-dpo-1", "tiny"]
    trained = listing["results"][0]
    assert trained["parent"] == "tiny"
    assert trained["iteration"] == world.iteration.pk
    assert trained["trained_on"] == ["2026-w47"]
    assert trained["metrics"] == {"win_rate": 0.5}
    assert trained["status"] == "ready"
    assert researcher.get(f"{API}tiny-dpo-1/").json() == trained


@pytest.mark.parametrize(
    ("query", "names"),
    [({"status": "published"}, ["tiny"]), ({"kind": "reward_safety"}, [])],
)
def test_versions_are_filtered(world, researcher, query, names):
    assert [v["name"] for v in researcher.get(API, query).json()["results"]] == names


@pytest.mark.parametrize(
    ("query", "field"), [({"kind": "llm"}, "kind"), ({"status": "x"}, "status")]
)
def test_a_bad_filter_is_400_naming_the_parameter(world, researcher, query, field):
    response = researcher.get(API, query)
    assert (response.status_code, response.json()["field"]) == (400, field)


def test_an_unknown_version_is_404(world, researcher):
    for response in (
        researcher.get(f"{API}nobody/"),
        researcher.post(f"{API}nobody/publish/"),
        researcher.get(f"{API}nobody/download/"),
    ):
        assert response.status_code == 404
        assert response.json() == {
            "detail": "No ModelVersion matches the given query.",
            "field": None,
        }


def test_publishing_a_ready_policy_switches_annotation_to_it(world, researcher, people):
    response = researcher.post(f"{API}tiny-dpo-1/publish/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "published"
    opened = Batch.objects.get(status=Batch.Status.OPEN)
    assert opened != world.current and (opened.model_a.name, opened.model_b.name) == (
        "tiny-dpo-1",
        "tiny",
    )
    event = PublicationEvent.objects.get()
    assert (event.action, event.actor, event.previous) == ("publish", people.researcher, world.base)

    again = researcher.post(f"{API}tiny-dpo-1/publish/")
    assert again.status_code == 409
    assert "only a ready policy publishes" in again.json()["detail"]


def test_a_reward_model_is_not_published(world, researcher):
    ModelVersion.objects.filter(pk=world.trained.pk).update(kind="reward_safety")
    response = researcher.post(f"{API}tiny-dpo-1/publish/")
    assert response.status_code == 400
    assert "not a policy" in response.json()["detail"]


def test_rolling_back_retires_the_newest_policy_and_the_one_before_serves(world, researcher):
    researcher.post(f"{API}tiny-dpo-1/publish/")
    response = researcher.post(f"{API}tiny-dpo-1/rollback/", {"reason": "worse"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "tiny"
    assert ModelVersion.objects.get(name="tiny-dpo-1").status == "retired"
    assert PublicationEvent.objects.filter(action="rollback", reason="worse").exists()

    refused = researcher.post(f"{API}tiny/rollback/", format="json")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "no earlier published policy to roll back to"


def test_a_rollback_reason_is_bounded(world, researcher):
    researcher.post(f"{API}tiny-dpo-1/publish/")
    response = researcher.post(f"{API}tiny-dpo-1/rollback/", {"reason": "x" * 501}, format="json")
    assert (response.status_code, response.json()["field"]) == (400, "reason")


def test_a_policy_downloads_in_the_hugging_face_llama_layout(world, researcher, artifacts_root):
    response = researcher.get(f"{API}tiny-dpo-1/download/")
    assert response["Content-Disposition"] == 'attachment; filename="tiny-dpo-1-hf.tar"'
    with archive(response) as tar:
        names = set(tar.getnames())
        config = json.load(tar.extractfile("tiny-dpo-1/config.json"))
    assert {"tiny-dpo-1/config.json", "tiny-dpo-1/model.safetensors"} <= names
    assert "tiny-dpo-1/tokenizer.json" in names
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 2
    # The scratch export is gone once the archive has been sent.
    assert not any((artifacts_root / "exports").iterdir())


def test_a_reward_model_downloads_as_its_tandem_checkpoint(world, researcher):
    ModelVersion.objects.filter(pk=world.trained.pk).update(kind="reward_helpfulness")
    with archive(researcher.get(f"{API}tiny-dpo-1/download/")) as tar:
        assert json.load(tar.extractfile("tiny-dpo-1/config.json"))["format"] == "tandem"
        assert "tiny-dpo-1/manifest.json" in tar.getnames()


def test_a_version_whose_files_are_incomplete_is_not_downloaded(world, researcher):
    ModelVersion.objects.filter(pk=world.trained.pk).update(status="importing", sha256="")
    response = researcher.get(f"{API}tiny-dpo-1/download/")
    assert response.status_code == 409
    assert "not complete" in response.json()["detail"]


def test_downloads_are_throttled(world, researcher, monkeypatch):
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "export", "1/hour")
    archive(researcher.get(f"{API}tiny/download/")).close()
    response = researcher.get(f"{API}tiny/download/")
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["detail"].startswith("Request was throttled.")
