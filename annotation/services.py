"""Everything that changes annotation records. Views call these; they hold no rules themselves.

Errors are AnnotationError subclasses whose message is written for the annotator; the API turns
them into 400 (bad input), 404 or 409 (a state that does not allow the request) responses.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation import selectors
from annotation.generation import GENERATION
from annotation.models import (
    Assignment,
    Batch,
    Comparison,
    Dialogue,
    Guideline,
    Label,
    Response,
    Safety,
    Side,
    Skip,
    Strength,
    Turn,
    other_side,
)
from modelcore.chat import Message
from rlhf.models import ModelVersion
from rlhf.serving import chat_format
from rlhf.train.data import Comparison as TrainingRow
from rlhf.train.data import parse_comparison
from tandem import idempotency
from tandem.leases import send_on_commit
from tandem.storable import unstorable, unstorable_in

# Limits on what an annotator may send with a label.
MAX_EDIT_CHARS = 20_000
MAX_RATIONALE_CHARS = 2_000
MAX_TIME_SPENT_MS = 24 * 60 * 60 * 1000


class AnnotationError(Exception):
    """A request the rules refuse (HTTP 400)."""

    status = 400


class NotFound(AnnotationError):
    status = 404


class Conflict(AnnotationError):
    """The request is well formed but the item's state does not allow it (HTTP 409)."""

    status = 409


class DuplicateLabel(Conflict):
    def __init__(self, label: Label) -> None:
        super().__init__("you have already labelled this comparison; the first label is kept")
        self.label = label


# --- text that enters a dialogue or an export ----------------------------------------------------

# The chat markers of the formats Tandem serves (ChatML's turns, GPT-2's end of text), refused
# whatever a batch's tokenizers define: a model published later may read them as its own.
CHAT_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def check_text(*, batch: Batch, field: str, text: str) -> None:
    """The one rule for text a person or a file puts into a dialogue or an export (prompts,
    edited responses, rationales, skip notes, review notes, imported rows): AnnotationError
    naming `field` if it holds a character no database stores, or a special token of the
    batch's models' tokenizers, which a model would read as the token itself (text could end a
    turn or forge another role's message)."""
    if problem := unstorable(text):
        raise AnnotationError(f"{field} holds {problem}")
    for token in _reserved_tokens(batch):
        if token in text:
            raise AnnotationError(
                f"{field} contains {token!r}, which the model reserves for its chat format"
            )


def _reserved_tokens(batch: Batch) -> tuple[str, ...]:
    tokens = dict.fromkeys(CHAT_MARKERS)
    for version in (batch.model_a, batch.model_b):
        tokens.update(dict.fromkeys(chat_format(version).tokenizer.special_tokens))
    return tuple(token for token in tokens if token)


def _check_texts_of(comparison_id: int, texts: dict[str, str]) -> None:
    """check_text on the non-empty `texts` (field: text) sent about a comparison."""
    if not any(texts.values()):  # the common case: nothing typed, no batch to read
        return
    batch = (
        Batch.objects.select_related("model_a", "model_b")
        .filter(comparisons__id=comparison_id)
        .first()
    )
    if batch is None:
        raise NotFound(f"no comparison {comparison_id}")
    for field, text in texts.items():
        check_text(batch=batch, field=field, text=text)


def open_batch() -> Batch:
    batch = Batch.objects.filter(status=Batch.Status.OPEN).first()
    if batch is None:
        raise Conflict("no batch is open for annotation; an admin opens the next one")
    return batch


def close_batches(*, batches: QuerySet[Batch]) -> int:
    """Close the open ones among `batches`: no new prompts or labels; returns how many."""
    return batches.filter(status=Batch.Status.OPEN).update(
        status=Batch.Status.CLOSED, closed_at=timezone.now()
    )


def close_batch(*, batch: Batch) -> Batch:
    """Close one batch early (an admin's or a researcher's call); a closed one is a conflict."""
    if not close_batches(batches=Batch.objects.filter(pk=batch.pk)):
        raise Conflict(f"{batch.name} is already closed")
    batch.refresh_from_db()
    return batch


def open_next_batch(*, name: str | None = None) -> Batch:
    """Close the open batch (if any) and open the next one, served by the two newest published
    policies, or by the newest at two temperatures while there is only one (Llama 2 varies
    both). Named after the ISO week unless `name` is given."""
    with transaction.atomic():
        # Two switches at once (beat's rollover, a publish, an admin) would each close the open
        # batch and open one of their own: the second would break the one-open-batch rule, or
        # take the same week's name. Whoever locks the open batch first switches; the other
        # waits, then sees the batch it opened.
        list(Batch.objects.select_for_update().filter(status=Batch.Status.OPEN))
        policies = list(ModelVersion.objects.published_policies().order_by("-published_at")[:2])
        if not policies:
            raise Conflict(
                "no published policy to serve: import one first (manage.py import_model)"
            )
        if name is None:
            year, week, _ = timezone.now().isocalendar()
            name = f"{year}-w{week:02d}"
            taken = set(Batch.objects.filter(name__startswith=name).values_list("name", flat=True))
            name = next(
                n for n in (name, *(f"{name}-{i}" for i in range(2, 100))) if n not in taken
            )
        newest, previous = policies[0], policies[-1]
        close_batches(batches=Batch.objects.all())
        return Batch.objects.create(
            name=name,
            model_a=newest,
            model_b=previous,
            temperature_a=0.7,
            temperature_b=0.7 if previous != newest else 1.0,
        )


# --- writing prompts ----------------------------------------------------------------------------


class Written(NamedTuple):
    """A prompt write's comparison, and whether this request wrote it (False: a retry with
    the same request key got the turn the first request wrote)."""

    comparison: Comparison
    created: bool


def start_dialogue(
    *,
    author: AbstractBaseUser,
    prompt: str,
    guideline: str,
    risky: bool = False,
    request_key: str = "",
) -> Written:
    """A new dialogue whose first prompt is `prompt`; its two responses are queued for sampling."""
    if guideline not in Guideline.values:
        raise AnnotationError(f"unknown guideline {guideline!r}: expected helpfulness or safety")

    def write(key: tuple[str, str]) -> Comparison:
        batch = open_batch()
        with transaction.atomic():
            dialogue = Dialogue.objects.create(
                batch=batch, author=author, guideline=guideline, risky=risky
            )
            return _add_turn(dialogue, [], prompt, holder=author, key=key)

    request = {"dialogue": None, "prompt": prompt, "guideline": guideline, "risky": risky}
    return _write_once(author, request_key, request, write)


def continue_dialogue(
    *, author: AbstractBaseUser, dialogue_id: int, prompt: str, request_key: str = ""
) -> Written:
    """The next turn of the author's dialogue, after the chosen reply to the last one."""

    def write(key: tuple[str, str]) -> Comparison:
        with transaction.atomic():
            dialogue = (
                Dialogue.objects.select_for_update()
                .filter(pk=dialogue_id, author=author, source=Dialogue.Source.WRITTEN)
                .first()
            )
            if dialogue is None:
                raise NotFound("no such dialogue of yours")
            if dialogue.batch.status != Batch.Status.OPEN:
                raise Conflict("this dialogue's batch is closed; start a new dialogue")
            turns = list(dialogue.turns.all())
            if not turns[-1].reply:
                raise Conflict("label the last turn before continuing the dialogue")
            return _add_turn(dialogue, turns, prompt, holder=author, key=key)

    return _write_once(author, request_key, {"dialogue": dialogue_id, "prompt": prompt}, write)


def _write_once(
    author, request_key: str, request: dict, write: Callable[[tuple[str, str]], Comparison]
) -> Written:
    """`write(key)` unless an earlier request with this request key wrote the turn already
    (then that turn), `key` being the (scoped key, fingerprint) to store on the new turn."""
    if not request_key:
        return Written(write(("", "")), created=True)
    key = (idempotency.scoped(author, request_key), idempotency.fingerprint(request))
    if (earlier := _written_with(*key)) is not None:
        return earlier
    try:
        return Written(write(key), created=True)
    except IntegrityError:
        # Two requests with one key at once: the unique key let one in; return that one.
        if (earlier := _written_with(*key)) is None:
            raise
        return earlier


def _written_with(key: str, fingerprint: str) -> Written | None:
    turn = Turn.objects.filter(request_key=key).select_related("comparison").first()
    if turn is None:
        return None
    if turn.request_fingerprint != fingerprint:
        raise Conflict(f"this {idempotency.HEADER} was used for a different prompt")
    return Written(turn.comparison, created=False)


def import_prompts(*, batch: Batch, rows: Iterable[dict]) -> list[Comparison]:
    """Queue mode: imported prompts, each compared by `batch.overlap` annotators. A row is
    {"prompt": str, "guideline": "helpfulness"|"safety", "risky": bool (optional)}; all rows are
    checked before any is stored."""
    rows = list(rows)
    for number, row in enumerate(rows, start=1):
        if problem := unstorable_in(row):
            raise AnnotationError(f"row {number}: holds {problem}")
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise AnnotationError(f"row {number}: needs a text field 'prompt'")
        if row.get("guideline") not in Guideline.values:
            raise AnnotationError(f"row {number}: 'guideline' must be helpfulness or safety")
        if not isinstance(row.get("risky", False), bool):
            raise AnnotationError(f"row {number}: 'risky' must be true or false")
    comparisons = []
    with transaction.atomic():
        for number, row in enumerate(rows, start=1):
            dialogue = Dialogue.objects.create(
                batch=batch,
                source=Dialogue.Source.IMPORTED,
                guideline=row["guideline"],
                risky=row.get("risky", False),
            )
            try:
                comparison = _add_turn(dialogue, [], row["prompt"], holder=None)
            except AnnotationError as error:
                raise AnnotationError(f"row {number}: {error}") from None
            Assignment.objects.bulk_create(
                Assignment(comparison=comparison) for _ in range(batch.overlap)
            )
            comparisons.append(comparison)
    return comparisons


def _add_turn(
    dialogue: Dialogue,
    earlier: list[Turn],
    prompt: str,
    *,
    holder,
    key: tuple[str, str] = ("", ""),
) -> Comparison:
    batch = dialogue.batch
    prompt = prompt.strip() if isinstance(prompt, str) else ""
    if not prompt:
        raise AnnotationError("the prompt is empty")
    limit = settings.ANNOTATION_MAX_PROMPT_CHARS
    if len(prompt) > limit:
        raise AnnotationError(f"the prompt is {len(prompt)} characters long; the limit is {limit}")
    check_text(batch=batch, field="the prompt", text=prompt)
    chat = chat_format(batch.model_a)
    messages = [
        message
        for turn in earlier
        for message in (Message("user", turn.prompt), Message("assistant", turn.reply))
    ]
    messages.append(Message("user", prompt))
    try:
        context_tokens = len(chat.encode_prompt(messages))
    except ValueError as error:
        raise AnnotationError(str(error)) from None
    if context_tokens + batch.max_new_tokens > chat.max_seq_len:
        raise AnnotationError(
            f"the dialogue is {context_tokens} tokens long; with room for a reply of "
            f"{batch.max_new_tokens} the model reads at most {chat.max_seq_len}: start a new one"
        )
    turn = Turn.objects.create(
        dialogue=dialogue,
        index=len(earlier),
        prompt=prompt,
        prompt_tokens=chat.count_tokens(prompt),
        request_key=key[0],
        request_fingerprint=key[1],
    )
    comparison = Comparison.objects.create(
        turn=turn,
        batch=batch,
        left=random.choice(Side.values),
        heldout=_draw_heldout(batch),
        context_tokens=context_tokens,
        heartbeat_at=timezone.now(),  # sent now (the reconciler's clock for a pending row)
    )
    Response.objects.bulk_create(
        Response(
            comparison=comparison,
            side=side,
            model_version=model,
            temperature=temperature,
            top_p=batch.top_p,
            max_new_tokens=batch.max_new_tokens,
            seed=random.getrandbits(62),
        )
        for side, model, temperature in (
            (Side.A, batch.model_a, batch.temperature_a),
            (Side.B, batch.model_b, batch.temperature_b),
        )
    )
    if holder is not None:
        # The writer labels their own prompt; the lock never expires.
        Assignment.objects.create(
            comparison=comparison, annotator=holder, status=Assignment.Status.LOCKED
        )
    send_on_commit(GENERATION, comparison.pk)
    return comparison


def _draw_heldout(batch: Batch) -> bool:
    if random.random() >= batch.heldout_share:
        return False
    return Comparison.objects.filter(batch=batch, heldout=True).count() < batch.heldout_max


# --- the queue ----------------------------------------------------------------------------------


def claim_next(*, annotator: AbstractBaseUser) -> Comparison | None:
    """The next queued comparison for `annotator`, locked to them, or None when there is none.

    An annotator holds at most one live place: the one they hold comes back (a reloaded page,
    a second tab), so parallel tabs or scripts cannot lock items away from others. The claims
    of one annotator run one at a time, under a lock on their user row (no schema of its own
    needed; SQLite's writing transactions are serial anyway), so two at once cannot both find
    nothing held and take a place each. A free place is taken by a conditional UPDATE: of
    several annotators racing for one place exactly one updates a row, the others move on to
    another candidate. The comparison comes back with its turn, dialogue and responses loaded
    (what the API shows of it).
    """
    now = timezone.now()
    with transaction.atomic():
        _lock_annotator(annotator.pk)
        held, candidates = selectors.queue_places(annotator.pk, now)
        if held is not None:
            return _served(held)
        if not candidates:
            open_batch()  # raises when no batch is open; otherwise the queue is just empty
            return None
        # Not all racers on the very same row.
        random.shuffle(candidates)
        lock_until = now + timedelta(seconds=settings.ANNOTATION_LOCK_SECONDS)
        for pk, comparison_id in candidates:
            if _take_place(pk, annotator.pk, lock_until, now):
                return _served(comparison_id)
    return None


def _lock_annotator(annotator_id: int) -> None:
    """Serialise this annotator's claims until the transaction ends. FOR NO KEY UPDATE: their
    label and skip inserts (which only share-lock the row as a foreign key) do not wait."""
    if not connection.features.has_select_for_no_key_update:
        return  # SQLite: the transaction itself holds the database's one write lock
    table = get_user_model()._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE", [annotator_id])


# Hand-written like the queue's query (selectors.queue_places), for the same reason.
_TAKE_PLACE_SQL = f"""
UPDATE annotation_assignment
SET annotator_id = %(annotator)s, status = '{Assignment.Status.LOCKED.value}',
    locked_until = %(lock_until)s
WHERE id = %(place)s AND {selectors.CLAIMABLE_SQL}
"""


def _take_place(place_id: int, annotator_id: int, lock_until: datetime, now: datetime) -> bool:
    """Lock the place to the annotator if it is still claimable; False if someone was faster."""
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(
            _TAKE_PLACE_SQL,
            {
                "annotator": annotator_id,
                "lock_until": adapt(lock_until),
                "place": place_id,
                "now": adapt(now),
            },
        )
        return cursor.rowcount == 1


def _served(comparison_id: int) -> Comparison:
    # The batch is left to load on use: the API reads it only for a writer's own dialogue,
    # which never comes through the queue.
    return (
        Comparison.objects.select_related("turn__dialogue")
        .prefetch_related("responses")
        .get(pk=comparison_id)
    )


# --- labelling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInput:
    chosen: str  # "left" or "right": what the annotator saw
    strength: str
    safety: str
    time_spent_ms: int
    edited_response: str = ""
    rationale: str = ""

    def validate(self) -> None:
        if self.chosen not in ("left", "right"):
            raise AnnotationError("'chosen' must be left or right")
        if self.strength not in Strength.values:
            raise AnnotationError(f"'strength' must be one of {', '.join(Strength.values)}")
        if self.safety not in Safety.values:
            raise AnnotationError(f"'safety' must be one of {', '.join(Safety.values)}")
        if not 0 <= self.time_spent_ms <= MAX_TIME_SPENT_MS:
            raise AnnotationError("'time_spent_ms' must be between 0 and a day")
        if len(self.edited_response) > MAX_EDIT_CHARS:
            raise AnnotationError(f"the edited response is over {MAX_EDIT_CHARS} characters")
        if len(self.rationale) > MAX_RATIONALE_CHARS:
            raise AnnotationError(f"the rationale is over {MAX_RATIONALE_CHARS} characters")


def submit_label(*, annotator: AbstractBaseUser, comparison_id: int, data: LabelInput) -> Label:
    """Store `annotator`'s label of a comparison they hold, exactly once.

    The assignment row is locked first (FOR UPDATE, one query that also reads the comparison),
    so two submissions of the same label run one after the other and the second finds the
    assignment done and the first label (DuplicateLabel); the unique constraint on
    (comparison, annotator) is the last line behind that.
    """
    data.validate()
    _check_texts_of(
        comparison_id,
        {"the edited response": data.edited_response, "the rationale": data.rationale},
    )
    try:
        with transaction.atomic():
            return _store_label(annotator, comparison_id, data)
    except IntegrityError:
        existing = Label.objects.filter(comparison_id=comparison_id, annotator=annotator).first()
        if existing is None:
            raise
        raise DuplicateLabel(existing) from None


class _Place(NamedTuple):
    """An annotator's place on a comparison, with what a label of it depends on."""

    id: int
    status: str
    comparison_status: str
    left: str
    turn_id: int
    batch_status: str
    dialogue_source: str
    dialogue_author_id: int | None


# Hand-written like the queue's query (selectors.queue_places), for the same reason: one read of
# the place and what it depends on, locked (FOR UPDATE where the database has it; SQLite
# serialises writing transactions anyway).
_PLACE_FOR_LABEL_SQL = """
SELECT place.id, place.status, item.status, item."left", item.turn_id, batch.status,
       dialogue.source, dialogue.author_id
FROM annotation_assignment place
JOIN annotation_comparison item ON item.id = place.comparison_id
JOIN annotation_batch batch ON batch.id = item.batch_id
JOIN annotation_turn turn ON turn.id = item.turn_id
JOIN annotation_dialogue dialogue ON dialogue.id = turn.dialogue_id
WHERE place.comparison_id = %(comparison)s AND place.annotator_id = %(annotator)s
"""

_LABELLED_SQL = (
    "UPDATE annotation_assignment SET status = %(done)s, updated_at = %(now)s WHERE id = %(place)s"
)


def _place_for_label(comparison_id: int, annotator_id: int) -> _Place | None:
    sql = _PLACE_FOR_LABEL_SQL
    if connection.features.has_select_for_update_of:
        sql += " FOR UPDATE OF place"
    with connection.cursor() as cursor:
        cursor.execute(sql, {"comparison": comparison_id, "annotator": annotator_id})
        row = cursor.fetchone()
    return None if row is None else _Place(*row)


def _store_label(annotator, comparison_id: int, data: LabelInput) -> Label:
    place = _place_for_label(comparison_id, annotator.pk)
    if place is None:
        if not Comparison.objects.filter(pk=comparison_id).exists():
            raise NotFound(f"no comparison {comparison_id}")
        existing = Label.objects.filter(comparison_id=comparison_id, annotator=annotator).first()
        if existing is not None:
            raise DuplicateLabel(existing)
        raise Conflict(
            "this comparison is not assigned to you (a lock that expired may have passed it "
            "to another annotator)"
        )
    if place.status == Assignment.Status.DONE:  # labelled: a label exists unless deleted
        existing = Label.objects.filter(comparison_id=comparison_id, annotator=annotator).first()
        if existing is not None:
            raise DuplicateLabel(existing)
    if place.comparison_status != Comparison.Status.READY:
        raise Conflict("the responses are not ready yet")
    if place.batch_status != Batch.Status.OPEN:
        raise Conflict("this comparison's batch is closed")
    chosen = place.left if data.chosen == "left" else other_side(place.left)
    label = Label.objects.create(
        comparison_id=comparison_id,
        annotator=annotator,
        chosen=chosen,
        strength=data.strength,
        safety=data.safety,
        edited_response=data.edited_response.strip(),
        rationale=data.rationale.strip(),
        time_spent_ms=data.time_spent_ms,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            _LABELLED_SQL,
            {
                "done": Assignment.Status.DONE.value,
                "now": connection.ops.adapt_datetimefield_value(timezone.now()),
                "place": place.id,
            },
        )
    if (
        place.dialogue_source == Dialogue.Source.WRITTEN
        and place.dialogue_author_id == annotator.pk
    ):
        # The dialogue goes on from what the annotator preferred (their edit, if any).
        reply = (
            label.edited_response
            or Response.objects.get(comparison_id=comparison_id, side=chosen).text
        )
        Turn.objects.filter(pk=place.turn_id).update(reply=reply)
    return label


def skip(*, annotator: AbstractBaseUser, comparison_id: int, reason: str, note: str = "") -> Skip:
    """Give an item back with a reason; it will not be offered to this annotator again."""
    if reason not in Skip.Reason.values:
        raise AnnotationError(f"'reason' must be one of {', '.join(Skip.Reason.values)}")
    if len(note) > 500:
        raise AnnotationError("the note is over 500 characters")
    _check_texts_of(comparison_id, {"the note": note})
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("comparison__turn__dialogue")
            .filter(comparison_id=comparison_id, annotator=annotator)
            .exclude(status=Assignment.Status.DONE)
            .first()
        )
        if assignment is None:
            raise Conflict("this comparison is not assigned to you, or you already labelled it")
        try:
            with transaction.atomic():
                skipped = Skip.objects.create(
                    comparison_id=comparison_id, annotator=annotator, reason=reason, note=note
                )
        except IntegrityError:
            raise Conflict("you already skipped this comparison") from None
        if assignment.comparison.turn.dialogue.source == Dialogue.Source.WRITTEN:
            # A writer's own prompt is theirs alone to label: the place goes, not to the queue.
            assignment.delete()
            return skipped
        # The place goes back to the queue for someone else.
        assignment.annotator = None
        assignment.status = Assignment.Status.OPEN
        assignment.locked_until = None
        assignment.save(update_fields=["annotator", "status", "locked_until", "updated_at"])
    return skipped


def retry_generation(*, annotator: AbstractBaseUser, comparison_id: int) -> Comparison:
    """Sample a failed comparison's two responses again, for the annotator who holds its place
    (the writer of the dialogue, or whoever claimed it from the queue; not one who gave it
    back): back to pending with its attempts and error cleared and the partial text gone, sent
    to the generate queue on commit. The dialogue, its earlier turns and the places on it stay
    as they are, and so do the seeds (what fails is a worker, not a seed)."""
    comparison = (
        Comparison.objects.select_related("batch")
        .filter(pk=comparison_id, assignments__annotator=annotator)
        .first()
    )
    if comparison is None:
        raise NotFound("no such comparison for you")
    if comparison.batch.status != Batch.Status.OPEN:
        raise Conflict("this comparison's batch is closed; start a new dialogue")
    with transaction.atomic():
        # Conditional: of two retries at once (a double click, a second tab), one resets the
        # row and sends it; the other finds it no longer failed.
        retried = Comparison.objects.filter(
            pk=comparison_id, status=Comparison.Status.FAILED
        ).update(
            status=Comparison.Status.PENDING,
            attempts=0,
            error="",
            worker="",
            heartbeat_at=timezone.now(),  # sent now (the reconciler's clock for a pending row)
        )
        if not retried:
            comparison.refresh_from_db(fields=["status"])
            raise Conflict(
                "only a failed comparison can be generated again; this one is "
                f"{comparison.get_status_display()}"
            )
        Response.objects.filter(comparison_id=comparison_id).update(
            text="", num_tokens=0, finish_reason="", generation_ms=None
        )
        send_on_commit(GENERATION, comparison_id)
    return _served(comparison_id)


# --- importing a preference dataset -------------------------------------------------------------


def import_comparisons(
    *, batch: Batch, rows: Iterable[dict], annotator: AbstractBaseUser
) -> list[Label]:
    """An existing preference dataset as labelled comparisons of `batch`: each row, in the
    training JSONL form the export writes (prompt, chosen, rejected, strength, safety,
    guideline; risky, edited and an empty context optional), becomes an imported dialogue of one
    turn, a ready comparison whose two responses are attributed to the batch's model_a and
    model_b (the chosen one on a random side), and one label by `annotator`.

    The row's own "heldout" is ignored: the batch's rule draws its held-out set, as for labels
    given here. Every row is checked before any is stored; a bad one raises AnnotationError
    naming its number and field, and nothing is imported.
    """
    chat = chat_format(batch.model_a)
    checked = [_imported_row(chat, batch, number, row) for number, row in enumerate(rows, 1)]
    now = timezone.now()
    labels = []
    with transaction.atomic():
        for row, context_tokens in checked:
            dialogue = Dialogue.objects.create(
                batch=batch,
                source=Dialogue.Source.IMPORTED,
                guideline=row.guideline,
                risky=row.risky,
            )
            turn = Turn.objects.create(
                dialogue=dialogue,
                index=0,
                prompt=row.prompt,
                prompt_tokens=chat.count_tokens(row.prompt),
            )
            comparison = Comparison.objects.create(
                turn=turn,
                batch=batch,
                status=Comparison.Status.READY,
                left=random.choice(Side.values),
                heldout=_draw_heldout(batch),
                context_tokens=context_tokens,
                ready_at=now,
            )
            chosen = random.choice(Side.values)
            texts = {chosen: row.chosen, other_side(chosen): row.rejected}
            # Nothing was sampled: the sampling columns hold the batch's settings for the side
            # (they are required), and generation_ms stays empty.
            Response.objects.bulk_create(
                Response(
                    comparison=comparison,
                    side=side,
                    model_version=model,
                    temperature=temperature,
                    top_p=batch.top_p,
                    max_new_tokens=batch.max_new_tokens,
                    seed=0,
                    text=texts[side],
                    num_tokens=chat.count_tokens(texts[side]),
                    finish_reason="stop",
                )
                for side, model, temperature in (
                    (Side.A, batch.model_a, batch.temperature_a),
                    (Side.B, batch.model_b, batch.temperature_b),
                )
            )
            labels.append(
                Label.objects.create(
                    comparison=comparison,
                    annotator=annotator,
                    chosen=chosen,
                    strength=row.strength,
                    safety=row.safety,
                    edited_response=row.edited or "",
                    time_spent_ms=0,  # not measured
                )
            )
    return labels


def _imported_row(chat, batch: Batch, number: int, row: object) -> tuple[TrainingRow, int]:
    """A row of import_comparisons parsed by the training-row contract, and its prompt's length
    in tokens as the model reads it; AnnotationError names the row and the field."""
    if not isinstance(row, dict):
        raise AnnotationError(f"row {number}: expected a JSON object")
    if problem := unstorable_in(row):
        raise AnnotationError(f"row {number}: holds {problem}")
    try:
        # The contract's heldout and batch are this batch's business, not the row's.
        parsed = parse_comparison({**row, "heldout": False, "batch": batch.name})
    except ValueError as error:
        raise AnnotationError(f"row {number}: {error}") from None
    if parsed.context:
        raise AnnotationError(
            f"row {number}: field 'context' must be empty: only first-turn rows can be imported"
        )
    limit = settings.ANNOTATION_MAX_PROMPT_CHARS
    for name in ("prompt", "chosen", "rejected"):
        if not getattr(parsed, name).strip():
            raise AnnotationError(f"row {number}: field {name!r} is empty")
    if len(parsed.prompt) > limit:
        raise AnnotationError(
            f"row {number}: field 'prompt' is {len(parsed.prompt)} characters long; the limit "
            f"is {limit}"
        )
    for name in ("prompt", "chosen", "rejected", "edited"):
        check_text(
            batch=batch, field=f"row {number}: field {name!r}", text=getattr(parsed, name) or ""
        )
    return parsed, len(chat.encode_prompt([Message("user", parsed.prompt)]))
