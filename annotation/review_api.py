"""The reviewers' JSON API (session auth, CSRF-checked), beside the annotators' under
/annotate/api/: labels to review, and a review of one (annotation.reviews holds the rules).

Responses are named left and right, as the annotator saw them; the models stay hidden, as they
are from annotators. Errors leave through tandem.api_errors as {"detail": ..., "field": ...}.
"""

from __future__ import annotations

from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import reviews
from annotation.models import Batch, Label, Review, ReviewStatus
from annotation.permissions import IsReviewer


class ReviewInput(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=reviews.OUTCOMES)
    reason = serializers.ChoiceField(choices=Review.Reason.choices, required=False, default="")
    note = serializers.CharField(
        required=False, allow_blank=True, max_length=reviews.MAX_NOTE_CHARS, default=""
    )


class ReviewQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=ReviewStatus.choices, default=ReviewStatus.UNREVIEWED)
    batch = serializers.SlugRelatedField(
        slug_field="name", queryset=Batch.objects.all(), required=False, default=None
    )


def review_json(review: Review) -> dict:
    return {
        "id": review.pk,
        "label": review.label_id,
        "reviewer": review.reviewer.get_username(),
        "outcome": review.outcome,
        "reason": review.reason,
        "note": review.note,
        "reviewed_at": review.created_at.isoformat(),
    }


def label_json(label: Label) -> dict:
    """A label as a reviewer sees it (annotation.reviews.to_review loads what this reads)."""
    comparison = label.comparison
    responses = {response.side: response.text for response in comparison.responses.all()}
    return {
        "id": label.pk,
        "comparison": comparison.pk,
        "batch": comparison.batch.name,
        "annotator": label.annotator.get_username(),
        "guideline": comparison.turn.dialogue.guideline,
        "risky": comparison.turn.dialogue.risky,
        "context": label.context,
        "prompt": comparison.turn.prompt,
        "left": responses[comparison.left],
        "right": responses[comparison.right],
        "chosen": "left" if label.chosen == comparison.left else "right",
        "strength": label.strength,
        "safety": label.safety,
        "edited_response": label.edited_response,
        "rationale": label.rationale,
        "time_spent_ms": label.time_spent_ms,
        "labelled_at": label.created_at.isoformat(),
        "review_status": label.review_status,
        "reviews": [review_json(review) for review in label.reviews.all()],
    }


class ReviewerView(APIView):
    permission_classes = [IsReviewer]

    def valid(self, serializer_class, data) -> dict:
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)  # 400 naming the field
        return serializer.validated_data


class LabelsToReview(ReviewerView):
    """GET ?status=unreviewed&batch=NAME: the oldest labels with that status, not the
    reviewer's own, a page of annotation.reviews.REVIEW_PAGE."""

    def get(self, request):
        query = self.valid(ReviewQuery, request.query_params)
        labels = reviews.to_review(
            reviewer=request.user, batch=query["batch"], status=query["status"]
        )
        return Response({"results": [label_json(label) for label in labels]})


class LabelReview(ReviewerView):
    """POST {"outcome": accepted|rejected|sent_back, "reason": ..., "note": ...}."""

    def post(self, request, label_id: int):
        data = reviews.ReviewInput(**self.valid(ReviewInput, request.data))
        review = reviews.review_label(reviewer=request.user, label_id=label_id, data=data)
        return Response(review_json(review), status=status.HTTP_201_CREATED)
