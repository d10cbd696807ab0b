"""The reviewer's page (/review/: labels to review, each with a form to accept, reject or send it
back) and the annotator's list of labels sent back to them (/annotate/sent-back/). Reads and
writes go through annotation.reviews, which holds the rules."""

from __future__ import annotations

from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation import reviews
from annotation.models import Batch, Review, ReviewStatus
from annotation.permissions import REVIEWER, has_role
from annotation.services import AnnotationError
from frontend.views import annotator_required


class ReviewForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[c for c in ReviewStatus.choices if c[0] in reviews.OUTCOMES],
        widget=forms.RadioSelect,
    )
    reason = forms.ChoiceField(choices=[("", "—"), *Review.Reason.choices], required=False)
    note = forms.CharField(max_length=reviews.MAX_NOTE_CHARS, required=False, strip=True)


def reviewer_required(view):
    """Log in first; then only reviewers (and staff) get past, everyone else a 403 page."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not has_role(request.user, REVIEWER):
            return render(request, "frontend/not_reviewer.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


@reviewer_required
def review(request: HttpRequest) -> HttpResponse:
    return _review_page(request)


def _review_page(
    request: HttpRequest, *, failed: tuple[int, ReviewForm] | None = None, status: int = 200
) -> HttpResponse:
    """The page of labels to review; `failed`: a label's form sent back with its errors."""
    batch = Batch.objects.filter(name=request.GET.get("batch", "")).first()
    labels = reviews.to_review(reviewer=request.user, batch=batch)
    for label in labels:
        # Each label's form has its own ids: a page holds many.
        own = ReviewForm(auto_id=f"label-{label.pk}-%s")
        label.form = failed[1] if failed and failed[0] == label.pk else own
    return render(
        request,
        "frontend/review.html",
        {"labels": labels, "batch": batch, "batches": Batch.objects.all()[:10]},
        status=status,
    )


@require_POST
@reviewer_required
def review_label(request: HttpRequest, label_id: int) -> HttpResponse:
    form = ReviewForm(request.POST, auto_id=f"label-{label_id}-%s")
    if form.is_valid():
        try:
            reviews.review_label(
                reviewer=request.user,
                label_id=label_id,
                data=reviews.ReviewInput(**form.cleaned_data),
            )
        except AnnotationError as error:
            form.add_error(None, str(error))
            return _review_page(request, failed=(label_id, form), status=error.status)
        messages.success(request, f"Label {label_id}: {form.cleaned_data['outcome']}.")
        return redirect("frontend:review")
    return _review_page(request, failed=(label_id, form), status=400)


@annotator_required
def sent_back(request: HttpRequest) -> HttpResponse:
    labels = list(reviews.sent_back(annotator=request.user))
    for label in labels:
        label.reason_text = Review.Reason(label.review_reason).label
    return render(request, "frontend/sent_back.html", {"labels": labels})
