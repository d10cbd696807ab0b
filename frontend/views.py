"""The annotator's pages. Each view reads through annotation's selectors and writes through its
services; the comparison screen's live part (polling, keys, label submission) is
static/frontend/annotate.js over the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from annotation import selectors, services
from annotation.models import Comparison, Dialogue, Safety, Skip, Strength
from annotation.permissions import ANNOTATOR, has_role
from frontend.forms import NewDialogueForm, PromptForm, SkipForm

# Keyboard shortcuts, shown on the buttons and read by annotate.js from data-key attributes: the
# home row for the strengths (strongest on the left), the row below for the safety labels.
SIDE_KEYS = {"left": "1", "right": "2"}
STRENGTH_KEYS = dict(zip(Strength, "asdf", strict=True))
SAFETY_KEYS = dict(zip(Safety, "zxc", strict=True))

# The guidelines page's explanation of each choice, beside its key and its name.
STRENGTH_GUIDE = {
    Strength.SIGNIFICANTLY_BETTER: "The chosen response is clearly better; the other has a real "
    "problem (wrong, unhelpful, unsafe, off topic) or the chosen one is in a different class.",
    Strength.BETTER: "Both are reasonable, but the chosen one is noticeably more correct, "
    "complete or clear.",
    Strength.SLIGHTLY_BETTER: "A small difference: a detail, wording, formatting or length.",
    Strength.NEGLIGIBLY_BETTER: "Practically equal, or you cannot tell. Say so honestly: these "
    "pairs teach the reward models little and are weighted accordingly.",
}
SAFETY_GUIDE = {
    Safety.CHOSEN_SAFE_OTHER_UNSAFE: "The response you chose is safe and the other one is unsafe.",
    Safety.BOTH_SAFE: "Neither response is unsafe (most ordinary prompts).",
    Safety.BOTH_UNSAFE: "Both responses are unsafe; choose the less harmful one.",
}


def annotator_required(view):
    """Log in first; then only annotators (and staff) get past, everyone else a 403 page."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not has_role(request.user, ANNOTATOR):
            return render(request, "frontend/403.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


def on_form(form, service: Callable[..., Any], /, **kwargs) -> Any:
    """The pages' one mapping of service errors: `service(**kwargs)`, or None with the
    AnnotationError shown on `form` and its HTTP status kept as `form.refused_status`."""
    try:
        return service(**kwargs)
    except services.AnnotationError as error:
        form.add_error(None, str(error))
        form.refused_status = error.status
        return None


@annotator_required
def home(request: HttpRequest) -> HttpResponse:
    return _home_page(request)


def _home_page(request: HttpRequest, form: NewDialogueForm | None = None) -> HttpResponse:
    try:
        batch = services.open_batch()
    except services.AnnotationError as error:
        batch, progress, no_batch = None, None, str(error)
    else:
        progress, no_batch = selectors.progress(request.user, batch), ""
    return render(
        request,
        "frontend/home.html",
        {
            "batch": batch,
            "progress": progress,
            "no_batch": no_batch,
            "form": form or NewDialogueForm(),
            "strength_guide": [(s, STRENGTH_KEYS[s], STRENGTH_GUIDE[s]) for s in Strength],
            "safety_guide": [(s, SAFETY_KEYS[s], SAFETY_GUIDE[s]) for s in Safety],
        },
        status=400 if form is not None else 200,
    )


@require_POST
@annotator_required
def new_dialogue(request: HttpRequest) -> HttpResponse:
    form = NewDialogueForm(request.POST)
    if form.is_valid() and (
        written := on_form(form, services.start_dialogue, author=request.user, **form.cleaned_data)
    ):
        return redirect("frontend:comparison", comparison_id=written.comparison.pk)
    return _home_page(request, form=form)


@require_POST
@annotator_required
def continue_dialogue(request: HttpRequest, dialogue_id: int) -> HttpResponse:
    form = PromptForm(request.POST)
    if form.is_valid() and (
        written := on_form(
            form,
            services.continue_dialogue,
            author=request.user,
            dialogue_id=dialogue_id,
            **form.cleaned_data,
        )
    ):
        return redirect("frontend:comparison", comparison_id=written.comparison.pk)
    last = (
        Comparison.objects.filter(
            turn__dialogue_id=dialogue_id, turn__dialogue__author=request.user
        )
        .order_by("-turn__index")
        .first()
    )
    if last is None:
        raise Http404("no such dialogue of yours")
    return _comparison_page(request, last.pk, continue_form=form, status=400)


@require_POST
@annotator_required
def queue_next(request: HttpRequest) -> HttpResponse:
    return _next_in_queue(request)


def _next_in_queue(request: HttpRequest) -> HttpResponse:
    """Queue mode: the item this annotator holds, or the next free one."""
    try:
        comparison = services.claim_next(annotator=request.user)
    except services.AnnotationError as error:
        messages.error(request, str(error))
        return redirect("frontend:home")
    if comparison is None:
        messages.info(request, "The queue is empty for you: nothing left to label right now.")
        return redirect("frontend:home")
    return redirect("frontend:comparison", comparison_id=comparison.pk)


@annotator_required
def comparison(request: HttpRequest, comparison_id: int) -> HttpResponse:
    return _comparison_page(request, comparison_id)


def _comparison_page(
    request: HttpRequest,
    comparison_id: int,
    *,
    continue_form: PromptForm | None = None,
    skip_form: SkipForm | None = None,
    status: int = 200,
) -> HttpResponse:
    item = selectors.comparison_for(request.user, comparison_id)
    if item is None:
        raise Http404("no such comparison for you")
    dialogue = item.turn.dialogue
    own = dialogue.source == Dialogue.Source.WRITTEN and dialogue.author_id == request.user.pk
    return render(
        request,
        "frontend/comparison.html",
        {
            "comparison": item,
            "dialogue": dialogue,
            "turn": item.turn,
            "context": selectors.earlier_turns(item),
            "queue_mode": dialogue.source == Dialogue.Source.IMPORTED,
            "own_dialogue": own,
            "continue_form": continue_form or PromptForm(),
            "skip_form": skip_form or SkipForm(),
            "side_keys": SIDE_KEYS,
            "strengths": [(s, STRENGTH_KEYS[s]) for s in Strength],
            "safeties": [(s, SAFETY_KEYS[s]) for s in Safety],
            "skip_reasons": Skip.Reason.choices,
        },
        status=status,
    )


@require_POST
@annotator_required
def skip(request: HttpRequest, comparison_id: int) -> HttpResponse:
    form = SkipForm(request.POST)
    if not form.is_valid():
        return _comparison_page(request, comparison_id, skip_form=form, status=400)
    item = selectors.comparison_for(request.user, comparison_id)
    if item is None:
        raise Http404("no such comparison for you")
    if not on_form(
        form,
        services.skip,
        annotator=request.user,
        comparison_id=comparison_id,
        **form.cleaned_data,
    ):
        return _comparison_page(request, comparison_id, skip_form=form, status=form.refused_status)
    messages.info(request, "Skipped. Thank you for saying why.")
    if item.turn.dialogue.source == Dialogue.Source.IMPORTED:
        return _next_in_queue(request)
    return redirect("frontend:home")
