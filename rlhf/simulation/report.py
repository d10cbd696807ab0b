"""The simulation's report: `report.json` (everything measured) and `report.html` (one
self-contained page: tables and inline SVG figures drawn by rlhf.charts).

Figures: per week, both reward models' held-out accuracy per strength level (the iteration's
reward steps' metrics); across versions, gold helpfulness against gold safety (Llama 2's
progression chart, Fig. 11, with the gold judge in place of the reward models) and each
version's gold win rate against the base model.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlhf import charts


def figures(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    weekly = [
        {
            **(chart := charts.reward_accuracy_by_strength(week["reward_models"])),
            "key": f"week-{week['week']}-{chart['key']}",
            "title": f"Week {week['week']} ({week['batch']}): {chart['title']}",
        }
        for week in report["weeks"]
    ]
    return [*weekly, progression(report["versions"]), win_rates(report["versions"])]


def progression(versions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return charts.figure(
        "gold-progression",
        "Versions: gold helpfulness against gold safety (held-out prompts)",
        "path",
        x_label="gold helpfulness (held-out harmless prompts)",
        y_label="gold safety (1 - unsafe rate, held-out risky prompts)",
        series=[
            (
                "model versions",
                [
                    charts.point(v["gold_helpfulness"], v["gold_safety"], label=v["name"])
                    for v in versions
                ],
            )
        ],
        missing="no version has been evaluated",
    )


def win_rates(versions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return charts.figure(
        "gold-win-rate",
        "Versions: gold win rate against the base model (ties count half)",
        "bars",
        x_label="model version",
        y_label="win rate against the base",
        y_range=(0.0, 1.0),
        series=[("win rate", [charts.point(v["name"], v["win_rate_vs_base"]) for v in versions])],
        missing="no version has been evaluated",
    )


def write(directory: Path, report: Mapping[str, Any]) -> None:
    """Both files, each replaced whole (a reader never sees half a report)."""
    data = {**report, "figures": figures(report)}
    _replace(directory / "report.json", json.dumps(data, indent=2) + "\n")
    _replace(directory / "report.html", page(data))


def _replace(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def page(report: Mapping[str, Any]) -> str:
    config = report["config"]
    sections = [
        f"<h1>Simulated weeks of the loop: {config['weeks']} weeks, seed {config['seed']}, "
        f"{_mode(config)}</h1>",
        "<p>Configuration:</p>",
        f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>",
        "<h2>Weeks</h2>",
        _table(
            (
                "week",
                "batch",
                "served by",
                "labels (held out)",
                "gold ties",
                "flipped",
                "edited",
                "agreement with gold",
                "agreement between annotators (items)",
                "helpfulness RM accuracy",
                "safety RM accuracy",
                "published",
                "seconds: annotation / iteration / evaluation",
            ),
            [
                (
                    w["week"],
                    w["batch"],
                    " vs ".join(w["served_by"]),
                    f"{w['labels']['labels']} ({w['labels']['heldout']})",
                    w["labels"]["gold_ties"],
                    w["labels"]["flipped"],
                    w["labels"]["edited"],
                    _number(w["labels"]["agreement_with_gold"]),
                    f"{_number(w['labels']['between_annotators']['agreement'])} "
                    f"({w['labels']['between_annotators']['items']})",
                    _number(w["reward_models"]["reward_helpfulness"].get("accuracy")),
                    _number(w["reward_models"]["reward_safety"].get("accuracy")),
                    w["published"],
                    " / ".join(
                        _number(s, 1)
                        for s in (
                            w["seconds"]["annotation"],
                            sum(w["seconds"]["iteration_steps"].values()),
                            w["seconds"]["evaluation"],
                        )
                    ),
                )
                for w in report["weeks"]
            ],
        ),
        "<h2>Versions (gold judge, held-out prompts)</h2>",
        _table(
            ("version", "week", "gold helpfulness", "unsafe rate", "win rate vs base", "export"),
            [
                (
                    v["name"],
                    v["week"],
                    _number(v["gold_helpfulness"]),
                    _number(v["unsafe_rate"]),
                    _number(v["win_rate_vs_base"]),
                    v["hf_export"],
                )
                for v in report["versions"]
            ],
        ),
        "<h2>Figures</h2>",
    ]
    for shown in charts.rendered(report["figures"]):
        body = shown["svg"] or f"<p>{html.escape(shown['empty'])}</p>"
        sections.append(
            f"<figure>{body}<figcaption>{html.escape(shown['title'])}</figcaption></figure>"
        )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>Tandem simulation report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "figure{display:inline-block;margin:1em}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _mode(config: Mapping[str, Any]) -> str:
    """How the annotators got their prompts: they wrote them, or took them from the queue."""
    if config["mode"] == "queue":
        return f"queue mode (overlap {config['overlap']})"
    return "write mode"


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
