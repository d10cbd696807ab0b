"""Idempotency keys: a client that retries a write (after a timeout, a 503, a dropped
connection) sends the same key, and gets what the first request wrote instead of a second
copy. Keys are scoped to their user, and a fingerprint of the request tells a retry from a
different request that reuses a key (a 409)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from rest_framework import serializers

HEADER = "Idempotency-Key"
KEY = re.compile(r"[!-~]{1,200}")
KEY_RULE = "must be 1-200 printable ASCII characters"


def header_key(headers) -> str:
    """The request's Idempotency-Key header ("" without one); a 400 if it is malformed."""
    key = headers.get(HEADER, "")
    if key and not KEY.fullmatch(key):
        raise serializers.ValidationError({HEADER: KEY_RULE})
    return key


def scoped(user, key: str) -> str:
    """The stored form of a user's key: two users' keys never collide."""
    return f"user-{user.pk}:{key}" if key and user is not None else key


def fingerprint(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
