"""Candle validation shared by every driver.

One rule, two faces: :func:`bar_problem` judges a single bar (the streaming API calls it
before stepping, so a rejected bar never touches indicator state) and
:func:`validate_candles` checks whole arrays with numpy, then words its error with
:func:`bar_problem` on the first bad row, so both faces raise the very same message.

A candle is ``(ts, open, high, low, close, volume)``; ``ts`` = bar open time, int ms UTC.
Rules, checked in this order for each row:

1. every price and the volume is finite (no NaN / inf);
2. ``ts`` is strictly after the previous row's (no duplicate, no out-of-order row);
3. every price is > 0;
4. ``high >= low``;
5. ``volume >= 0``.

Gaps in time are allowed (exchange maintenance); zero volume and flat bars are allowed.
"""

from __future__ import annotations

import math

import numpy as np

_FIELDS = ("open", "high", "low", "close", "volume")


def bar_problem(
    ts: int, o: float, h: float, lo: float, c: float, v: float, prev_ts: int | None = None
) -> str | None:
    """What is wrong with one bar (``None`` when nothing is). ``prev_ts`` is the ts of the
    bar before it, or ``None`` for the first bar."""
    for name, x in zip(_FIELDS, (o, h, lo, c, v), strict=True):
        if not math.isfinite(x):
            return f"{name} is not finite ({x})"
    if prev_ts is not None:
        if ts == prev_ts:
            return f"duplicate timestamp (same as the previous row, {prev_ts})"
        if ts < prev_ts:
            return f"timestamp out of order (before the previous row's {prev_ts})"
    for name, x in zip(_FIELDS[:4], (o, h, lo, c), strict=True):
        if x <= 0.0:
            return f"{name} <= 0 ({x})"
    if h < lo:
        return f"high < low ({h} < {lo})"
    if v < 0.0:
        return f"volume < 0 ({v})"
    return None


def bad_candle_message(row: int, ts: int, problem: str) -> str:
    """The one wording of a rejection, shared by the batch and the streaming API."""
    return f"bad candle at row {row} (ts={ts}): {problem}"


def check_bar(
    row: int,
    ts: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
    prev_ts: int | None = None,
) -> None:
    """Raise ``ValueError`` if the bar numbered ``row`` is bad (see the module rules)."""
    problem = bar_problem(ts, o, h, lo, c, v, prev_ts)
    if problem is not None:
        raise ValueError(bad_candle_message(row, ts, problem))


def validate_candles(
    ts: np.ndarray,
    o: np.ndarray,
    h: np.ndarray,
    lo: np.ndarray,
    c: np.ndarray,
    v: np.ndarray,
) -> None:
    """Raise ``ValueError`` naming the first bad row (0-based position) of a candle series.

    Vectorised with numpy to locate the first offending row; the message comes from
    :func:`bar_problem` so it is identical to what the streaming API says for that bar.
    """
    ts = np.asarray(ts)
    cols = [np.asarray(x, dtype=np.float64) for x in (o, h, lo, c, v)]
    n = ts.shape[0]
    if any(x.shape != (n,) for x in cols) or ts.ndim != 1:
        raise ValueError("candle columns must be 1-D and of equal length")
    if n == 0:
        return
    if not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"timestamps must be integer ms, got dtype {ts.dtype}")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(cols[0])
        for x in cols[1:]:
            bad |= ~np.isfinite(x)
        bad[1:] |= ts[1:] <= ts[:-1]
        for x in cols[:4]:
            bad |= x <= 0.0
        bad |= cols[1] < cols[2]
        bad |= cols[4] < 0.0
    if not bad.any():
        return
    i = int(np.argmax(bad))
    prev = int(ts[i - 1]) if i > 0 else None
    row = [float(x[i]) for x in cols]
    problem = bar_problem(int(ts[i]), *row, prev_ts=prev)
    if problem is None:  # the vector rules and bar_problem disagree: a bug, not bad data
        raise AssertionError(f"validate_candles flagged row {i} but bar_problem accepts it")
    raise ValueError(bad_candle_message(i, int(ts[i]), problem))
