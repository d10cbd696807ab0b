"""manage.py simulate on the real stack: simulated annotators write gold prompts and label the
pairs a real `generate` worker samples, a real `train` worker runs each week's iteration and
publishes, and the command writes its report (both test passes: the embedded default, then
PostgreSQL and Redis). The tiny model's words are noise, so nothing here asserts improvement:
only that two weeks ran through the whole loop and the report says so."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from loop_fixtures import FAST

from annotation.models import Batch, Comparison, Label
from rlhf.models import Iteration, ModelVersion
from rlhf.train.data import STRENGTHS

ITERATION_STEPS = {
    "export",
    "reward_helpfulness",
    "reward_safety",
    "rejection_sampling",
    "evaluate",
    "publish",
}


def test_two_simulated_weeks_publish_a_version_each(
    transactional_db, tiny_version, celery_worker, train_workers, tmp_path
):
    Batch.objects.create(name="sim-start", model_a=tiny_version, model_b=tiny_version)
    celery_worker.wait_ready()
    train_workers()
    out = io.StringIO()
    call_command(
        "simulate",
        weeks=2,
        annotators=2,
        prompts_per_week=6,
        seed=3,
        edit_rate=0.5,
        hyperparameters=json.dumps(FAST),
        eval_prompts=3,
        max_new_tokens=8,
        heldout_share=0.5,
        timeout=240,
        report=tmp_path / "report",
        stdout=out,
    )
    log = out.getvalue()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # Progress was shown, for the annotation and for each iteration's steps (ids are the
    # database's: earlier tests of the run created iterations too).
    assert "week 1/2: 6/6 labelled" in log, log
    second = report["weeks"][1]["iteration"]
    assert f"iteration {second}: reward_helpfulness done in" in log, log
    assert f"iteration {second} succeeded" in log, log

    assert set(report) == {"config", "base", "weeks", "versions", "figures"}
    assert report["base"] == "tiny" and report["config"]["hyperparameters"]["reward"]["seed"] == 3
    weeks = report["weeks"]
    assert [w["week"] for w in weeks] == [1, 2]
    published = [w["published"] for w in weeks]
    for week in weeks:
        version = ModelVersion.objects.get(name=week["published"])
        assert version.status == ModelVersion.Status.PUBLISHED
        assert Iteration.objects.get(pk=week["iteration"]).status == Iteration.Status.SUCCEEDED
        assert week["labels"]["labels"] == 6 and week["labels"]["heldout"] >= 1
        assert week["labels"]["edited"] >= 1
        for rm in ("reward_helpfulness", "reward_safety"):
            assert set(week["reward_models"][rm]["accuracy_by_strength"]) <= set(STRENGTHS)
        seconds = week["seconds"]
        assert set(seconds["iteration_steps"]) == ITERATION_STEPS
        assert seconds["annotation"] > 0 and seconds["evaluation"] > 0 and seconds["export"] > 0
    # Week 2's batch was opened by week 1's publish: served by the new and the previous policy.
    assert weeks[1]["served_by"] == [published[0], "tiny"]
    assert weeks[1]["batch"] == weeks[0]["next_batch"]
    open_batch = Batch.objects.get(status=Batch.Status.OPEN)
    assert (open_batch.model_a.name, open_batch.model_b.name) == (published[1], published[0])

    # The labels came through the services: one per comparison, by the simulated annotators.
    labels = Label.objects.filter(comparison__batch__name__in=[w["batch"] for w in weeks])
    assert labels.count() == 12
    assert {label.annotator.username for label in labels} == {"sim-annotator-1", "sim-annotator-2"}
    assert all(label.time_spent_ms > 0 for label in labels)
    assert labels.exclude(edited_response="").count() == sum(w["labels"]["edited"] for w in weeks)
    assert not Comparison.objects.exclude(status=Comparison.Status.READY).exists()

    versions = {v["name"]: v for v in report["versions"]}
    assert list(versions) == ["tiny", *published]
    assert versions["tiny"]["win_rate_vs_base"] == 0.5  # against itself: every prompt a tie
    for version in versions.values():
        for figure in ("gold_helpfulness", "unsafe_rate", "win_rate_vs_base"):
            assert 0.0 <= version[figure] <= 1.0
        assert version["prompts"] == {"harmless": 3, "risky": 3}
        exported = tmp_path / "report" / version["hf_export"]
        assert json.loads((exported / "config.json").read_text())["model_type"] == "llama"
        assert (exported / "model.safetensors").stat().st_size > 0
        assert len((tmp_path / "report" / version["samples"]).read_text().splitlines()) == 6

    keys = [figure["key"] for figure in report["figures"]]
    assert keys == [
        "week-1-reward-accuracy-by-strength",
        "week-2-reward-accuracy-by-strength",
        "gold-progression",
        "gold-win-rate",
    ]
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count("<svg") == 4 and "gold helpfulness" in page and published[1] in page


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weeks": 0}, "weeks must be at least 1"),
        ({"algorithm": "sft"}, "unknown algorithm 'sft'"),
        ({"hyperparameters": "{not json"}, "--hyperparameters: not JSON"),
        ({"hyperparameters": "no-such-file.json"}, "--hyperparameters: cannot read"),
        ({"hyperparameters": '{"ppo": {"kl_beta": "big"}}'}, "hyperparameters: ppo.kl_beta"),
        ({"noise": 1.5}, "noise must be in [0, 1]"),
    ],
)
def test_bad_input_is_a_command_error(db, tmp_path, options, message):
    arguments = {"weeks": 1, "annotators": 1, "prompts_per_week": 1, "report": tmp_path, **options}
    with pytest.raises(CommandError, match=message.replace("[", r"\[")):
        call_command("simulate", **arguments)
