"""Streaming aggregation of closed base bars into closed higher-timeframe (HTF) bars.

Rules (DESIGN.md "Multi-timeframe", issue 4):

* Buckets sit on UTC epoch boundaries (weeks: Monday, see :mod:`tandem.core.timeframes`);
  open = first, high = max, low = min, close = last, volume = sum.
* An HTF bar is emitted on the step of the base bar whose **close equals the bucket's
  end** — the earliest moment it is complete, never earlier. The live daemon cannot wait
  for the next bar to learn that a bucket ended, so this is what it must do.
* If that last base bar is missing (a gap), the bucket is emitted on the next *real* base
  bar that lies beyond the boundary. A gap inside a bucket therefore still closes it; it
  just becomes visible later, never earlier. Missing bars (close NaN, the engine's
  convention) leave the state untouched: whether or not a driver feeds all-NaN slices,
  the output is the same.
* The first bucket is dropped when the first base bar seen is not its first bar (partial).
* Bars at or before the last bar seen are ignored (a re-fed duplicate must not double-count).

One step may emit two HTF bars: the late bucket closed by a gap and, when the arriving bar
is itself the last bar of its bucket, that bucket too. ``out`` therefore has two rows.

The kernel keeps its state in a flat float64 array (ms timestamps < 2**53 are exact), so
the MTF state that embeds it can be checkpointed as bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from tandem.core.jit import njit
from tandem.core.timeframes import bucket_offset_ms, check_htf, timeframe_to_ms

if TYPE_CHECKING:  # pandas is imported where it is used (not on the daemon's hot path)
    import pandas as pd

# --- state layout ---------------------------------------------------------------------
AGG_START = 0  # open time of the bucket being built; NaN = no bucket open
AGG_OPEN = 1
AGG_HIGH = 2
AGG_LOW = 3
AGG_CLOSE = 4
AGG_VOLUME = 5
AGG_PARTIAL = 6  # 1.0 = the bucket missed its first bar(s) and is the first one seen: drop it
AGG_SEEN = 7  # 1.0 once any real bar has been seen
AGG_LAST_TS = 8  # open time of the last real bar accepted
AGG_STATE_SIZE = 9

# --- emitted bar layout (one row of ``out``) --------------------------------------------
HTF_TS, HTF_OPEN, HTF_HIGH, HTF_LOW, HTF_CLOSE, HTF_VOLUME = 0, 1, 2, 3, 4, 5
HTF_BAR_SIZE = 6
MAX_EMIT = 2


def new_agg_state() -> np.ndarray:
    """Fresh aggregation state (no bucket open, nothing seen)."""
    state = np.full(AGG_STATE_SIZE, np.nan)
    state[AGG_PARTIAL] = 0.0
    state[AGG_SEEN] = 0.0
    return state


@njit(cache=True)
def agg_reset_nb(state: np.ndarray) -> None:
    """Reset ``state`` in place to a fresh aggregation state."""
    for i in range(AGG_STATE_SIZE):
        state[i] = np.nan
    state[AGG_PARTIAL] = 0.0
    state[AGG_SEEN] = 0.0


@njit(cache=True)
def _emit_nb(state, so, out, n):
    """Write the open bucket (state at ``state[so:]``) to ``out[n]`` unless it is partial;
    close the bucket. Returns the number of bars written (0 or 1)."""
    if state[so + AGG_PARTIAL] == 0.0:
        out[n, HTF_TS] = state[so + AGG_START]
        out[n, HTF_OPEN] = state[so + AGG_OPEN]
        out[n, HTF_HIGH] = state[so + AGG_HIGH]
        out[n, HTF_LOW] = state[so + AGG_LOW]
        out[n, HTF_CLOSE] = state[so + AGG_CLOSE]
        out[n, HTF_VOLUME] = state[so + AGG_VOLUME]
        written = 1
    else:
        written = 0
    state[so + AGG_START] = np.nan
    state[so + AGG_PARTIAL] = 0.0
    return written


@njit(cache=True)
def agg_step_at_nb(state, so, ts, o, h, l, c, v, base_ms, htf_ms, offset_ms, out):  # noqa: E741
    """:func:`agg_step_nb` on a state stored at ``state[so:so+AGG_STATE_SIZE]``: how the
    MTF step calls it, without an array view per bar (a view costs numba an atomic
    reference count)."""
    if np.isnan(c) or np.isnan(h) or np.isnan(l):
        return 0  # same missing-bar rule as the ratings (rating_step_nb)
    fts = float(ts)
    if state[so + AGG_SEEN] == 1.0 and fts <= state[so + AGG_LAST_TS]:
        return 0  # duplicate or out-of-order bar
    n = np.int64(0)  # int64, not a literal 0: one compiled _emit_nb
    cur = state[so + AGG_START]
    if not np.isnan(cur) and fts < cur + htf_ms:
        start = np.int64(cur)  # inside the open bucket (ts > the last bar >= its start)
    else:  # a 64-bit division costs tens of ns: only for a new bucket
        start = (ts - offset_ms) // htf_ms * htf_ms + offset_ms
    if not np.isnan(state[so + AGG_START]) and float(start) != state[so + AGG_START]:
        # A bar beyond the open bucket's end: its last base bar(s) were missing.
        n += _emit_nb(state, so, out, n)
    if np.isnan(state[so + AGG_START]):
        # The first bucket ever seen is partial if it does not start at its boundary.
        partial = state[so + AGG_SEEN] == 0.0 and ts != start
        state[so + AGG_START] = float(start)
        state[so + AGG_OPEN] = o
        state[so + AGG_HIGH] = h
        state[so + AGG_LOW] = l
        state[so + AGG_CLOSE] = c
        state[so + AGG_VOLUME] = v
        state[so + AGG_PARTIAL] = 1.0 if partial else 0.0
    else:
        if h > state[so + AGG_HIGH]:
            state[so + AGG_HIGH] = h
        if l < state[so + AGG_LOW]:
            state[so + AGG_LOW] = l
        state[so + AGG_CLOSE] = c
        state[so + AGG_VOLUME] += v
    state[so + AGG_SEEN] = 1.0
    state[so + AGG_LAST_TS] = fts
    if ts + base_ms >= start + htf_ms:
        # This bar's close is the bucket's end: the HTF bar is complete now.
        n += _emit_nb(state, so, out, n)
    return n


@njit(cache=True)
def agg_step_nb(state, ts, o, h, l, c, v, base_ms, htf_ms, offset_ms, out):  # noqa: E741
    """Feed one closed base bar (open time ``ts`` ms); return how many HTF bars closed (0-2).

    Closed HTF bars are written to ``out[:n]`` (rows ``[ts_open, o, h, l, c, v]``), oldest
    first. NaN close/high/low marks a missing bar: nothing changes and 0 is returned.
    """
    return agg_step_at_nb(state, np.int64(0), ts, o, h, l, c, v, base_ms, htf_ms, offset_ms, out)


@njit(cache=True)
def agg_batch_nb(ts, o, h, l, c, v, base_ms, htf_ms, offset_ms):  # noqa: E741
    """Run :func:`agg_step_nb` over a series; return ``(bars[m, 6], emitted_at[m])``.

    ``emitted_at[k]`` is the index of the base bar on whose step HTF bar ``k`` closed, i.e.
    the first base bar at which it may be used.
    """
    n = ts.shape[0]
    state = np.full(AGG_STATE_SIZE, np.nan)
    state[AGG_PARTIAL] = 0.0
    state[AGG_SEEN] = 0.0
    bars = np.empty((n + 1, HTF_BAR_SIZE))
    emitted_at = np.empty(n + 1, dtype=np.int64)
    out = np.empty((MAX_EMIT, HTF_BAR_SIZE))
    m = 0
    for i in range(n):
        k = agg_step_nb(state, ts[i], o[i], h[i], l[i], c[i], v[i], base_ms, htf_ms, offset_ms, out)
        for j in range(k):
            for q in range(HTF_BAR_SIZE):  # not bars[m, :] = out[j, :]: see core.mtf
                bars[m, q] = out[j, q]
            emitted_at[m] = i
            m += 1
    return bars[:m].copy(), emitted_at[:m].copy()


def aggregate_candles(candles: pd.DataFrame, base_tf: str, htf: str) -> pd.DataFrame:
    """Aggregate closed ``base_tf`` candles to closed ``htf`` candles.

    ``candles`` has columns ``timestamp`` (or ``ts``; bar open, ms), ``open, high, low,
    close, volume``, sorted by time. Returns the same columns plus ``emitted_at_ts``: the
    open time of the base bar on whose close the HTF bar became visible. The final,
    still-forming bucket is not returned.
    """
    import pandas as pd

    check_htf(base_tf, htf)
    ts_col = "timestamp" if "timestamp" in candles.columns else "ts"
    ts = candles[ts_col].to_numpy(dtype=np.int64)
    cols = [candles[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")]
    bars, at = agg_batch_nb(
        ts, *cols, timeframe_to_ms(base_tf), timeframe_to_ms(htf), bucket_offset_ms(htf)
    )
    out = pd.DataFrame(bars[:, 1:], columns=["open", "high", "low", "close", "volume"])
    out.insert(0, ts_col, bars[:, HTF_TS].astype(np.int64))
    out["emitted_at_ts"] = ts[at] if len(at) else np.empty(0, dtype=np.int64)
    return out
