"""Text a database can store: PostgreSQL refuses NUL in text, and a lone surrogate (JSON's
"\\ud800" escape decodes to one) cannot be encoded as UTF-8 at all, so either would fail the
request deep in the database driver or in the response instead of being refused up front."""

from __future__ import annotations

from typing import Any


def unstorable(text: str) -> str | None:
    """Why `text` cannot be stored, or None if it can."""
    if "\x00" in text:
        return "a NUL character, which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not valid Unicode)"
    return None


def unstorable_in(data: Any) -> str | None:
    """What in parsed JSON (strings, keys included, in lists and objects) no database column can
    hold, if anything. Iterative: the data may be nested nearly as deep as the decoder allows."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and (problem := unstorable(item)):
            return problem
    return None


def printable(text: str) -> str:
    """`text` made safe to send back in an error message: a lone surrogate becomes its escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
