"""Quote user input in error messages without echoing all of it.

A configuration value can be megabytes long (a pasted file, a runaway script); an error
message that repeats it whole floods stderr and the logs. :func:`quote` shows the start and
says how long the whole was, so the user still recognises the value.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

QUOTE_LIMIT = 80


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` itself if at most ``limit`` characters, else its start + ``…(N chars)``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text)} chars)"


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A short printable form of ``value`` for a message: ``repr`` of a string (at most
    ``limit`` characters of it, then ``…(N chars)`` with N the full length), JSON otherwise."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}…({len(value)} chars)"
    # Containers: dump only a prefix (a few items can't exceed `limit` by much), so quoting a
    # million-item list costs no more than quoting a short one.
    head: Any = value
    if isinstance(value, (list, tuple)):
        head = list(value[:limit])
    elif isinstance(value, dict):
        head = dict(itertools.islice(value.items(), limit))
    try:
        text = json.dumps(head, default=repr)
    except (ValueError, RecursionError):  # circular or absurdly deep: show the type only
        text = f"<{type(value).__name__}>"
    if isinstance(value, (list, tuple, dict)) and (len(text) > limit or len(head) < len(value)):
        return f"{text[:limit]}…({len(value)} items)"
    return clip(text, limit)
