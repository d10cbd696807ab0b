"""manage.py simulate on the real stack: simulated annotators write gold prompts (or take
imported ones from the queue) and label the pairs a real `generate` worker samples, a real
`train` worker runs each week's iteration and publishes, and the command writes its report
(both test passes: the embedded default, then PostgreSQL and Redis). The tiny model's words are
noise, so nothing here asserts improvement: only that the weeks ran through the whole loop, in
either mode, and the report says so."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from loop_fixtures import FAST

from annotation.models import Assignment, Batch, Comparison, Dialogue, Label
from rlhf.models import Iteration, ModelVersion
from rlhf.train.data import STRENGTHS

REPORT_KEYS = {"config", "base", "weeks", "versions", "figures"}
NO_OVERLAP = {"items": 0, "agreement": None, "alpha": None, "fleiss_kappa": None}
ITERATION_STEPS = {
    "export",
    "reward_helpfulness",
    "reward_safety",
    "rejection_sampling",
    "evaluate",
    "publish",
}


def simulate(tmp_path, **options) -> str:
    """Run the command small and fast (the tiny model, 8 tokens, the stages' FAST settings) with
    its report in tmp_path/report; returns what it printed."""
    out = io.StringIO()
    call_command(
        "simulate",
        seed=3,
        hyperparameters=json.dumps(FAST),
        max_new_tokens=8,
        heldout_share=0.5,
        timeout=240,
        report=tmp_path / "report",
        stdout=out,
        **options,
    )
    return out.getvalue()


def test_two_simulated_weeks_publish_a_version_each(
    transactional_db, tiny_version, celery_worker, train_workers, tmp_path
):
    Batch.objects.create(name="sim-start", model_a=tiny_version, model_b=tiny_version)
    celery_worker.wait_ready()
    train_workers()
    log = simulate(
        tmp_path, weeks=2, annotators=2, prompts_per_week=6, edit_rate=0.5, eval_prompts=3
    )
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # Progress was shown, for the annotation and for each iteration's steps (ids are the
    # database's: earlier tests of the run created iterations too).
    assert "week 1/2: 6/6 labelled" in log, log
    second = report["weeks"][1]["iteration"]
    assert f"iteration {second}: reward_helpfulness done in" in log, log
    assert f"iteration {second} succeeded" in log, log

    assert set(report) == REPORT_KEYS
    assert report["base"] == "tiny" and report["config"]["hyperparameters"]["reward"]["seed"] == 3
    assert (report["config"]["mode"], report["config"]["overlap"]) == ("write", 1)
    weeks = report["weeks"]
    assert [w["week"] for w in weeks] == [1, 2]
    published = [w["published"] for w in weeks]
    for week in weeks:
        version = ModelVersion.objects.get(name=week["published"])
        assert version.status == ModelVersion.Status.PUBLISHED
        assert Iteration.objects.get(pk=week["iteration"]).status == Iteration.Status.SUCCEEDED
        assert week["labels"]["labels"] == week["labels"]["comparisons"] == 6
        assert week["labels"]["heldout"] >= 1
        assert (week["labels"]["mode"], week["labels"]["overlap"]) == ("write", 1)
        # One label per item: nothing for the agreement between annotators to read.
        assert week["labels"]["between_annotators"] == NO_OVERLAP
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
    assert "seed 3, write mode</h1>" in page and "<td>n/a (0)</td>" in page


def test_a_queue_week_labels_the_imported_prompts_claim_by_claim(
    transactional_db, tiny_version, celery_worker, train_workers, tmp_path
):
    Batch.objects.create(name="sim-queue", model_a=tiny_version, model_b=tiny_version)
    celery_worker.wait_ready()
    train_workers()
    log = simulate(
        tmp_path, weeks=1, annotators=2, prompts_per_week=4, mode="queue", overlap=2, eval_prompts=1
    )
    assert "week 1/1: imported 4 prompts, 8 places" in log and "week 1/1: 8/8 labelled" in log, log
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report) == REPORT_KEYS
    assert (report["config"]["mode"], report["config"]["overlap"]) == ("queue", 2)
    (week,) = report["weeks"]
    labelled = week["labels"]
    assert (labelled["mode"], labelled["overlap"]) == ("queue", 2)
    assert labelled["labels"] == 8 and labelled["comparisons"] == 4
    # Every item labelled twice: the batch page's agreement figures cover all four.
    agreement = labelled["between_annotators"]
    assert agreement["items"] == 4 and 0.0 <= agreement["agreement"] <= 1.0
    assert [v["name"] for v in report["versions"]] == ["tiny", week["published"]]
    assert ModelVersion.objects.get(name=week["published"]).status == ModelVersion.Status.PUBLISHED

    # The prompts came in as an admin imports them, and every label through a claimed place:
    # each item's two places taken by the two annotators, one label per place taken.
    batch = Batch.objects.get(name=week["batch"])
    assert batch.overlap == 2
    dialogues = Dialogue.objects.filter(batch=batch)
    assert dialogues.count() == 4
    assert set(dialogues.values_list("source", "author")) == {(Dialogue.Source.IMPORTED, None)}
    places = Assignment.objects.filter(comparison__batch=batch)
    assert places.count() == 8 and set(places.values_list("status", flat=True)) == {
        Assignment.Status.DONE
    }
    labels = Label.objects.filter(comparison__batch=batch)
    assert sorted(labels.values_list("comparison", "annotator__username")) == sorted(
        places.values_list("comparison", "annotator__username")
    )
    for comparison in Comparison.objects.filter(batch=batch):
        annotators = {label.annotator.username for label in comparison.labels.all()}
        assert annotators == {"sim-annotator-1", "sim-annotator-2"}
    assert all(label.time_spent_ms > 0 for label in labels)
    # The training export reads one row per label: both labels of an item train the models.
    export = Iteration.objects.get(pk=week["iteration"]).steps.get(name="export")
    assert export.metrics["rows"] == 8
    page = (tmp_path / "report" / "report.html").read_text()
    assert "seed 3, queue mode (overlap 2)</h1>" in page
    assert f"<td>{agreement['agreement']:.3f} (4)</td>" in page


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"weeks": 0}, "weeks must be at least 1"),
        ({"algorithm": "sft"}, "unknown algorithm 'sft'"),
        ({"hyperparameters": "{not json"}, "--hyperparameters: not JSON"),
        ({"hyperparameters": "no-such-file.json"}, "--hyperparameters: cannot read"),
        ({"hyperparameters": '{"ppo": {"kl_beta": "big"}}'}, "hyperparameters: ppo.kl_beta"),
        ({"noise": 1.5}, "noise must be in [0, 1]"),
        ({"mode": "mixed"}, "unknown mode 'mixed'"),
        ({"overlap": 2}, "overlap is for queue mode"),
        (
            {"mode": "queue", "overlap": 0},
            "overlap: Ensure this value is greater than or equal to 1",
        ),
        (
            {"mode": "queue", "overlap": 11},
            "overlap: Ensure this value is less than or equal to 10",
        ),
        ({"mode": "queue", "overlap": 2}, "overlap 2 needs at least as many annotators, got 1"),
    ],
)
def test_bad_input_is_a_command_error(db, tmp_path, options, message):
    arguments = {"weeks": 1, "annotators": 1, "prompts_per_week": 1, "report": tmp_path, **options}
    with pytest.raises(CommandError, match=message.replace("[", r"\[")):
        call_command("simulate", **arguments)
