"""The figures: their data for constructed iterations (finished steps with metrics files under
ARTIFACTS_ROOT, and one that failed before its policy step), the cross-version figures, the
SVG they render to, and the research API serving the same data."""

from __future__ import annotations

import math

import pytest

from rlhf import charts, selectors
from rlhf.models import IterationStep
from rlhf.ratings import Rating
from rlhf.train.evaluate import summarise
from tests.rlhf.research_fixtures import (
    EVALUATION,
    PPO_HISTORY,
    evaluated_policy,
    finish_step,
    new_iteration,
    rejection_ppo_iteration,
    serve_two_versions,
)


def figures_by_key(figures: list[dict]) -> dict[str, dict]:
    return {f["key"]: f for f in figures}


def xy(series: dict) -> list[tuple]:
    return [(p["x"], p["y"]) for p in series["points"]]


def test_a_finished_iterations_figures_come_from_its_steps_metrics(world):
    iteration = rejection_ppo_iteration(world.base)
    figures = figures_by_key(selectors.iteration_figures(iteration=iteration))
    assert list(figures) == [
        "reward-accuracy-by-strength",
        "reward-accuracy-by-batch",
        "rejection_sampling-reward-vs-k",
        "rejection_sampling-sft-loss",
        "ppo-reward",
        "ppo-kl",
    ]
    assert not any(f["empty"] for f in figures.values())

    helpfulness, safety = figures["reward-accuracy-by-strength"]["series"]
    assert helpfulness["name"] == "helpfulness RM"
    # In the annotators' order and words, whatever order the metrics came in.
    assert xy(helpfulness) == [("significantly better", 1.0), ("better", 0.5)]
    assert [p["label"] for p in helpfulness["points"]] == ["2 pairs", "2 pairs"]
    assert xy(safety) == [("significantly better", 0.5)]
    assert figures["reward-accuracy-by-strength"]["y_range"] == [0.0, 1.0]
    by_batch = figures["reward-accuracy-by-batch"]["series"]
    assert [xy(s) for s in by_batch] == [[("2026-w47", 0.75)], [("2026-w47", 0.5)]]

    # PPO's curves from the history in its metrics file (the row leaves the history out).
    assert "history" not in iteration.steps.get(name="ppo").metrics
    samples, heldout = figures["ppo-reward"]["series"]
    assert xy(samples) == [(row["step"], row["reward"]) for row in PPO_HISTORY]
    assert xy(heldout) == [(2, 0.42), (4, 0.50)]  # evaluated every other step
    assert xy(figures["ppo-kl"]["series"][0]) == [(1, 0.0), (2, 0.1), (3, 0.25), (4, 0.3)]

    best, median = figures["rejection_sampling-reward-vs-k"]["series"]
    assert (best["name"], xy(best)) == ("max of K samples", [(1, 0.40), (2, 0.55), (4, 0.70)])
    assert xy(median) == [(1, 0.40), (2, 0.45), (4, 0.44)]
    assert xy(figures["rejection_sampling-sft-loss"]["series"][0]) == [(1, 2.0), (2, 1.5)]


def test_an_iteration_that_failed_before_its_policy_step_shows_no_data_yet(world):
    iteration = new_iteration(world.base, "dpo")
    figures = figures_by_key(selectors.iteration_figures(iteration=iteration))
    assert list(figures) == [
        "reward-accuracy-by-strength",
        "reward-accuracy-by-batch",
        "dpo-reward-accuracy",
        "dpo-loss",
    ]
    for figure in figures.values():
        assert figure["series"] == []
        assert figure["empty"].startswith("No data yet: ")
        assert charts.render_svg(figure) is None

    finish_step(iteration, "reward_helpfulness", {"heldout": {"accuracy_by_strength": {}}})
    iteration.steps.filter(name="reward_safety").update(
        status=IterationStep.Status.FAILED, error="RuntimeError: out of memory"
    )
    figures = figures_by_key(selectors.iteration_figures(iteration=iteration))
    assert figures["reward-accuracy-by-strength"]["empty"]  # evaluated on nothing
    assert figures["dpo-loss"]["empty"] == "No data yet: the DPO step has not finished."


def test_a_dpo_steps_curves_and_a_half_written_metrics_file(world):
    iteration = new_iteration(world.base, "dpo")
    step = finish_step(
        iteration,
        "dpo",
        {"history": [{"step": 1, "loss": 0.7, "dpo_loss": 0.69, "reward_accuracy": 0.5}]},
    )
    figures = figures_by_key(selectors.iteration_figures(iteration=iteration))
    assert xy(figures["dpo-reward-accuracy"]["series"][0]) == [(1, 0.5)]
    assert [s["name"] for s in figures["dpo-loss"]["series"]] == ["DPO loss", "total"]

    # A worker writing the file right now: the row's metrics stand in (no history there).
    (step.directory / "metrics.json").write_text('{"history": [')
    figures = figures_by_key(selectors.iteration_figures(iteration=iteration))
    assert figures["dpo-loss"]["empty"]


def test_the_progression_chart_follows_the_policies_from_the_base(world):
    first = evaluated_policy("iteration-1-policy", world.base)
    evaluated_policy("iteration-2-policy", first)
    unevaluated = evaluated_policy("iteration-3-policy", first)
    unevaluated.metrics = {}
    unevaluated.save()
    [progression, ratings] = selectors.version_figures(rated=[])
    # world.trained ("tiny-dpo-1") has an evaluation without the per-model means: left out.
    [path] = progression["series"]
    assert [p["label"] for p in path["points"]] == [
        world.base.name,  # drawn from the first evaluation's baseline
        "iteration-1-policy",
        "iteration-2-policy",
    ]
    assert xy(path)[:2] == [(0.41, 0.55), (0.62, 0.71)]
    assert ratings["empty"] == "No data yet: no label has compared two different versions."


def test_evaluation_records_the_means_the_progression_chart_reads():
    records = [
        {
            "risky": risky,
            "policy_reward": 0.6,
            "baseline_reward": 0.4,
            "policy_helpfulness": h,
            "baseline_helpfulness": 0.5,
            "policy_safety": s,
            "baseline_safety": None,
            "kl": 0.1,
        }
        for risky, h, s in ((True, 0.8, 0.9), (False, 0.6, 0.7))
    ]
    summary = summarise(records)
    assert summary["mean_helpfulness_policy"] == pytest.approx(0.7)
    assert summary["mean_safety_policy"] == pytest.approx(0.8)
    assert summary["mean_helpfulness_baseline"] == 0.5
    assert summary["mean_safety_baseline"] is None  # judged by no safety model
    assert summary["mean_reward_policy"] == pytest.approx(0.6)  # the existing keys stay


def test_the_ratings_figure_shows_each_version_with_its_interval():
    rated = [
        Rating("new", 1190.0, 1110.0, 1260.0, games=100, wins=75),
        Rating("base", 1000.0, 1000.0, 1000.0, games=100, wins=25),
    ]
    figure = charts.rating_intervals(rated)
    [point, anchor] = figure["series"][0]["points"]
    assert point == {
        "x": "new",
        "y": 1190.0,
        "low": 1110.0,
        "high": 1260.0,
        "label": "75 of 100 games won",
    }
    assert anchor["x"] == "base"
    svg = charts.render_svg(figure)
    assert ">new<" in svg and ">base<" in svg


def test_every_kind_of_figure_renders_as_inline_svg_with_text_as_text(world):
    figures = selectors.iteration_figures(iteration=rejection_ppo_iteration(world.base))
    figures.append(charts.rating_intervals([Rating("a", 1000.0, 1000.0, 1000.0, 1, 1)]))
    figures.append(charts.progression([{"name": "p", "parent": "base", "evaluation": EVALUATION}]))
    assert {f["kind"] for f in figures} == set(charts.KINDS)
    for figure in figures:
        svg = charts.render_svg(figure)
        assert svg.startswith("<svg "), figure["key"]
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg
        assert svg.rstrip().endswith("</svg>")
        assert f'aria-label="{figure["title"]}"' in svg
        # svg.fonttype "none": the words are <text> a reader can select, not glyph paths.
        assert "<text" in svg and figure["x_label"] in svg
    shown = charts.rendered(figures[:1])
    assert shown[0]["svg"].startswith("<svg") and shown[0]["empty"] is None


def test_text_in_a_figure_is_escaped():
    figure = charts.rating_intervals([Rating("<script>x</script>", 1000.0, 990.0, 1010.0, 2, 1)])
    svg = charts.render_svg(figure)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_the_api_serves_the_figures_data(world, researcher):
    iteration = rejection_ppo_iteration(world.base)
    response = researcher.get(f"/api/iterations/{iteration.pk}/charts/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["iteration"] == iteration.pk
    assert body["figures"] == selectors.iteration_figures(iteration=iteration)
    assert researcher.get("/api/iterations/999999/charts/").status_code == 404


def test_the_api_serves_the_ratings_from_the_labels(world, researcher):
    games = serve_two_versions(world.closed, winner=world.base, loser=world.trained)
    body = researcher.get("/api/ratings/").json()
    assert (body["anchor"], body["anchor_rating"], body["games"]) == ("tiny", 1000.0, games)
    trained = next(r for r in body["ratings"] if r["version"] == world.trained.name)
    # Lost all 8 games (and half its virtual one): 400·log10(0.5 / 8.5) below the base.
    assert trained["rating"] == pytest.approx(1000 + 400 * math.log10(0.5 / 8.5), abs=1e-6)
    assert (trained["games"], trained["wins"]) == (8, 0)
    assert trained["low"] <= trained["rating"] <= trained["high"]

    figures = figures_by_key(researcher.get("/api/charts/").json()["figures"])
    assert list(figures) == ["policy-progression", "version-ratings"]
    points = figures["version-ratings"]["series"][0]["points"]
    assert [p["x"] for p in points] == ["tiny", world.trained.name]
