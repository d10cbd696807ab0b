"""Every request's input is checked once, at the door, before any view, form or parser sees it.

RequestInputMiddleware refuses a query string holding a NUL (admin's search would send it to
PostgreSQL, which refuses it: a 500), reads the body of every request that has one (the APIs,
the pages' forms, admin, and endpoints that take no body alike), so Django's
DATA_UPLOAD_MAX_MEMORY_SIZE bounds them all, and parses a JSON body with `parse_json`: nesting
too deep for Python's decoder (a RecursionError, else a 500), NaN and Infinity, and strings no
database can store (tandem.storable) are refused. Each is a 400 saying why (JSON on the APIs, a
page elsewhere) and nothing runs. DRF's parser (`JSONParser`, the REST_FRAMEWORK default) hands
the views the value parsed here.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import parsers

from tandem.errors import bad_request_response, too_big_message
from tandem.storable import unstorable_in


class InvalidBody(ValueError):
    """A body Tandem refuses; the message is written for the client."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes, encoding: str = "utf-8") -> Any:
    try:
        data = json.loads(body.decode(encoding), parse_constant=_reject_constant)
    except RecursionError:
        raise InvalidBody("the JSON is nested too deeply") from None
    except (ValueError, LookupError) as error:  # JSONDecodeError, UnicodeDecodeError, charset
        raise InvalidBody(f"JSON parse error - {error}") from None
    if problem := unstorable_in(data):
        raise InvalidBody(f"the JSON holds {problem}")
    return data


def is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


class RequestInputMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        # A query string's percent escapes decode with replacement: a NUL is all it can hide.
        if any("\x00" in key + "".join(values) for key, values in request.GET.lists()):
            return bad_request_response(request, "the query string holds a NUL character")
        # Multipart bodies stream to Django's parser, which bounds their fields itself.
        if _has_body(request) and request.content_type != "multipart/form-data":
            try:
                body = request.body
            except RequestDataTooBig:
                return bad_request_response(request, too_big_message())
            if is_json(request.content_type):
                try:
                    request.json_body = parse_json(
                        body, request.content_params.get("charset", "utf-8")
                    )
                except InvalidBody as error:
                    return bad_request_response(request, str(error))
        return self.get_response(request)


def _has_body(request) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser over the body RequestInputMiddleware parsed and checked."""

    def parse(self, stream, media_type=None, parser_context=None):
        return parser_context["request"]._request.json_body
