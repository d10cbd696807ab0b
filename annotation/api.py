"""The annotator's JSON API (session auth, CSRF-checked): the pages under /annotate/ call it.

Responses are named left and right, as shown; the sides a/b and the models behind them stay
hidden from annotators so they cannot favour a model. Errors, the services' included, leave
through tandem.api_errors as {"detail": ..., "field": ...}.
"""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.models import Comparison, Guideline, Safety, Skip, Strength
from annotation.models import Response as SampledResponse
from annotation.permissions import IsAnnotator
from annotation.rendering import markdown_html
from tandem import idempotency


class PromptInput(serializers.Serializer):
    prompt = serializers.CharField(trim_whitespace=True, allow_blank=False)


class NewDialogueInput(PromptInput):
    guideline = serializers.ChoiceField(choices=Guideline.choices)
    risky = serializers.BooleanField(default=False)


class LabelInput(serializers.Serializer):
    chosen = serializers.ChoiceField(choices=["left", "right"])
    strength = serializers.ChoiceField(choices=Strength.choices)
    safety = serializers.ChoiceField(choices=Safety.choices)
    time_spent_ms = serializers.IntegerField(min_value=0, max_value=services.MAX_TIME_SPENT_MS)
    edited_response = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_EDIT_CHARS, default=""
    )
    rationale = serializers.CharField(
        required=False, allow_blank=True, max_length=services.MAX_RATIONALE_CHARS, default=""
    )


class SkipInput(serializers.Serializer):
    reason = serializers.ChoiceField(choices=Skip.Reason.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


_LOOK_UP = object()

# The finish reasons of a response that the length limit or the model's context stopped before
# the model ended it: the page marks it as cut off.
CUT_OFF = frozenset({SampledResponse.FinishReason.LENGTH, SampledResponse.FinishReason.CONTEXT})


def response_json(response: SampledResponse) -> dict:
    """One side as the page shows it: the raw text (what is stored, edited and exported), that
    text as sanitized HTML, and how far its sampling has come."""
    return {
        "text": response.text,
        "html": markdown_html(response.text),
        "num_tokens": response.num_tokens,
        "max_new_tokens": response.max_new_tokens,
        "finish_reason": response.finish_reason,
        "finished": bool(response.finish_reason),
        "cut_off": response.finish_reason in CUT_OFF,
    }


def comparison_json(comparison: Comparison, user, label=_LOOK_UP) -> dict:
    """`label`: the user's label of it, if the caller knows (None: not labelled yet)."""
    dialogue = comparison.turn.dialogue
    if label is _LOOK_UP:
        # A label sent back to its annotator is theirs to give again (annotation.reviews).
        label = comparison.labels.filter(annotator=user).exclude(review_status="sent_back").first()
    sides = {"left": comparison.left, "right": comparison.right}
    shown = {position: response_json(comparison.response(side)) for position, side in sides.items()}
    return {
        "id": comparison.pk,
        "status": comparison.status,
        "error": comparison.error,
        "dialogue": dialogue.pk,
        "turn": comparison.turn.index,
        "guideline": dialogue.guideline,
        "risky": dialogue.risky,
        "context": selectors.earlier_turns(comparison) if comparison.turn.index else [],
        "prompt": comparison.turn.prompt,
        **shown,
        "label": None
        if label is None
        else {
            "id": label.pk,
            "chosen": "left" if label.chosen == comparison.left else "right",
            "strength": label.strength,
            "safety": label.safety,
        },
        # Only the writer continues a dialogue, from the reply they preferred.
        "can_continue": dialogue.author_id == user.pk
        and bool(comparison.turn.reply)
        and comparison.batch.status == comparison.batch.Status.OPEN,
    }


class AnnotatorView(APIView):
    permission_classes = [IsAnnotator]

    def valid(self, serializer_class):
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)  # 400 with the field errors
        return serializer.validated_data


class Progress(AnnotatorView):
    def get(self, request):
        batch = services.open_batch()
        return Response(selectors.progress(request.user, batch))


def written_response(written: services.Written, user) -> Response:
    """201 for a new turn; 200 for a retry whose Idempotency-Key found the turn it wrote."""
    return Response(
        comparison_json(written.comparison, user),
        status=status.HTTP_201_CREATED if written.created else status.HTTP_200_OK,
    )


# The prompt writes take an Idempotency-Key header: a client that retries (after a timeout or a
# 503) with the same key gets the turn its first request wrote, never a second dialogue.
class Dialogues(AnnotatorView):
    def post(self, request):
        key = idempotency.header_key(request.headers)
        data = self.valid(NewDialogueInput)
        written = services.start_dialogue(author=request.user, request_key=key, **data)
        return written_response(written, request.user)


class DialogueTurns(AnnotatorView):
    def post(self, request, dialogue_id: int):
        key = idempotency.header_key(request.headers)
        data = self.valid(PromptInput)
        written = services.continue_dialogue(
            author=request.user,
            dialogue_id=dialogue_id,
            prompt=data["prompt"],
            request_key=key,
        )
        return written_response(written, request.user)


class ComparisonDetail(AnnotatorView):
    def get(self, request, comparison_id: int):
        comparison = selectors.comparison_for(request.user, comparison_id)
        if comparison is None:
            raise services.NotFound("no such comparison for you")
        return Response(comparison_json(comparison, request.user))


class ComparisonLabel(AnnotatorView):
    def post(self, request, comparison_id: int):
        data = services.LabelInput(**self.valid(LabelInput))
        label = services.submit_label(
            annotator=request.user, comparison_id=comparison_id, data=data
        )
        return Response({"label": label.pk}, status=status.HTTP_201_CREATED)


class ComparisonSkip(AnnotatorView):
    def post(self, request, comparison_id: int):
        data = self.valid(SkipInput)
        services.skip(annotator=request.user, comparison_id=comparison_id, **data)
        return Response({"skipped": comparison_id}, status=status.HTTP_201_CREATED)


class ComparisonRetry(AnnotatorView):
    def post(self, request, comparison_id: int):
        comparison = services.retry_generation(annotator=request.user, comparison_id=comparison_id)
        # Accepted: the pair is queued for sampling; the page polls the comparison as before.
        return Response(comparison_json(comparison, request.user), status=status.HTTP_202_ACCEPTED)


class QueueNext(AnnotatorView):
    def post(self, request):
        comparison = services.claim_next(annotator=request.user)
        if comparison is None:
            raise services.NotFound("the queue is empty for you")
        # A place claim_next hands out is locked, not done: it has no label yet.
        return Response(comparison_json(comparison, request.user, label=None))
