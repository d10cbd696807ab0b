"""The research API's iterations and hyper-parameters: starting (idempotent), listing with
filters, the detail with steps and the log's end, cancelling."""

from __future__ import annotations

import pytest
from rest_framework.throttling import ScopedRateThrottle

from rlhf.models import Iteration, IterationStep

API = "/api/iterations/"


def start(client, body: dict, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(API, body, format="json", **headers)


def test_starting_an_iteration_queues_it_with_its_steps(world, researcher, people):
    response = start(
        researcher,
        {
            "algorithm": "dpo",
            "batches": ["2026-w47"],
            "hyperparameters": {"dpo": {"beta": 0.2}},
            "auto_publish": False,
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    iteration = Iteration.objects.get(pk=body["id"])
    assert body["status"] == "queued"
    assert body["batches"] == ["2026-w47"]
    assert body["hyperparameters"] == {"dpo": {"beta": 0.2}}
    assert body["parent"] == world.base.name  # the newest published policy
    assert body["created_by"] == people.researcher.username
    assert body["auto_publish"] is False
    assert [s.name for s in iteration.steps.order_by("index")] == Iteration.step_names("dpo")


def test_a_retry_with_the_same_idempotency_key_replays_the_first_start(world, researcher):
    body = {"algorithm": "rejection_sampling"}
    first = start(researcher, body, key="nightly-42")
    again = start(researcher, body, key="nightly-42")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Iteration.objects.filter(algorithm="rejection_sampling").count() == 1

    other = start(researcher, {"algorithm": "ppo"}, key="nightly-42")
    assert other.status_code == 409
    assert other.json()["field"] == "Idempotency-Key"


@pytest.mark.parametrize(
    ("body", "key", "field", "why"),
    [
        ({}, None, "algorithm", "This field is required."),
        ({"algorithm": "sgd"}, None, "algorithm", '"sgd" is not a valid choice.'),
        ({"algorithm": "dpo", "batches": ["2099-w01"]}, None, "batches", "unknown batch"),
        ({"algorithm": "dpo", "batches": ["no spaces"]}, None, "batches.0", "slug"),
        ({"algorithm": "dpo", "parent": "nobody"}, None, "parent", "does not exist"),
        (
            {"algorithm": "dpo", "hyperparameters": {"dpo": {"beta": "high"}}},
            None,
            "hyperparameters.dpo.beta",
            "expected a number",
        ),
        (
            {"algorithm": "dpo", "hyperparameters": {"sft": {}}},
            None,
            "hyperparameters.sft",
            "unknown stage",
        ),
        (
            {"algorithm": "dpo", "hyperparameters": {"dpo": {"out": "/etc"}}},
            None,
            "hyperparameters.dpo.out",
            "set by the pipeline",
        ),
        ({"algorithm": "dpo"}, "é" * 3, "Idempotency-Key", "printable ASCII"),
        ({"algorithm": "dpo"}, "k" * 201, "Idempotency-Key", "printable ASCII"),
    ],
)
def test_a_refused_start_names_the_field_and_why(world, researcher, body, key, field, why):
    response = start(researcher, body, key)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert why in response.json()["detail"]
    assert Iteration.objects.count() == 1  # the world's


def test_starting_from_a_batch_without_training_labels_is_refused(world, researcher):
    response = start(researcher, {"algorithm": "dpo", "batches": ["2026-w48"]})
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the batches have no training labels to learn from",
        "field": "batches",
    }


def test_iterations_are_listed_newest_first_and_filtered(world, researcher):
    start(researcher, {"algorithm": "ppo"})
    listing = researcher.get(API).json()
    assert [i["algorithm"] for i in listing["results"]] == ["ppo", "dpo"]
    assert listing["count"] == 2
    assert [i["id"] for i in researcher.get(API, {"algorithm": "dpo"}).json()["results"]] == [
        world.iteration.pk
    ]
    assert researcher.get(API, {"status": "failed"}).json()["count"] == 0


def test_pages_are_bounded(world, researcher):
    for _ in range(3):
        start(researcher, {"algorithm": "ppo", "hyperparameters": {"ppo": {"seed": _}}})
    page = researcher.get(API, {"page_size": 2, "page": 2}).json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"] is None
    assert len(researcher.get(API, {"page_size": 10_000}).json()["results"]) == 4
    assert researcher.get(API, {"page": 9}).status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [({"status": "done"}, "status"), ({"algorithm": "adam"}, "algorithm")],
)
def test_a_bad_filter_is_400_naming_the_parameter(world, researcher, query, field):
    response = researcher.get(API, query)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_the_detail_shows_steps_progress_and_the_end_of_the_log(world, researcher):
    iteration = world.iteration
    Iteration.objects.filter(pk=iteration.pk).update(
        status="running", current_step="reward_helpfulness", progress={"step": 3, "total": 10}
    )
    IterationStep.objects.filter(iteration=iteration, name="export").update(
        status="succeeded", attempts=1, seconds=1.5, metrics={"rows": 8}
    )
    url = f"{API}{iteration.pk}/"
    assert researcher.get(url).json()["log_tail"] is None  # no log yet

    iteration.directory.mkdir(parents=True, exist_ok=True)
    iteration.log_path.write_text("".join(f"line {i}\n" for i in range(100)))
    body = researcher.get(url, {"log_lines": 3}).json()
    assert body["log_tail"] == ["line 97", "line 98", "line 99"]
    assert len(researcher.get(url).json()["log_tail"]) == 50
    assert body["status"] == "running"
    assert body["progress"] == {"step": 3, "total": 10}
    export = body["steps"][0]
    assert (export["name"], export["status"], export["attempts"]) == ("export", "succeeded", 1)
    assert export["metrics"] == {"rows": 8} and export["seconds"] == 1.5
    assert [s["name"] for s in body["steps"]] == Iteration.step_names("dpo")


def test_a_long_log_is_read_from_its_end_only(world, researcher, monkeypatch):
    from rlhf import selectors

    monkeypatch.setattr(selectors, "LOG_TAIL_BYTES", 100)
    iteration = world.iteration
    iteration.directory.mkdir(parents=True, exist_ok=True)
    iteration.log_path.write_bytes(b"".join(b"line %03d \xff\n" % i for i in range(1000)))
    tail = researcher.get(f"{API}{iteration.pk}/", {"log_lines": 1000}).json()["log_tail"]
    assert tail[-1] == "line 999 \ufffd"  # undecodable bytes are replaced, not a 500
    assert 0 < len(tail) < 11 and all(line.startswith("line ") for line in tail)


@pytest.mark.parametrize("lines", ["-1", "1001", "many"])
def test_log_lines_is_bounded(world, researcher, lines):
    response = researcher.get(f"{API}{world.iteration.pk}/", {"log_lines": lines})
    assert response.status_code == 400
    assert response.json()["field"] == "log_lines"


def test_an_unknown_iteration_is_404(world, researcher):
    assert researcher.get(f"{API}999999/").status_code == 404
    assert researcher.post(f"{API}999999/cancel/").status_code == 404


def test_cancelling_a_queued_iteration_cancels_it_at_once_and_only_once(world, researcher):
    url = f"{API}{world.iteration.pk}/cancel/"
    response = researcher.post(url)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    again = researcher.post(url)
    assert again.status_code == 409
    assert again.json() == {"detail": "the iteration has already cancelled", "field": None}


def test_the_hyperparameters_say_what_each_stage_may_set(db, researcher):
    stages = researcher.get("/api/hyperparameters/").json()
    assert set(stages) == {"reward", "rejection_sampling", "ppo", "dpo", "evaluate"}
    beta = next(f for f in stages["dpo"] if f["name"] == "beta")
    assert set(beta) == {"name", "type", "required", "default", "help"}
    assert "out" not in {f["name"] for f in stages["dpo"]}  # the pipeline sets it


def test_starts_are_throttled_and_reads_are_not(world, researcher, monkeypatch):
    monkeypatch.setitem(ScopedRateThrottle.THROTTLE_RATES, "iteration-start", "1/hour")
    assert start(researcher, {"algorithm": "ppo"}).status_code == 201
    refused = start(researcher, {"algorithm": "dpo"})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert all(researcher.get(API).status_code == 200 for _ in range(3))
