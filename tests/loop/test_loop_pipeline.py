"""The loop end to end with a real worker process on the `train` queue and the tiny model: a
closed week's labels become two reward models and a new policy, published in one switch with
the next batch, which then samples from it. The first test pass runs it on SQLite and the
filesystem broker (the embedded default), the second on PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from django.test import Client
from loop_fixtures import FAST, finished, wait_for

from annotation.models import Batch, Comparison
from annotation.services import start_dialogue
from annotation.tasks import generate_comparison
from modelcore.shared_trunk import CommonParts, common_parts, model_digests
from rlhf import services
from rlhf.authentication import create_api_token
from rlhf.models import Iteration, IterationStep, ModelVersion, PublicationEvent
from rlhf.serving import load_version


@pytest.mark.parametrize(
    ("algorithm", "policy_steps"),
    [("rejection_sampling", ["rejection_sampling"]), ("dpo", ["dpo"])],
)
def test_a_closed_week_becomes_the_next_published_model(
    loop, train_workers, algorithm, policy_steps
):
    # Started over the API, as a researcher's script does: with a token.
    _, token = create_api_token(user=loop.researcher, name="script")
    # The policy trains its top block only (the CPU default trains SmolLM2's top two of 30; the
    # tiny model has two), so the next batch can sample it and its parent on their shared trunk.
    hyperparameters = {**FAST, algorithm: {**FAST[algorithm], "train_layers": 1}}
    response = Client().post(
        "/api/iterations/",
        {"algorithm": algorithm, "hyperparameters": hyperparameters},
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "week-47"},
    )
    assert response.status_code == 201, response.content
    iteration = Iteration.objects.get(pk=response.json()["id"])
    assert iteration.batches == [loop.closed.name] and iteration.parent == loop.base
    worker = train_workers()
    wait_for(finished(iteration), worker)
    assert iteration.status == Iteration.Status.SUCCEEDED, iteration.traceback

    steps = list(iteration.steps.all())
    assert [s.name for s in steps] == [
        "export",
        "reward_helpfulness",
        "reward_safety",
        *policy_steps,
        "evaluate",
        "publish",
    ]
    assert all(s.status == IterationStep.Status.SUCCEEDED and s.attempts == 1 for s in steps)
    assert all(s.seconds > 0 and s.finished_at for s in steps)
    export = steps[0].metrics
    assert export["heldout_rows"] == 8 and export["train_rows"] == 32

    for kind in (ModelVersion.Kind.REWARD_HELPFULNESS, ModelVersion.Kind.REWARD_SAFETY):
        [rm] = ModelVersion.objects.filter(iteration=iteration, kind=kind)
        assert rm.status == ModelVersion.Status.READY and rm.sha256
        assert rm.trained_on == [loop.closed.name] and rm.parent == loop.base
        assert set(rm.metrics["accuracy_by_strength"]) <= {
            "significantly_better",
            "better",
            "slightly_better",
            "negligibly_better",
        }
        assert rm.metrics["pairs"] > 0

    [policy] = ModelVersion.objects.filter(iteration=iteration, kind=ModelVersion.Kind.POLICY)
    assert policy.status == ModelVersion.Status.PUBLISHED and policy.parent == loop.base
    evaluation = policy.metrics["evaluation"]
    assert 0 <= evaluation["win_rate"] <= 1 and evaluation["prompts"] == 8
    assert iteration.metrics["published"] == policy.name

    # One switch: the week's batch closed, the next one serves the new and the previous policy.
    loop.current.refresh_from_db()
    assert loop.current.status == Batch.Status.CLOSED
    serving = Batch.objects.get(status=Batch.Status.OPEN)
    assert (serving.model_a, serving.model_b) == (policy, loop.base)
    [event] = PublicationEvent.objects.all()
    assert (event.version, event.previous, event.batch) == (policy, loop.base, serving.name)

    # The next batch samples from the new policy, through the block and LM head it shares
    # with its parent bit for bit (rlhf.serving reads the same digests).
    digests = [model_digests(load_version(version).model) for version in (policy, loop.base)]
    assert common_parts(*digests) == CommonParts(blocks=1, head=True)
    comparison = start_dialogue(
        author=loop.researcher, prompt="Name a colour.", guideline="helpfulness"
    ).comparison
    generate_comparison(comparison.pk)
    comparison.refresh_from_db()
    assert comparison.status == Comparison.Status.READY, comparison.error
    assert {r.model_version for r in comparison.responses.all()} == {policy, loop.base}
    assert "train_iteration" in worker.log()


def test_an_iteration_trains_on_two_processes(loop, train_workers):
    """TRAIN_PROCESSES=2: every stage runs data parallel (gloo here, one GPU each on a GPU
    machine), with its progress and the iteration's records kept by the worker."""
    iteration = services.start_iteration(
        actor=loop.researcher, algorithm="dpo", hyperparameters=FAST
    ).iteration
    worker = train_workers(TRAIN_PROCESSES="2")
    wait_for(finished(iteration), worker)
    assert iteration.status == Iteration.Status.SUCCEEDED, iteration.traceback
    assert "processes=2" in iteration.log_path.read_text()
    assert ModelVersion.objects.get(iteration=iteration, kind="policy").status == "published"
