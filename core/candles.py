"""Candle validation shared by every driver and every source: one rule, stated here.

Two layers:

* **The strict API check** (:func:`bar_problem`, :func:`check_bar`, :func:`validate_candles`):
  what ``compute_ratings`` and ``RatingState.step`` demand of the bars a caller hands them.
  It raises ``ValueError`` naming the first bad row; both faces word it identically.
* **The source policy** (:func:`clean_candles`, :func:`bar_fault`, :func:`timestamps_to_ms`):
  what every loader (CSV folder, store Parquet, universe Parquet) and the daemon's live path
  (websocket closing frames, REST backfill rows) do with the candles they read. Stated in the
  README ("Candle validation"):

  1. **Timestamps by their type.** A typed timestamp (Arrow ``timestamp[unit, tz]``, pandas
     ``datetime64[unit(, tz)]``, ISO-8601 text) is read by its unit; naive means UTC. An
     integer epoch's unit (s, ms, µs, ns) is detected by magnitude: every value must be a date
     in 1980–2200 in the same unit, else the series is refused naming what was found.
  2. **Order.** Unsorted rows are sorted (stable), logged ``candles_unsorted`` (count, first
     ts). **Duplicated ts**: the first *valid* copy wins (valid: passes rule 4's per-bar
     checks, :func:`bar_fault`); the first copy when none is valid (it is then dropped by
     rule 4). Logged ``candle_duplicates`` (dropped, conflicting values, first ts, which copy
     was kept and how many bars kept a later copy). Why not plain first-wins (the store's
     append rule): a malformed first copy would be kept, then dropped as bad, and the good
     copy of the same bar lost with it: a hole where data existed.
  3. **Grid.** Every bar opens on the timeframe's UTC grid (weeks start Monday) and
     consecutive bars are a whole multiple of the timeframe apart (a multiple > 1 is a gap:
     missing bars, allowed), and at least one pair of consecutive bars is exactly one
     timeframe apart (a series of ``SPACING_MIN_BARS`` (20) bars or more where every spacing
     is a gap is another timeframe's data: 4h bars in a 1h file). Anything else (5m bars in a 1h file,
     1h bars at :30) is a data error: :class:`CandleDataError` naming the source, the first
     offending ts and the spacing found. Months/years (no fixed length) skip this rule.
  4. **Bad bars are dropped**: a non-finite or ≤ 0 price, a non-finite or < 0 volume,
     ``high < low``, open or close outside ``[low, high]``, a high more than
     ``SPIKE_FACTOR`` × the bar's body (``max(open, close)``; a 1e300 print), and — on
     stored history, where the next bar is known — a single-bar bad print: an open or close
     more than ``JUMP_FACTOR`` × away from *both* the previous bar's close and the next bar's
     open while those two agree (bars exactly one timeframe apart). A dropped bar becomes a
     missing bar (NaN in the aligned arrays: that asset does nothing in that slice, as for
     an exchange gap). Logged once per series: ``candles_rejected`` with the count, the
     first ts and a count per reason. Nothing is repaired: a repaired price is a price no
     one traded. **Unless most bars are bad**: when more than half the bars of a series of
     ``BAD_SHARE_MIN_BARS`` (10) or more fail these checks, the series is refused
     (:class:`CandleDataError` with the counts per reason): that is not bad prints in good
     history but a file read wrongly (high and low columns swapped, prices in the volume
     column), and thinning it to the few bars that pass would trade on a different market.

Why drop and not reject the file: one bad print in years of history should not stop a
backtest, and a missing bar is a state the engine already handles honestly; why not repair:
a widened high/low would fire stops at prices that never traded. Why downward wicks are
kept: a price cannot fall below zero, and real flash crashes trade (Coinbase ETH-USD fell
from ≈317 to 0.10 on 2017-06-21 and filled real stops — a backtest must see that risk);
a rise has no bound, and 100× above the bar's own body is a bad print. Why the jump rule
looks at both neighbours: in a 24/7 market a bar opens where the previous one closed; a
real move keeps the new level (the next bar opens there), a bad print does not.

The live daemon applies rules 1 (ccxt gives ms), 3 (grid) and 4 without the jump rule (it
needs the next bar, and the daemon acts at the bar's close); replays read stored history
through the loaders, so a replay and a backtest see the same bars.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import structlog
from tandem.core.arrow_numpy import arrow_to_numpy

log = structlog.get_logger(__name__)

#: A bar whose high exceeds SPIKE_FACTOR x max(open, close) is a bad print (dropped).
SPIKE_FACTOR = 100.0
#: An open/close more than JUMP_FACTOR x away from both neighbours (which agree) is a bad print.
JUMP_FACTOR = 1.25
#: A series of this many bars or more with no two consecutive bars one timeframe apart is
#: another timeframe's data (fewer bars may just be a sparse store: a few separate closes).
SPACING_MIN_BARS = 20
#: A series of this many bars or more where over half the bars fail the bar checks is
#: refused, not thinned (a file read wrongly; fewer bars: too few to tell).
BAD_SHARE_MIN_BARS = 10

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


# --------------------------------------------------------------------------- source policy


class CandleDataError(ValueError):
    """A candle series that cannot be used as read (timestamp unit, spacing, alignment).
    Loaders re-raise it as their own error; the CLIs exit 1 with its one-line message."""


def iso(ms: int) -> str:
    """``1609459200000 -> '2021-01-01T00:00:00Z'`` (for messages; no pandas needed)."""
    try:
        return np.datetime64(int(ms), "ms").astype("datetime64[s]").item().isoformat() + "Z"
    except (OverflowError, ValueError):
        return f"{ms} ms"


def span(ms: int) -> str:
    """A duration in the largest whole unit: ``300000 -> '5m'``, ``5400000 -> '90m'``."""
    ms = int(ms)
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000),
                       ("s", 1_000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


# ---- 1. timestamps

_EPOCH_LO_S = 315_532_800  # 1980-01-01: older than any exchange candle
_EPOCH_HI_S = 7_258_118_400  # 2200-01-01
# (name, units per second, ms per unit as a fraction num/den)
_EPOCH_UNITS = (("s", 1, 1000, 1), ("ms", 1_000, 1, 1), ("µs", 1_000_000, 1, 1_000),
                ("ns", 1_000_000_000, 1, 1_000_000))
_DT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000),
          "m": (60_000, 1), "h": (3_600_000, 1), "D": (86_400_000, 1)}


def epoch_unit(value: int) -> str | None:
    """The epoch unit in which ``value`` is a date in 1980–2200 (the windows are disjoint)."""
    for name, per_s, _, _ in _EPOCH_UNITS:
        if _EPOCH_LO_S * per_s <= value < _EPOCH_HI_S * per_s:
            return name
    return None


def ms_option_problem(ms: int) -> str | None:
    """Why an integer given as epoch *ms* (``--from``, ``--since``) is another unit's epoch,
    or None. As for candle epochs the unit is not guessed: 1612137600 (seconds of
    2021-02-01) read as ms is 1970-01-19, and is refused rather than reinterpreted."""
    unit = epoch_unit(ms)
    if unit is None and 0 <= ms < _EPOCH_LO_S * 1000:
        # Small integers are no ms epoch a user means: ``--from 20210201`` (a compact date)
        # read as ms is 1970-01-01T05:36Z, before any data, so the run traded from the first
        # bar with no warm-up and exited 0. Refused like the other units (past-2200 values
        # are left to the callers' own range checks).
        text = str(ms)
        hint = ""
        if len(text) == 8:
            try:
                day = np.datetime64(f"{text[:4]}-{text[4:6]}-{text[6:]}")
                hint = f"; for the date {day} write {day}"
            except ValueError:
                pass
        return f"is {iso(ms)} as epoch ms, before 1980 (no candle is that old){hint}"
    if unit in (None, "ms"):
        return None
    seen = f" ({iso(ms * 1000)})" if unit == "s" else ""
    return f"is an epoch in {unit}{seen}, not ms; give epoch milliseconds or a date"


def _nearest_reading(value: int) -> str:
    """What ``value`` would mean in the unit whose window is nearest (for a refusal)."""
    best = None
    for name, per_s, _, _ in _EPOCH_UNITS:
        lo, hi = _EPOCH_LO_S * per_s, _EPOCH_HI_S * per_s
        d = 0.0 if lo <= value < hi else abs(math.log10(max(abs(value), 1) / (lo if value < lo else hi)))
        if best is None or d < best[0]:
            best = (d, name, per_s)
    _, name, per_s = best
    return f"as {name} it would be {iso(value * 1000 // per_s)}"


def _scale(ints: np.ndarray, num: int, den: int, what: str, where: str) -> np.ndarray:
    if den > 1:
        rem = ints % den
        if rem.any():
            i = int(np.argmax(rem != 0))
            raise CandleDataError(f"{where}: timestamp {int(ints[i])} ({what}) is not a whole "
                                  "millisecond; bar open times are whole ms")
        return ints // den
    return ints * num


def epochs_to_ms(values: Any, where: str = "candles") -> np.ndarray:
    """Integer epochs (s, ms, µs or ns, detected by magnitude) to int64 ms.

    Every value must read as a date in 1980–2200 in one and the same unit; otherwise the
    series is refused (:class:`CandleDataError`) naming the values and the units they match.
    """
    arr = np.asarray(values)
    if arr.size == 0:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise CandleDataError(f"{where}: timestamp missing or not finite at row {int(np.argmax(bad))}")
        frac = arr != np.floor(arr)
        if frac.any():
            i = int(np.argmax(frac))
            raise CandleDataError(f"{where}: timestamp {float(arr[i])!r} at row {i} is not a whole number")
        if np.abs(arr).max() >= 2.0**63:
            raise CandleDataError(f"{where}: timestamp {np.abs(arr).max():g} is out of range")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise CandleDataError(f"{where}: timestamps must be integer epochs or dates, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    lo, hi = int(arr.min()), int(arr.max())
    u_lo, u_hi = epoch_unit(lo), epoch_unit(hi)
    if u_lo is None or u_hi is None:
        v = lo if u_lo is None else hi
        raise CandleDataError(
            f"{where}: timestamp {v} is not an epoch in s, ms, µs or ns of a date in 1980-2200 "
            f"({_nearest_reading(v)}); refusing to guess its unit")
    if u_lo != u_hi:
        raise CandleDataError(
            f"{where}: timestamps mix units: {lo} reads as {u_lo}, {hi} as {u_hi}; refusing to guess")
    _, _, num, den = next(u for u in _EPOCH_UNITS if u[0] == u_lo)
    return _scale(arr, num, den, u_lo, where)


def _datetime64_to_ms(arr: np.ndarray, where: str) -> np.ndarray:
    unit, count = np.datetime_data(arr.dtype)
    if unit not in _DT_MS:
        raise CandleDataError(f"{where}: timestamps of unit {unit!r} are not supported")
    nat = np.isnat(arr)
    if nat.any():
        raise CandleDataError(f"{where}: timestamp missing (NaT) at row {int(np.argmax(nat))}")
    num, den = _DT_MS[unit]
    return _scale(arr.view(np.int64) * count, num, den, unit, where)


def timestamps_to_ms(column: Any, where: str = "candles") -> np.ndarray:
    """Bar open times of any source column as int64 ms UTC: typed timestamps (Arrow,
    pandas, numpy ``datetime64``, with or without a zone; naive = UTC) by their unit,
    ISO-8601 text parsed, integer epochs by magnitude (:func:`epochs_to_ms`)."""
    try:
        import pyarrow as pa
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        pa = None
    if pa is not None and isinstance(column, pa.ChunkedArray | pa.Array):
        t = column.type
        if pa.types.is_timestamp(t) or pa.types.is_date(t):
            if pa.types.is_date(t):
                column = column.cast(pa.timestamp("ms"))
            elif t.tz is not None:
                column = column.cast(pa.timestamp(t.unit))  # the instant, zone dropped (UTC)
            if column.null_count:  # NaT: the clear error below names the row
                return _datetime64_to_ms(np.asarray(column.to_numpy()), where)
            unit = column.type.unit
            ticks = arrow_to_numpy(column.cast(pa.int64()))
            return _datetime64_to_ms(ticks.view(f"datetime64[{unit}]"), where)
        if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
            import pandas as pd

            column = pd.Series(column.to_pylist())
        else:
            if column.null_count:
                raise CandleDataError(f"{where}: {column.null_count} timestamp(s) missing")
            return epochs_to_ms(arrow_to_numpy(column), where)
    import pandas as pd  # here: an Arrow store's integer epochs need no pandas (the daemon)

    series = column if isinstance(column, pd.Series) else pd.Series(np.asarray(column))
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return _datetime64_to_ms(series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), where)
    if pd.api.types.is_datetime64_dtype(dtype):
        return _datetime64_to_ms(series.to_numpy(), where)
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        if series.isna().any():
            raise CandleDataError(f"{where}: timestamp missing at row {int(np.argmax(series.isna()))}")
        numbers = pd.to_numeric(series, errors="coerce")
        if numbers.notna().all():
            return epochs_to_ms(numbers.to_numpy(), where)
        if numbers.notna().any():  # epochs with a stray word ("total" in a last row)
            i = int(np.argmax(numbers.isna().to_numpy()))
            raise CandleDataError(f"{where}: timestamp {str(series.iloc[i])[:40]!r} at row {i} "
                                  "is not a number like the other rows' epochs")
        try:
            stamps = pd.to_datetime(series, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            # pandas' message spans several lines of advice; the error is one line naming the row
            nat = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce").isna()
            if nat.any():
                i = int(np.argmax(nat.to_numpy()))
                raise CandleDataError(f"{where}: timestamp {str(series.iloc[i])[:40]!r} at row "
                                      f"{i} is neither an epoch nor an ISO-8601 date") from None
            raise CandleDataError(f"{where}: timestamps are neither epochs nor ISO-8601 dates "
                                  f"({str(exc).splitlines()[0][:120]})") from None
        _refuse_mixed_zones(series, where)  # every row is ISO: are their zones alike?
        return _datetime64_to_ms(stamps.dt.tz_localize(None).to_numpy(), where)
    return epochs_to_ms(series.to_numpy(), where)


#: An ISO time of day that ends in a zone: ``...T09:00:00+09:00``, ``... 00:00Z``.
_ZONED = r"[T ]\d{2}(?::\d{2}){0,2}(?:[.,]\d+)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _refuse_mixed_zones(series: Any, where: str) -> None:
    """ISO text with a UTC offset on some rows and none on others is refused, as mixed epoch
    units are: the naive rows read as UTC (the rule) while the file's author may have meant
    local time, so the bars moved by hours, collided ("candle_duplicates") and the run
    exited 0."""
    zoned = series.astype(str).str.strip().str.contains(_ZONED, case=False, regex=True)
    if zoned.any() and not zoned.all():
        i, j = int(np.argmax(zoned.to_numpy())), int(np.argmin(zoned.to_numpy()))
        raise CandleDataError(
            f"{where}: timestamps mix ISO times with a UTC offset ({str(series.iloc[i])[:40]!r} "
            f"at row {i}) and without ({str(series.iloc[j])[:40]!r} at row {j}); refusing to "
            "guess the zone of the naive ones (write every row in UTC, or every row with its offset)")


# ---- 3. the grid


def check_grid(ts: np.ndarray, timeframe: str, where: str = "candles") -> None:
    """Raise :class:`CandleDataError` unless every bar (sorted, unique ``ts``) opens on
    ``timeframe``'s UTC grid, consecutive bars are a whole multiple of it apart, and (from
    ``SPACING_MIN_BARS`` bars on) some two consecutive bars are exactly one ``timeframe`` apart."""
    from tandem.core.timeframes import (
        TimeframeError,
        bucket_offset_ms,
        is_fixed_length,
        timeframe_to_ms,
    )

    try:
        tf = timeframe_to_ms(timeframe)
    except TimeframeError as exc:
        raise CandleDataError(f"{where}: {exc}") from None
    if len(ts) == 0 or not is_fixed_length(timeframe):
        return  # months/years: no fixed spacing to check
    off = bucket_offset_ms(timeframe)
    d = np.diff(ts)
    bad_gap = d % tf != 0
    bad_grid = (ts - off) % tf != 0
    i_gap = int(np.argmax(bad_gap)) + 1 if bad_gap.any() else None  # the later bar of the pair
    i_grid = int(np.argmax(bad_grid)) if bad_grid.any() else None
    if i_gap is not None and (i_grid is None or i_gap <= i_grid):
        a, b = int(ts[i_gap - 1]), int(ts[i_gap])
        raise CandleDataError(
            f"{where}: bars at {iso(a)} and {iso(b)} are {span(b - a)} apart, which is not "
            f"a whole number of {timeframe} bars (first offending ts {b}); is this really "
            f"{timeframe} data?")
    if i_grid is not None:
        t = int(ts[i_grid])
        raise CandleDataError(
            f"{where}: bar at {iso(t)} (ts {t}) is {span((t - off) % tf)} off the UTC {timeframe} "
            f"grid (spacing found {span(int(d[0])) if len(d) else 'n/a'}); {timeframe} bars "
            f"open on whole {timeframe} boundaries")
    if len(ts) >= SPACING_MIN_BARS and not (d == tf).any():
        # Every spacing a gap: 4h or 1d bars in a 1h file pass the rules above (whole bars
        # apart, on the grid) and would be traded as 1h bars with three (23) missing between.
        # Real history of a timeframe has consecutive bars somewhere; a series with none
        # is another timeframe's data.
        raise CandleDataError(
            f"{where}: no two of its {len(ts)} bars are one {timeframe} apart (smallest "
            f"spacing {span(int(d.min()))}, first bars at {iso(int(ts[0]))} and "
            f"{iso(int(ts[1]))}); is this really {timeframe} data?")


# ---- 4. bad bars

#: Reasons a bar is dropped, by code (0 = fine). The last one needs the next bar.
FAULTS = (
    None,
    "price or volume not finite",
    "price <= 0",
    "volume < 0",
    "high < low",
    "open outside [low, high]",
    "close outside [low, high]",
    f"spike: high > {SPIKE_FACTOR:g} x max(open, close)",
    f"jump: open or close > {JUMP_FACTOR:g} x away from both neighbouring bars",
)
_JUMP = len(FAULTS) - 1


def bar_fault(o: float, h: float, lo: float, c: float, v: float) -> str | None:
    """Why one bar is dropped (rules 4 without the jump rule), or None: the live face."""
    if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and math.isfinite(c)
            and math.isfinite(v)):
        return FAULTS[1]
    if o <= 0.0 or h <= 0.0 or lo <= 0.0 or c <= 0.0:
        return FAULTS[2]
    if v < 0.0:
        return FAULTS[3]
    if h < lo:
        return FAULTS[4]
    if not lo <= o <= h:
        return FAULTS[5]
    if not lo <= c <= h:
        return FAULTS[6]
    if h > SPIKE_FACTOR * max(o, c):
        return FAULTS[7]
    return None


def bar_fault_codes(values: np.ndarray) -> np.ndarray:
    """:func:`bar_fault` of every row of ``values`` (``n x 5``: o, h, l, c, v) as codes into
    :data:`FAULTS` (the first failing rule, in the same order)."""
    code = np.zeros(len(values), dtype=np.int8)
    o, h, lo, c, v = (values[:, k] for k in range(5))
    with np.errstate(invalid="ignore", over="ignore"):
        # Fast pass (every rule at once; NaN fails every comparison): most series are clean.
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        ok = (lo > 0) & (lo <= bottom) & (top <= h) & (v >= 0) & (h <= SPIKE_FACTOR * top)
        ok &= np.isfinite(h) & np.isfinite(v)  # inf high / volume pass the comparisons
        if ok.all():
            return code
        rows = np.flatnonzero(~ok)
        o, h, lo, c, v = (values[rows, k] for k in range(5))
        rules = (
            ~np.isfinite(values[rows]).all(axis=1),
            (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0),
            v < 0,
            h < lo,
            (o < lo) | (o > h),
            (c < lo) | (c > h),
            h > SPIKE_FACTOR * np.maximum(o, c),
        )
    sub = np.zeros(len(rows), dtype=np.int8)
    for k in range(len(rules), 0, -1):  # the first rule in order wins
        sub[rules[k - 1]] = k
    code[rows] = sub
    return code


def jump_outliers(ts: np.ndarray, values: np.ndarray, tf_ms: int) -> np.ndarray:
    """Single-bar bad prints (the jump rule) among bars that passed :func:`bar_fault`."""
    n = len(ts)
    out = np.zeros(n, dtype=bool)
    if n < 3:
        return out
    o, c = values[:, 0], values[:, 3]
    # A print needs a jump at one of its bar's edges: look closer only where one is.
    step = o[1:] / c[:-1]
    edge = (step > JUMP_FACTOR) | (step < 1.0 / JUMP_FACTOR)
    if not edge.any():
        return out
    i = np.unique(np.concatenate([np.flatnonzero(edge), np.flatnonzero(edge) + 1]))
    i = i[(i >= 1) & (i <= n - 2)]  # bars with both neighbours in the series
    inner = (ts[i] - ts[i - 1] == tf_ms) & (ts[i + 1] - ts[i] == tf_ms)
    prev_c, next_o = c[i - 1], o[i + 1]

    def far(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a / b, b / a) > JUMP_FACTOR

    agree = ~far(prev_c, next_o)
    hit = np.zeros(len(i), dtype=bool)
    for x in (o[i], c[i]):
        hit |= inner & agree & far(x, prev_c) & far(x, next_o)
    out[i[hit]] = True
    return out


def first_valid_copies(ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row index kept for each distinct ``ts`` of ``ts`` (sorted, stable): the first copy
    that passes :func:`bar_fault` (rule 2: the first *valid* copy), else the first copy
    (it is then dropped as bad by rule 4, as a lone bad bar would be)."""
    n = len(ts)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    starts = np.flatnonzero(np.concatenate([[True], ts[1:] != ts[:-1]]))
    valid = bar_fault_codes(values) == 0
    # per group, the smallest row index that is valid (n if none)
    cand = np.minimum.reduceat(np.where(valid, np.arange(n), n), starts)
    return np.where(cand < n, cand, starts)


def _dedup(ts: np.ndarray, values: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Rule 2's duplicates (``ts`` sorted, stable): one row per ``ts``, the first valid copy
    (:func:`first_valid_copies`); logged ``candle_duplicates``."""
    new_ts = np.concatenate([[True], ts[1:] != ts[:-1]])
    starts, group = np.flatnonzero(new_ts), np.cumsum(new_ts) - 1
    kept = first_valid_copies(ts, values)
    chosen = values[kept[group]]  # each row's kept copy
    same = (values == chosen) | (np.isnan(values) & np.isnan(chosen))
    dropped = np.ones(len(ts), dtype=bool)
    dropped[kept] = False
    conflicts = dropped & ~same.all(axis=1)
    later = kept != starts  # the first copy was bad, a later valid copy is kept
    first = int(ts[int(np.argmax(dropped))])
    log.warning("candle_duplicates", source=where, dropped=int(dropped.sum()),
                conflicting=int(conflicts.sum()), first_ts=first, first_time=iso(first),
                kept="first valid copy (the first when none is valid)",
                kept_later_copy=int(later.sum()))
    return ts[kept], values[kept]


def clean_candles(
    ts: np.ndarray, values: np.ndarray, timeframe: str | None, where: str = "candles"
) -> tuple[np.ndarray, np.ndarray]:
    """The source policy (module docstring) on one series: ``ts`` int64 ms, ``values``
    ``n x 5`` (o, h, l, c, v). Returns sorted, unique, on-grid bars with bad bars dropped;
    logs what it did; raises :class:`CandleDataError` for a grid violation. ``timeframe``
    None skips the grid rule and the jump rule (they need it)."""
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64).reshape(-1, 5)
    if len(ts) == 0:
        return ts, values
    d = np.diff(ts)
    back = d < 0
    if back.any():
        first = int(ts[int(np.argmax(back)) + 1])
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        d = np.diff(ts)
        log.warning("candles_unsorted", source=where, rows_out_of_order=int(back.sum()),
                    first_ts=first, first_time=iso(first), action="sorted by ts")
    if (d == 0).any():
        ts, values = _dedup(ts, values, where)
    if timeframe is not None:
        check_grid(ts, timeframe, where)
    codes = bar_fault_codes(values)
    if timeframe is not None:
        from tandem.core.timeframes import is_fixed_length, timeframe_to_ms

        if is_fixed_length(timeframe):
            ok = codes == 0
            jumps = jump_outliers(ts[ok], values[ok], timeframe_to_ms(timeframe))
            codes[np.flatnonzero(ok)[jumps]] = _JUMP
    bad = codes != 0
    if bad.any():
        first = int(ts[int(np.argmax(bad))])
        counts = np.bincount(codes[bad], minlength=len(FAULTS))
        if len(ts) >= BAD_SHARE_MIN_BARS and 2 * int(bad.sum()) > len(ts):
            reasons = ", ".join(f"{FAULTS[k]} {int(counts[k])}" for k in range(1, len(FAULTS))
                                if counts[k])
            raise CandleDataError(
                f"{where}: {int(bad.sum())} of its {len(ts)} bars fail the candle checks "
                f"({reasons}; first at {iso(first)}): most of the series, so the file is "
                f"read wrongly (columns swapped or mislabelled?), not a few bad prints")
        log.warning("candles_rejected", source=where, dropped=int(bad.sum()), first_ts=first,
                    first_time=iso(first), action="dropped (missing bars)",
                    reasons={FAULTS[k]: int(counts[k]) for k in range(1, len(FAULTS)) if counts[k]})
        ts, values = ts[~bad], values[~bad]
    return ts, values
