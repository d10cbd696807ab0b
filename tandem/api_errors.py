"""The one place that turns an error into an API response, for both APIs (the annotators'
under /annotate/api/ and the research API under /api/; REST_FRAMEWORK["EXCEPTION_HANDLER"]).

Every error is {"detail": why, "field": the input or null}: the services' own errors (the
annotation app's and the loop's, each with its HTTP status), DRF's validation errors (the
first message, with the dotted path of its field) and DRF's other errors (authentication,
permission, throttling, parsing). A message is made encodable first: it may quote what the
client sent. Anything else is left to handler500 (tandem/errors.py).
"""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from annotation.export import UnknownBatch
from annotation.services import AnnotationError, DuplicateLabel
from rlhf.services import LoopError
from tandem.storable import printable


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, LoopError):
        return error_response(str(exc), exc.field, exc.status)
    if isinstance(exc, DuplicateLabel):  # the page shows the label that was kept
        return error_response(str(exc), None, exc.status, label=exc.label.pk)
    if isinstance(exc, AnnotationError):
        return error_response(str(exc), None, exc.status)
    if isinstance(exc, UnknownBatch):  # a batch named in the URL
        return error_response(str(exc), None, status.HTTP_404_NOT_FOUND)
    if isinstance(exc, ValidationError):
        field, message = _first_error(exc.detail)
        return error_response(f"{field}: {message}" if field else message, field, exc.status_code)
    response = drf_exception_handler(exc, context)  # keeps WWW-Authenticate and Retry-After
    if response is not None:
        detail = str(response.data.get("detail", response.data))
        response.data = {"detail": printable(detail), "field": None}
    return response


def error_response(detail: str, field: str | None, code: int, **extra: Any) -> Response:
    field = None if field is None else printable(field)
    return Response({"detail": printable(detail), "field": field, **extra}, status=code)


def _first_error(detail: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """The first message in DRF's nested error detail, with the dotted path of its field
    ("batches.0"; a serializer-wide error has no field)."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        if key != api_settings.NON_FIELD_ERRORS_KEY:
            path = (*path, str(key))
        return _first_error(value, path)
    if isinstance(detail, list):
        return _first_error(next((item for item in detail if item), detail[0]), path)
    return ".".join(path) or None, str(detail)
