"""The batch page's figures: `annotation.stats.BatchStatistics` as the admin template shows
them (numbers formatted as text, tables of rows) and the geometry of its two charts, which the
template draws as inline SVG (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

from annotation.formatting import number, percent, seconds
from annotation.stats import BatchStatistics, Bin


def strength_chart(bins: list[Bin], width: int = 420, bar: int = 22, gap: int = 8) -> dict:
    """Horizontal bars, one per strength: the geometry the template draws as SVG."""
    label_width, count_width = 190, 60
    room = width - label_width - count_width
    most = max((b.count for b in bins), default=0) or 1
    bars = [
        {
            "y": i * (bar + gap),
            "text_y": i * (bar + gap) + bar * 0.7,
            "width": round(room * b.count / most, 1),
            "count_x": label_width + round(room * b.count / most, 1) + 6,
            "label": b.label,
            "count": b.count,
            "share": percent(b.share),
        }
        for i, b in enumerate(bins)
    ]
    return {
        "width": width,
        "height": len(bins) * (bar + gap),
        "bar": bar,
        "label_width": label_width,
        "bars": bars,
    }


def daily_chart(days: list, width: int = 560, height: int = 160) -> dict:
    """Vertical bars, one per day with labels."""
    axis, top = 24, 16  # room for the dates below and the counts above
    slot = width / max(len(days), 1)
    bar = max(min(slot * 0.7, 48), 2)
    most = max((count for _, count in days), default=0) or 1
    plot = height - axis - top
    columns = []
    for i, (day, count) in enumerate(days):
        bar_height = round(plot * count / most, 1)
        x = i * slot + (slot - bar) / 2
        columns.append(
            {
                "x": round(x, 1),
                "y": round(top + plot - bar_height, 1),
                "height": bar_height,
                "center": round(x + bar / 2, 1),
                "count_y": round(top + plot - bar_height - 4, 1),
                "count": count,
                "day": day.isoformat(),
                "short": day.strftime("%d %b"),
            }
        )
    return {
        "width": width,
        "height": height,
        "bar": round(bar, 1),
        "baseline": top + plot,
        "date_y": height - 6,
        "columns": columns,
        "label_every": max(1, len(days) // 10),  # at most about ten dates under the axis
    }


def _win_rate(stats: BatchStatistics) -> str:
    """The position-corrected win rate, with the raw one and the labels per placement."""
    win = stats.win_rate
    return (
        f"{percent(win.corrected)} corrected for position "
        f"(raw {percent(win.raw)}; shown left in {win.a_left:,} labels, right in {win.a_right:,})"
    )


def present(stats: BatchStatistics) -> dict:
    """The statistics as the batch page shows them: formatted tables and chart geometry."""
    summary = [
        ("Labels", f"{stats.labels:,}"),
        ("Held-out labels", f"{stats.heldout_labels:,}"),
        ("Share “negligibly better / unsure”", percent(stats.unsure_share)),
        ("Median time per label", seconds(stats.median_ms)),
        ("Chose the left response (position bias)", percent(stats.left_share)),
        (
            f"Human win rate of {stats.win_rate.model_a} over {stats.win_rate.model_b}",
            _win_rate(stats),
        ),
        ("Mean tokens per prompt", number(stats.prompt_tokens_mean)),
        ("Mean tokens per response", number(stats.response_tokens_mean)),
        ("Dialogues", f"{stats.dialogues:,}"),
        (
            "Turns per dialogue (mean / max)",
            f"{number(stats.turns_per_dialogue_mean, 2)} / {stats.turns_per_dialogue_max or '–'}",
        ),
        (
            "Agreement on overlapping items",
            f"{percent(stats.agreement)} of {stats.overlap_pairs:,} annotator pairs "
            f"on {stats.overlap_items:,} items",
        ),
        ("Krippendorff's α (ordinal, signed strength)", number(stats.alpha, 3)),
        ("Fleiss' κ (choice)", number(stats.fleiss_kappa, 3)),
        ("Gold items", f"{stats.gold_items:,}"),
        (
            f"Annotators below the gold floor ({percent(stats.gold_floor)})",
            ", ".join(stats.flagged) or "none",
        ),
        ("Comparisons", f"{stats.comparisons:,}"),
        ("Held-out comparisons (test set)", f"{stats.heldout:,}"),
        ("Ready comparisons", f"{stats.ready:,}"),
        ("Failed generations", f"{stats.failed:,}"),
        ("Skips", f"{stats.skips:,}"),
    ]
    annotators = [
        {
            "username": a.username,
            "labels": f"{a.labels:,}",
            "hours": number(a.hours, 2),
            "per_hour": number(a.labels_per_hour),
            "median": seconds(a.median_ms),
            "left": percent(a.left_share),
            "kappa": number(a.kappa, 3),
            "alpha": number(a.alpha, 3),
            "gold": "–"
            if a.gold_accuracy is None
            else f"{percent(a.gold_accuracy)} of {a.gold_labels:,}",
            "flagged": a.below_gold_floor,
            "reviews": f"{a.accepted:,} / {a.rejected:,} / {a.sent_back:,}",
        }
        for a in stats.annotators
    ]

    def table(bins):
        return [(b.label, f"{b.count:,}", percent(b.share)) for b in bins]

    return {
        "summary": summary,
        "strengths": table(stats.per_strength),
        "safety": table(stats.per_safety),
        "skips": table(stats.skips_by_reason),
        "annotators": annotators,
        "strength_chart": strength_chart(stats.per_strength),
        "daily_chart": daily_chart(stats.labels_per_day),
        "labels_per_day": [(d.isoformat(), f"{c:,}") for d, c in stats.labels_per_day],
    }
