"""The research pages: the iterations and model versions with the figures across versions, and
one iteration with its steps, progress, log and figures. For researchers and admins; the data
comes from rlhf.selectors, the figures are rlhf.charts' SVG."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from annotation.permissions import RESEARCHER, has_role
from rlhf import charts, selectors
from rlhf.models import Iteration, ModelVersion

LOG_LINES = 40
RECENT_ITERATIONS = 50


def researcher_required(view):
    """Log in first; then only researchers (and staff) get past, everyone else a 403 page."""

    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not has_role(request.user, RESEARCHER):
            return render(request, "rlhf/403.html", status=403)
        return view(request, *args, **kwargs)

    return wrapped


@researcher_required
def research_home(request: HttpRequest) -> HttpResponse:
    ratings = selectors.version_ratings()
    return render(
        request,
        "rlhf/research_home.html",
        {
            "iterations": selectors.iteration_list()[:RECENT_ITERATIONS],
            "policies": selectors.model_version_list(kind=ModelVersion.Kind.POLICY),
            "ratings": ratings,
            "charts": charts.rendered(selectors.version_figures(rated=ratings["ratings"])),
        },
    )


@researcher_required
def iteration_page(request: HttpRequest, pk: int) -> HttpResponse:
    iteration = get_object_or_404(selectors.iteration_detail(), pk=pk)
    return render(
        request,
        "rlhf/iteration.html",
        {
            "iteration": iteration,
            "active": iteration.status in Iteration.ACTIVE,
            "log_tail": selectors.iteration_log_tail(iteration=iteration, lines=LOG_LINES),
            "charts": charts.rendered(selectors.iteration_figures(iteration=iteration)),
        },
    )
