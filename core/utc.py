"""UTC times as epoch milliseconds and ISO 8601 text, without pandas.

Every command prints and parses times; importing pandas for that cost ~0.3 s of a process
that otherwise never needs it. ISO 8601 (what we print, and what users type: ``2021-02-01``,
``2021-02-01T12:00``, ``...Z``, ``...+02:00``) is Python's own ``datetime``; other forms
(``Feb 1 2021``) still go through ``pandas.Timestamp`` at the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def iso_from_ms(ms: int) -> str:
    """``2021-02-01T00:00:00+00:00`` (``pandas.Timestamp(ms, unit="ms", tz="UTC").isoformat()``)."""
    return (EPOCH + int(ms) * _MS).isoformat()


def ms_from_iso(text: str) -> int | None:
    """An ISO 8601 date/time as epoch ms, floored (naive = UTC); None if ``text`` is not ISO."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // _MS


DAY_MS = 86_400_000


def ended_utc_day(now_ms: int) -> tuple[int, int]:
    """``(since, end)`` of the UTC day that ended at the last midnight before ``now_ms``:
    the fills with ``since < ts <= end`` (a fill's ``ts`` is its bar's close, so the bar
    closing at 00:00 is the old day's last). A daily summary run late (a busy loop) covers
    that day, not "the last 24 h", which counted the new day's first bars twice."""
    end = int(now_ms) // DAY_MS * DAY_MS
    return end - DAY_MS, end
