"""Labels as plain records: the one way code outside this app reads them.

`training_records` yields the training JSONL rows the reward models and DPO read (one row per
label, so an item labelled by three annotators gives three rows):

    {"id": "2026-w48/c17/l31", "batch": "2026-w48", "heldout": false,
     "guideline": "helpfulness" | "safety", "risky": false,
     "context": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}],
     "prompt": ..., "chosen": ..., "rejected": ..., "edited": null | ...,
     "strength": ..., "margin": EXPORTED_MARGINS[strength], "safety": ...,
     "annotator": ..., "chosen_model": ..., "rejected_model": ..., "labelled_at": ISO 8601}

`context` holds the dialogue's earlier turns (each prompt and the reply the dialogue went on
from), [] for a first turn. Labels a reviewer rejected or sent back to their annotator are not
training rows (annotation.reviews). `trl_records` yields the same rows in TRL's conversational
preference format (`trl_row`). `raw_label_records` yields everything stored about each label,
its reviews included, and `skip_records` the skips; `manage.py export_labels --raw` writes
both, each row naming its kind in "record".

All of them stream: labels are read as plain values (no model instances), CHUNK at a time in
primary-key order, each chunk one query joining comparison, turn, dialogue, batch and
annotator, plus one for the chunk's responses and one for its dialogues' earlier turns (and
one for its reviews, in the raw export). An export holds one chunk in memory and costs three
queries per CHUNK labels (four raw).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import IO, Any

from django.db.models import F, QuerySet

from annotation.models import Batch, Label, Response, Review, ReviewStatus, Side, Skip, Turn
from rlhf.train.data import MARGINS

CHUNK = 2000

# The "margin" each row carries: Llama 2's small margin m(r) of its strength, for trainers that
# read a margin column (TRL's RewardTrainer). Informational: Tandem's reward model derives margins
# from the strength with the scheme it is configured with (rlhf.train.reward).
EXPORTED_MARGINS = MARGINS["small"]

BatchSelection = Iterable[Batch | str] | QuerySet[Batch] | None


class UnknownBatch(LookupError):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = sorted(names)
        super().__init__(
            f"unknown batch{'es' if len(self.names) > 1 else ''}: {', '.join(self.names)}"
        )


def resolve_batches(batches: BatchSelection) -> list[Batch] | None:
    """Batches given as Batch rows or names (None: all batches). An unknown name raises
    UnknownBatch naming every one that is missing."""
    if batches is None:
        return None
    if isinstance(batches, QuerySet):
        return list(batches)
    given = list(batches)
    names = {b for b in given if isinstance(b, str)}
    found = {b.name: b for b in Batch.objects.filter(name__in=names)} if names else {}
    if missing := names - found.keys():
        raise UnknownBatch(missing)
    return [found[b] if isinstance(b, str) else b for b in given]


def _selected(records: QuerySet, batches: BatchSelection, include_heldout: bool) -> QuerySet:
    """Labels or skips (anything with a `comparison`) of the given batches."""
    selected = resolve_batches(batches)
    if selected is not None:
        records = records.filter(comparison__batch__in=[b.pk for b in selected])
    if not include_heldout:
        records = records.filter(comparison__heldout=False)
    return records


# What a label record reads, joined in one query: {key in the row: lookup}. (Tandem uses
# django.contrib.auth's User, whose login name is `username`.)
LABEL_VALUES = {
    "label_id": "pk",
    "comparison_id": "comparison_id",
    "chosen": "chosen",
    "strength": "strength",
    "safety": "safety",
    "edited_response": "edited_response",
    "rationale": "rationale",
    "time_spent_ms": "time_spent_ms",
    "review_status": "review_status",
    "created_at": "created_at",
    "annotator_id": "annotator_id",
    "username": "annotator__username",
    "batch": "comparison__batch__name",
    "heldout": "comparison__heldout",
    "left": "comparison__left",
    "context_tokens": "comparison__context_tokens",
    "comparison_created_at": "comparison__created_at",
    "ready_at": "comparison__ready_at",
    "turn_index": "comparison__turn__index",
    "prompt": "comparison__turn__prompt",
    "prompt_tokens": "comparison__turn__prompt_tokens",
    "dialogue_id": "comparison__turn__dialogue_id",
    "guideline": "comparison__turn__dialogue__guideline",
    "risky": "comparison__turn__dialogue__risky",
    "source": "comparison__turn__dialogue__source",
    "dialogue_author": "comparison__turn__dialogue__author__username",
}
RESPONSE_FIELDS = [
    "comparison_id",
    "side",
    "model_version_id",
    "temperature",
    "top_p",
    "max_new_tokens",
    "seed",
    "text",
    "num_tokens",
    "finish_reason",
    "generation_ms",
]


def _values(queryset: QuerySet, values: dict[str, str]) -> QuerySet:
    """`queryset.values()` with the row keys of `values` (a field read under its own name is
    named plainly: Django refuses an alias that is a field's name)."""
    return queryset.values(
        *(name for name, lookup in values.items() if name == lookup),
        **{name: F(lookup) for name, lookup in values.items() if name != lookup},
    )


def _rows(queryset: QuerySet, values: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
    """The rows of `queryset` as plain dicts, CHUNK at a time in primary-key order (keyset
    pagination: each chunk is one short query, and memory holds one chunk)."""
    after = None
    while True:
        page = queryset if after is None else queryset.filter(pk__gt=after)
        chunk = list(_values(page.order_by("pk"), values)[:CHUNK])
        if chunk:
            yield chunk
        if len(chunk) < CHUNK:
            return
        after = chunk[-1][next(iter(values))]


def _reviews(label_ids: set[int]) -> dict[int, list[dict[str, Any]]]:
    """The reviews of these labels, oldest first, by label id."""
    reviews: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for review in (
        Review.objects.filter(label_id__in=label_ids)
        .order_by("created_at", "pk")
        .values("label_id", "reviewer__username", "outcome", "reason", "note", "created_at")
    ):
        reviews[review["label_id"]].append(
            {
                "reviewer": review["reviewer__username"],
                "outcome": review["outcome"],
                "reason": review["reason"],
                "note": review["note"],
                "reviewed_at": review["created_at"].isoformat(),
            }
        )
    return reviews


def _labelled(
    labels: QuerySet[Label], *, with_reviews: bool = False
) -> Iterator[tuple[dict, dict[str, dict], list[dict]]]:
    """(label row, its responses by side, its context) for each label, with two more queries a
    chunk: the chunk's responses, and the earlier turns of its dialogues. `with_reviews`: a
    third reads the chunk's reviews into each row's "reviews"."""
    for chunk in _rows(labels, LABEL_VALUES):
        if with_reviews:
            reviews = _reviews({row["label_id"] for row in chunk})
            for row in chunk:
                row["reviews"] = reviews.get(row["label_id"], [])
        responses: dict[int, dict[str, dict]] = defaultdict(dict)
        for response in Response.objects.filter(
            comparison_id__in={row["comparison_id"] for row in chunk}
        ).values(*RESPONSE_FIELDS, model=F("model_version__name")):
            responses[response.pop("comparison_id")][response.pop("side")] = response
        later = {row["dialogue_id"] for row in chunk if row["turn_index"] > 0}
        turns: dict[int, list[dict]] = defaultdict(list)
        if later:
            for turn in (
                Turn.objects.filter(dialogue_id__in=later)
                .order_by("dialogue_id", "index")
                .values("dialogue_id", "index", "prompt", "reply")
            ):
                turns[turn["dialogue_id"]].append(turn)
        for row in chunk:
            context = []
            for earlier in turns.get(row["dialogue_id"], ()):
                if earlier["index"] < row["turn_index"]:
                    context.append({"role": "user", "content": earlier["prompt"]})
                    context.append({"role": "assistant", "content": earlier["reply"]})
            yield row, responses[row["comparison_id"]], context


def _other(side: str) -> str:
    return Side.B if side == Side.A else Side.A


def training_records(
    batches: BatchSelection = None, *, include_heldout: bool = True
) -> Iterator[dict[str, Any]]:
    """The training rows (format above) of the labels in `batches` (Batch rows or names; None:
    every batch), in the order they were stored. Held-out rows carry "heldout": true; leave them
    out with include_heldout=False. An unknown batch name raises UnknownBatch here, before the
    first row."""
    return _training_rows(_selected(trusted_labels(), batches, include_heldout))


def trusted_labels() -> QuerySet[Label]:
    """The labels training may learn from: all but those a reviewer rejected or sent back."""
    return Label.objects.exclude(review_status__in=[ReviewStatus.REJECTED, ReviewStatus.SENT_BACK])


def _training_rows(labels: QuerySet[Label]) -> Iterator[dict[str, Any]]:
    for row, responses, context in _labelled(labels):
        chosen, rejected = responses[row["chosen"]], responses[_other(row["chosen"])]
        yield {
            "id": f"{row['batch']}/c{row['comparison_id']}/l{row['label_id']}",
            "batch": row["batch"],
            "heldout": row["heldout"],
            "guideline": row["guideline"],
            "risky": row["risky"],
            "context": context,
            "prompt": row["prompt"],
            "chosen": chosen["text"],
            "rejected": rejected["text"],
            "edited": row["edited_response"] or None,
            "strength": row["strength"],
            "margin": EXPORTED_MARGINS[row["strength"]],
            "safety": row["safety"],
            "annotator": row["username"],
            "chosen_model": chosen["model"],
            "rejected_model": rejected["model"],
            "labelled_at": row["created_at"].isoformat(),
        }


def trl_row(row: dict[str, Any]) -> dict[str, Any]:
    """A training row as TRL's conversational preference row (what DPOTrainer and
    RewardTrainer read): the dialogue so far as messages, each response as one assistant
    message. The chosen message is the annotator's edit where there is one (Llama 3 ranks
    edited > chosen > rejected, so the edit is the best response of the pair). "id" and
    "heldout" say where the row comes from and whether it is a test row (TRL passes extra
    columns through), "margin" is the column RewardTrainer reads a margin from."""
    return {
        "id": row["id"],
        "heldout": row["heldout"],
        "prompt": [*row["context"], {"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": row["edited"] or row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
        "margin": row["margin"],
    }


def trl_records(
    batches: BatchSelection = None, *, include_heldout: bool = True
) -> Iterator[dict[str, Any]]:
    """The training rows of `training_records` (same selection, same order) as `trl_row`s."""
    return map(trl_row, training_records(batches, include_heldout=include_heldout))


# The training export's formats, by the name the entry points take (`format=trl`).
TRAINING_FORMATS = {"tandem": training_records, "trl": trl_records}


def raw_label_records(
    batches: BatchSelection = None, *, include_heldout: bool = True
) -> Iterator[dict[str, Any]]:
    """Everything stored about each label, for audits and analysis rather than training:
    ids, the side shown left and the position chosen, both responses with their sampling
    parameters, token counts and generation times, the time spent and the rationale. Sides are
    the stored ones ("a" = the batch's model_a); "chosen_position" is what the annotator
    clicked."""
    return _raw_label_rows(_selected(Label.objects.all(), batches, include_heldout))


def _raw_label_rows(labels: QuerySet[Label]) -> Iterator[dict[str, Any]]:
    for row, responses, context in _labelled(labels, with_reviews=True):
        yield {
            "record": "label",
            "label_id": row["label_id"],
            "comparison_id": row["comparison_id"],
            "dialogue_id": row["dialogue_id"],
            "turn_index": row["turn_index"],
            "batch": row["batch"],
            "heldout": row["heldout"],
            "guideline": row["guideline"],
            "risky": row["risky"],
            "source": row["source"],
            "dialogue_author": row["dialogue_author"],
            "context": context,
            "prompt": row["prompt"],
            "prompt_tokens": row["prompt_tokens"],
            "context_tokens": row["context_tokens"],
            "left": row["left"],
            "right": _other(row["left"]),
            "chosen": row["chosen"],
            "rejected": _other(row["chosen"]),
            "chosen_position": "left" if row["chosen"] == row["left"] else "right",
            "strength": row["strength"],
            "margin": EXPORTED_MARGINS[row["strength"]],
            "safety": row["safety"],
            "edited_response": row["edited_response"] or None,
            "rationale": row["rationale"],
            "time_spent_ms": row["time_spent_ms"],
            "review_status": row["review_status"],
            "reviews": row["reviews"],
            "annotator": row["username"],
            "annotator_id": row["annotator_id"],
            "labelled_at": row["created_at"].isoformat(),
            "comparison_created_at": row["comparison_created_at"].isoformat(),
            "ready_at": row["ready_at"].isoformat() if row["ready_at"] else None,
            "responses": {side: responses[side] for side in sorted(responses)},
        }


def skip_records(
    batches: BatchSelection = None, *, include_heldout: bool = True
) -> Iterator[dict[str, Any]]:
    """The skips (an annotator gave an item back, with a reason), one record each."""
    return _skip_rows(_selected(Skip.objects.all(), batches, include_heldout))


SKIP_VALUES = {
    "skip_id": "pk",
    "comparison_id": "comparison_id",
    "batch": "comparison__batch__name",
    "heldout": "comparison__heldout",
    "username": "annotator__username",
    "annotator_id": "annotator_id",
    "reason": "reason",
    "note": "note",
    "created_at": "created_at",
}


def _skip_rows(skips: QuerySet[Skip]) -> Iterator[dict[str, Any]]:
    for chunk in _rows(skips, SKIP_VALUES):
        for row in chunk:
            yield {
                "record": "skip",
                "skip_id": row["skip_id"],
                "comparison_id": row["comparison_id"],
                "batch": row["batch"],
                "heldout": row["heldout"],
                "annotator": row["username"],
                "annotator_id": row["annotator_id"],
                "reason": row["reason"],
                "note": row["note"],
                "skipped_at": row["created_at"].isoformat(),
            }


def raw_records(
    batches: BatchSelection = None, *, include_heldout: bool = True
) -> Iterator[dict[str, Any]]:
    """The raw export: every label record, then every skip record."""
    selected = resolve_batches(batches)
    return itertools.chain(
        raw_label_records(selected, include_heldout=include_heldout),
        skip_records(selected, include_heldout=include_heldout),
    )


def jsonl_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record, ensure_ascii=False) + "\n"


def write_jsonl(records: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write one JSON object per line; returns how many."""
    count = 0
    for line in jsonl_lines(records):
        out.write(line)
        count += 1
    return count
