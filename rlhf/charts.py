"""The loop's figures: their data as plain dicts (what the research API serves), and the same
data drawn by matplotlib as inline SVG (what the research page and admin show).

A figure is

    {"key", "title", "kind", "x_label", "y_label", "y_range": [low, high] or None,
     "series": [{"name", "points": [{"x", "y", "low", "high", "label"}]}],
     "empty": why there is nothing to show yet, or None}

where `kind` says how it is drawn: "bars" (x a category), "lines" (x a number), "path" (points
joined in order, each labelled) or "intervals" (x a category, y with its low and high).

Per iteration: reward-model accuracy per strength level and per held-out batch, the policy
stage's curves (PPO's reward and KL, DPO's implicit-reward accuracy and loss, rejection
sampling's reward against K and its fine-tuning loss). Across versions: mean helpfulness
against mean safety reward per policy (Llama 2's progression chart) and the Bradley–Terry
ratings. Each builder takes the metrics as the stages write them and never raises on missing
ones: a step that has not run gives a figure whose `empty` says so.

Django-free: the metrics are given (rlhf.selectors reads them).
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rlhf.ratings import Rating
from rlhf.train.data import STRENGTH_WORDING

Metrics = Mapping[str, Any]
KINDS = ("bars", "lines", "path", "intervals")
REWARD_MODELS = {"reward_helpfulness": "helpfulness RM", "reward_safety": "safety RM"}

# --- figure data ------------------------------------------------------------------------------


def point(
    x: float | str,
    y: float | None,
    *,
    low: float | None = None,
    high: float | None = None,
    label: str | None = None,
) -> dict[str, Any]:
    return {"x": x, "y": y, "low": low, "high": high, "label": label}


def figure(
    key: str,
    title: str,
    kind: str,
    *,
    x_label: str,
    y_label: str,
    series: Iterable[tuple[str, list[dict[str, Any]]]],
    missing: str,
    y_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """A figure of the named series that have points; `missing` says why, if none has."""
    kept = [{"name": name, "points": points} for name, points in series if points]
    return {
        "key": key,
        "title": title,
        "kind": kind,
        "x_label": x_label,
        "y_label": y_label,
        "y_range": list(y_range) if y_range else None,
        "series": kept,
        "empty": None if kept else f"No data yet: {missing}.",
    }


def curve(history: Sequence[Metrics], key: str) -> list[dict[str, Any]]:
    """A training curve: (step, history[key]) wherever the step recorded `key`."""
    return [point(row["step"], row[key]) for row in history if row.get(key) is not None]


def iteration_figures(steps: Mapping[str, Metrics]) -> list[dict[str, Any]]:
    """The figures of one iteration. `steps`: per step name, in the iteration's order, its full
    metrics (the run's metrics file, history included) or {} where it has none yet."""
    reward_models = {name: steps.get(name, {}).get("heldout") or {} for name in REWARD_MODELS}
    figures = [reward_accuracy_by_strength(reward_models), reward_accuracy_by_batch(reward_models)]
    for name, metrics in steps.items():
        if name in POLICY_FIGURES:
            figures += POLICY_FIGURES[name](name, metrics)
    return figures


def reward_accuracy_by_strength(heldout: Mapping[str, Metrics]) -> dict[str, Any]:
    """Held-out accuracy of each reward model per strength level, in the annotators' order."""
    return figure(
        "reward-accuracy-by-strength",
        "Reward-model accuracy per strength level (held out)",
        "bars",
        x_label="strength of the preference",
        y_label="accuracy",
        y_range=(0.0, 1.0),
        series=(
            (label, _accuracy_points(heldout[step].get("accuracy_by_strength"), STRENGTH_WORDING))
            for step, label in REWARD_MODELS.items()
        ),
        missing="the reward models have not been evaluated on held-out labels",
    )


def reward_accuracy_by_batch(heldout: Mapping[str, Metrics]) -> dict[str, Any]:
    return figure(
        "reward-accuracy-by-batch",
        "Reward-model accuracy per held-out batch",
        "bars",
        x_label="batch",
        y_label="accuracy",
        y_range=(0.0, 1.0),
        series=(
            (label, _accuracy_points(heldout[step].get("accuracy_by_batch")))
            for step, label in REWARD_MODELS.items()
        ),
        missing="the reward models have not been evaluated on held-out labels",
    )


def _accuracy_points(
    groups: Mapping[str, Metrics] | None, wording: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """{group: {accuracy, pairs}} as bars, in `wording`'s order (and words) where given."""
    groups = groups or {}
    keys = [key for key in wording if key in groups] if wording else sorted(groups)
    return [
        point(
            wording[key] if wording else key,
            groups[key]["accuracy"],
            label=f"{groups[key]['pairs']} pairs",
        )
        for key in keys
    ]


def ppo_figures(step: str, metrics: Metrics) -> list[dict[str, Any]]:
    history = metrics.get("history") or []
    missing = "the PPO step has not finished"
    return [
        figure(
            f"{step}-reward",
            "PPO: reward per step",
            "lines",
            x_label="step",
            y_label="R_c (probability)",
            series=[
                ("samples of the step", curve(history, "reward")),
                ("held-out prompts (greedy)", curve(history, "heldout_reward")),
            ],
            missing=missing,
        ),
        figure(
            f"{step}-kl",
            "PPO: KL to the initial policy per step",
            "lines",
            x_label="step",
            y_label="KL (nats per response)",
            series=[("KL", curve(history, "kl"))],
            missing=missing,
        ),
    ]


def dpo_figures(step: str, metrics: Metrics) -> list[dict[str, Any]]:
    history = metrics.get("history") or []
    missing = "the DPO step has not finished"
    return [
        figure(
            f"{step}-reward-accuracy",
            "DPO: implicit-reward accuracy per step",
            "lines",
            x_label="step",
            y_label="chosen's implicit reward above rejected's",
            y_range=(0.0, 1.0),
            series=[("training batch", curve(history, "reward_accuracy"))],
            missing=missing,
        ),
        figure(
            f"{step}-loss",
            "DPO: loss per step",
            "lines",
            x_label="step",
            y_label="loss",
            series=[("DPO loss", curve(history, "dpo_loss")), ("total", curve(history, "loss"))],
            missing=missing,
        ),
    ]


def rejection_figures(step: str, metrics: Metrics) -> list[dict[str, Any]]:
    by_k = metrics.get("reward_vs_k") or []
    sft_history = (metrics.get("sft") or {}).get("history") or []
    missing = "the rejection-sampling step has not finished"
    return [
        figure(
            f"{step}-reward-vs-k",
            "Rejection sampling: reward against K",
            "lines",
            x_label="K (samples per prompt)",
            y_label="R_c (probability)",
            series=[
                (f"{stat} of K samples", [point(row["k"], row[stat]) for row in by_k])
                for stat in ("max", "median")
            ],
            missing=missing,
        ),
        figure(
            f"{step}-sft-loss",
            "Rejection sampling: fine-tuning loss per step",
            "lines",
            x_label="step",
            y_label="loss",
            series=[("loss", curve(sft_history, "loss"))],
            missing=missing,
        ),
    ]


POLICY_FIGURES: dict[str, Callable[[str, Metrics], list[dict[str, Any]]]] = {
    "rejection_sampling": rejection_figures,
    "ppo": ppo_figures,
    "dpo": dpo_figures,
}


def version_figures(policies: Sequence[Metrics], ratings: Sequence[Rating]) -> list[dict[str, Any]]:
    return [progression(policies), rating_intervals(ratings)]


def progression(policies: Sequence[Metrics]) -> dict[str, Any]:
    """Mean helpfulness against mean safety reward of each evaluated policy, oldest first.
    `policies`: {"name", "parent", "evaluation"} of each, the evaluation being its iteration's
    (rlhf.train.evaluate's summary). The first policy's parent is drawn from the baseline's
    figures of that evaluation, so the path starts where the loop started."""
    points: list[dict[str, Any]] = []
    for policy in policies:
        evaluation = policy.get("evaluation") or {}
        if not points and policy.get("parent"):
            points += _progression_point(evaluation, "baseline", policy["parent"])
        points += _progression_point(evaluation, "policy", policy["name"])
    return figure(
        "policy-progression",
        "Policies: mean helpfulness against mean safety reward",
        "path",
        x_label="mean helpfulness RM probability",
        y_label="mean safety RM probability",
        series=[("policy versions", points)],
        missing="no policy has been evaluated with both reward models",
    )


def _progression_point(evaluation: Metrics, who: str, name: str) -> list[dict[str, Any]]:
    helpfulness = evaluation.get(f"mean_helpfulness_{who}")
    safety = evaluation.get(f"mean_safety_{who}")
    if helpfulness is None or safety is None:
        return []
    return [point(helpfulness, safety, label=name)]


def rating_intervals(ratings: Sequence[Rating]) -> dict[str, Any]:
    return figure(
        "version-ratings",
        "Bradley–Terry rating of each version from the labels (95% bootstrap interval)",
        "intervals",
        x_label="model version",
        y_label="rating (base = 1000)",
        series=[
            (
                "rating",
                [
                    point(
                        r.version,
                        r.rating,
                        low=r.low,
                        high=r.high,
                        label=f"{r.wins} of {r.games} games won",
                    )
                    for r in ratings
                ],
            )
        ],
        missing="no label has compared two different versions",
    )


# --- drawing ----------------------------------------------------------------------------------


def render_svg(data: Metrics) -> str | None:
    """The figure as an inline <svg> element (None for an empty one). Matplotlib's Figure is
    used without pyplot, so nothing global is kept between requests and no GUI backend is ever
    chosen; text stays text (svg.fonttype "none"), escaped by matplotlib's SVG writer."""
    if data["empty"]:
        return None
    drawing = Figure(figsize=(6.4, 3.6), layout="constrained")
    axes = drawing.subplots()
    DRAW[data["kind"]](axes, data["series"])
    # No title drawn: the page's caption and the element's aria-label carry it.
    axes.set_xlabel(data["x_label"])
    axes.set_ylabel(data["y_label"])
    if data["y_range"]:
        axes.set_ylim(*data["y_range"])
    axes.grid(alpha=0.3)
    if len(data["series"]) > 1:
        axes.legend(fontsize=8)
    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        drawing.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    # Inline in HTML: the XML declaration and doctype go; the title names it for screen readers.
    element = svg[svg.index("<svg") :]
    label = html.escape(data["title"], quote=True)
    return element.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


def _draw_bars(axes: Axes, series: Sequence[Metrics]) -> None:
    categories = list(dict.fromkeys(p["x"] for s in series for p in s["points"]))
    width = 0.8 / len(series)
    for offset, one in enumerate(series):
        y = {p["x"]: p["y"] for p in one["points"]}
        positions = [i + (offset - (len(series) - 1) / 2) * width for i in range(len(categories))]
        axes.bar(positions, [y.get(c, 0.0) for c in categories], width, label=one["name"])
    axes.set_xticks(range(len(categories)), categories, fontsize=8)


def _draw_lines(axes: Axes, series: Sequence[Metrics]) -> None:
    for one in series:
        x, y = [p["x"] for p in one["points"]], [p["y"] for p in one["points"]]
        # Markers where there are few points (a sparse held-out curve, K = 1..4).
        axes.plot(x, y, marker="o" if len(x) <= 20 else None, markersize=3, label=one["name"])
    if all(isinstance(p["x"], int) for s in series for p in s["points"]):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and K: no 2.5


def _draw_path(axes: Axes, series: Sequence[Metrics]) -> None:
    for one in series:
        x, y = [p["x"] for p in one["points"]], [p["y"] for p in one["points"]]
        axes.plot(x, y, marker="o", label=one["name"])
        axes.margins(0.15)  # room for the labels
        for p in one["points"]:
            axes.annotate(
                p["label"], (p["x"], p["y"]), textcoords="offset points", xytext=(4, 4), fontsize=7
            )


def _draw_intervals(axes: Axes, series: Sequence[Metrics]) -> None:
    for one in series:
        points = one["points"]
        x = range(len(points))
        y = [p["y"] for p in points]
        below = [p["y"] - p["low"] for p in points]
        above = [p["high"] - p["y"] for p in points]
        axes.errorbar(x, y, yerr=[below, above], fmt="o", capsize=4, label=one["name"])
        axes.set_xticks(x, [p["x"] for p in points], fontsize=8, rotation=20, ha="right")


DRAW: dict[str, Callable[[Axes, Sequence[Metrics]], None]] = {
    "bars": _draw_bars,
    "lines": _draw_lines,
    "path": _draw_path,
    "intervals": _draw_intervals,
}


def rendered(figures: Iterable[Metrics]) -> list[dict[str, Any]]:
    """What a page shows of each figure: its title, its SVG (None when empty), why it is
    empty."""
    return [
        {"key": f["key"], "title": f["title"], "svg": render_svg(f), "empty": f["empty"]}
        for f in figures
    ]
