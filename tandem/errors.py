"""The last word on a request that raised: `handler500`.

A database or Redis that is away (restarting, stopped, unreachable) is not a bug of the
request: it gets a 503 with Retry-After, as JSON on the APIs and as a readable page elsewhere,
and the next request after the service is back succeeds (connections are reopened: health
checks on PostgreSQL's, a new one per command on Redis's). The session and authentication
machinery fail in such an outage too, possibly with a secondary error while handling the
first; the whole chain is looked at. Anything else is a bug: a 500, as JSON on the APIs.

`handler400` answers what Django itself refuses before a view runs (too many form fields, a
malformed multipart body, a disallowed host) in the same two forms, as
tandem.request_input does for input it refuses: {"detail", "field": null} on the APIs, a page
saying what was wrong elsewhere.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views.defaults import server_error as django_server_error

# Seconds a client should wait before trying again: a PostgreSQL or Redis restart.
RETRY_AFTER = 5
API_PREFIXES = ("/api/", "/annotate/api/")


def _outage_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (OperationalError, InterfaceError, BrokerError, RedisConnectionError, RedisTimeoutError)


def is_outage(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised while handling, is a service being away."""
    outage, seen = _outage_errors(), set()
    while error is not None and id(error) not in seen:
        if isinstance(error, outage):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_outage(sys.exc_info()[1]):
        return unavailable(request)
    if is_api(request):
        return JsonResponse({"detail": "internal error: the team has been told"}, status=500)
    return django_server_error(request)


def too_big_message() -> str:
    return f"the request body is over the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"


# What Django raises for a body it will not read, and what the client is told.
_REFUSED_BODIES = {
    RequestDataTooBig: too_big_message,
    TooManyFieldsSent: lambda: "the request has too many fields",
    TooManyFilesSent: lambda: "the request has too many files",
}


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    message = next(
        (text() for kind, text in _REFUSED_BODIES.items() if isinstance(exception, kind)),
        "the request is malformed",
    )
    return bad_request_response(request, message)


def bad_request_response(request: HttpRequest, message: str) -> HttpResponse:
    """A 400 saying why: JSON on the APIs, a page elsewhere (rendered without the request,
    which may be the very thing that is malformed: its session is not read)."""
    if is_api(request):
        return JsonResponse({"detail": message, "field": None}, status=400)
    page = render_to_string("frontend/bad_request.html", {"message": message})
    return HttpResponse(page, status=400)


def unavailable(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        response: HttpResponse = JsonResponse(
            {
                "detail": "a service Tandem needs is briefly unavailable; try again shortly",
                "retry_after": RETRY_AFTER,
            },
            status=503,
        )
    else:
        # Rendered without the request: its context processors would ask the database.
        response = HttpResponse(render_to_string("frontend/unavailable.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response
