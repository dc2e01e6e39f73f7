"""Timeframe strings (ccxt style) and UTC epoch bucket alignment.

A timeframe is a ccxt string such as ``"5m"``, ``"1h"``, ``"1d"`` or ``"1w"``. Higher
timeframes are built from base bars on UTC epoch boundaries (DESIGN.md "Multi-timeframe"),
so every function here is integer arithmetic on milliseconds: no pandas, no time zones.

Weekly buckets start on Monday 00:00 UTC, as exchange weekly candles do (Binance, ccxt);
the Unix epoch fell on a Thursday, so weeks carry a 4-day offset. Months and years have no
fixed length: they parse to ms (ccxt's 30-day / 365-day convention) but cannot be used as
aggregation targets.
"""

from __future__ import annotations

import re

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

# ccxt's parse_timeframe uses the same unit table (M = 30 days, y = 365 days).
_UNIT_MS = {
    "s": SECOND_MS,
    "m": MINUTE_MS,
    "h": HOUR_MS,
    "d": DAY_MS,
    "w": WEEK_MS,
    "M": 30 * DAY_MS,
    "y": 365 * DAY_MS,
}
_TF_RE = re.compile(r"^([1-9][0-9]*)([smhdwMy])$")

# 1970-01-01 was a Thursday; Monday 1970-01-05 00:00 UTC is 4 days later.
WEEK_OFFSET_MS = 4 * DAY_MS

# Timeframes the exchanges we target actually serve (Binance list); the manifest only
# accepts these so that a typo such as "7m" is caught before any data is requested.
EXCHANGE_TIMEFRAMES: tuple[str, ...] = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
)


class TimeframeError(ValueError):
    """A timeframe string that cannot be parsed or used as asked."""


def timeframe_to_ms(tf: str) -> int:
    """Parse a ccxt timeframe string (``"1m"`` … ``"1w"``, ``"1M"``, ``"1y"``) to milliseconds."""
    if not isinstance(tf, str):
        raise TimeframeError(f"timeframe must be a string like '1h', got {tf!r}")
    m = _TF_RE.match(tf)
    if m is None:
        raise TimeframeError(f"invalid timeframe {tf!r}: expected <int><unit>, unit in s m h d w M y")
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def is_fixed_length(tf: str) -> bool:
    """True when every bar of ``tf`` lasts the same number of ms (not months/years)."""
    return _TF_RE.match(tf) is not None and tf[-1] not in ("M", "y")


def bucket_offset_ms(tf: str) -> int:
    """Offset of ``tf``'s bucket grid from the Unix epoch (weeks start on Monday)."""
    tf_ms = timeframe_to_ms(tf)
    if tf[-1] == "w" and tf_ms % WEEK_MS == 0:
        return WEEK_OFFSET_MS
    return 0


def bucket_start(ts: int, tf: str) -> int:
    """Open time (ms) of the ``tf`` bucket holding timestamp ``ts``."""
    if not is_fixed_length(tf):
        raise TimeframeError(f"timeframe {tf!r} has no fixed length; cannot bucket by it")
    tf_ms = timeframe_to_ms(tf)
    off = bucket_offset_ms(tf)
    return (ts - off) // tf_ms * tf_ms + off


def is_boundary(ts: int, tf: str) -> bool:
    """True when ``ts`` (ms) falls exactly on a ``tf`` bucket boundary."""
    return bucket_start(ts, tf) == ts


def check_htf(base_tf: str, htf: str) -> None:
    """Raise :class:`TimeframeError` unless ``htf`` can be aggregated from ``base_tf`` bars.

    The HTF must be fixed-length, a whole multiple of the base, and its bucket grid must
    fall on base boundaries (so every HTF bucket is a whole number of base bars).
    """
    base_ms = timeframe_to_ms(base_tf)
    htf_ms = timeframe_to_ms(htf)
    if not (is_fixed_length(base_tf) and is_fixed_length(htf)):
        raise TimeframeError(f"cannot aggregate {base_tf!r} to {htf!r}: months/years have no fixed length")
    if htf_ms < base_ms:
        raise TimeframeError(f"timeframe {htf!r} is shorter than the base timeframe {base_tf!r}")
    if htf_ms % base_ms != 0:
        raise TimeframeError(f"timeframe {htf!r} is not a whole multiple of the base timeframe {base_tf!r}")
    if bucket_offset_ms(htf) % base_ms != 0:
        raise TimeframeError(f"{htf!r} buckets (Monday-aligned) do not fall on {base_tf!r} boundaries")


def bars_per(base_tf: str, htf: str) -> int:
    """Number of ``base_tf`` bars in one ``htf`` bar (after :func:`check_htf`)."""
    check_htf(base_tf, htf)
    return timeframe_to_ms(htf) // timeframe_to_ms(base_tf)
