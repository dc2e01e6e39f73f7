"""Classify every difference between the paper and backtest journals by its cause.

Categories (issue 7):

* ``rounding`` — only numeric columns differ, each by at most :data:`ROUNDING_REL`
  relative: the same decision, computed through a different float path;
* ``config``   — the profile's hash differs between the sides (any change but the intrabar
  policy alone, which is reported as ``intrabar``);
* ``data``     — the daemon saw a candle that differs from history, came late, or never
  came (see :mod:`tandem.backtest.reconcile.evidence`);
* ``intrabar`` — an ambiguous bar (SL and TP both inside) decided by a policy that may
  differ between the sides;
* ``logic``    — none of these: a bug.

One wrong decision makes later fills differ too (the position, then the shared cash), so
a difference without evidence of its own is attributed to the earliest earlier difference
(a *root*) of the same symbol, else of the same profile, and inherits its category; the
``caused_by`` column names that root. Evidence is tried in this order, most specific
first: rounding; config; outside the window of slices the daemon stepped (it stopped
early or started late: *data*); a data event on this very bar; intrabar; an earlier data event
of this symbol; a root of this symbol; a root of the profile (the same slice counts: an
exit frees cash that later entries size on); a data event of another asset of the profile
(a missing bar changes the portfolio weights of every asset); else logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from tandem.backtest.reconcile.evidence import ConfigDiff
from tandem.backtest.reconcile.match import IDENTICAL, MISMATCHED, NUMERIC, WITHIN

DATA, INTRABAR, ROUNDING, CONFIG, LOGIC = "data", "intrabar", "rounding", "config", "logic"
CATEGORIES = (DATA, INTRABAR, ROUNDING, CONFIG, LOGIC)
#: Largest relative difference still read as float rounding (a few dozen ulps at 1.0).
ROUNDING_REL = 1e-9


def fmt_ts(ts: int) -> str:
    """``1612137600000`` -> ``2021-02-01 00:00`` (UTC), for evidence texts."""
    return pd.Timestamp(int(ts), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def diff_key(row: pd.Series | dict) -> str:
    """Readable id of a difference, e.g. ``BTC/USDT@2021-02-01 00:00 sell stop_loss``."""
    return f"{row['symbol']}@{fmt_ts(row['ts'])} {row['side']} {row['reason']}"


@dataclass
class _Events:
    """One profile's data events, indexed for the lookups below."""

    by_symbol: dict[str, pd.DataFrame] = field(default_factory=dict)
    all: pd.DataFrame | None = None

    @classmethod
    def of(cls, events: pd.DataFrame) -> _Events:
        ev = events.sort_values("close_ts", kind="stable")
        return cls({str(s): g for s, g in ev.groupby("symbol")}, ev)

    def on_bar(self, symbol: str, ts: int) -> pd.Series | None:
        g = self.by_symbol.get(symbol)
        if g is None:
            return None
        hit = g[g["close_ts"] == ts]
        return None if hit.empty else hit.iloc[0]

    def before(self, symbol: str | None, ts: int) -> pd.Series | None:
        """The most recent event at or before ``ts`` (of ``symbol``, or of any asset)."""
        g = self.all if symbol is None else self.by_symbol.get(symbol)
        if g is None or g.empty:
            return None
        hit = g[g["close_ts"] <= ts]
        return None if hit.empty else hit.iloc[-1]


def _event_text(ev: pd.Series) -> str:
    return f"{ev['kind']} candle {ev['symbol']} {fmt_ts(ev['ts'])}: {ev['detail']}"


def _is_rounding(row: pd.Series) -> bool:
    if row["status"] not in (MISMATCHED, WITHIN):
        return False
    fields = [f for f in str(row["fields"]).split(",") if f]
    if not fields or any(f not in NUMERIC for f in fields):
        return False
    for c in fields:
        a, b = float(row[f"{c}_paper"]), float(row[f"{c}_backtest"])
        scale = max(abs(a), abs(b))
        # ``not <=``: a NaN on one side fails every comparison, and read as rounding before;
        # an inf on one side is no rounding either (inf <= 1e-9 * inf held)
        if scale in (0.0, float("inf")) or not abs(a - b) <= ROUNDING_REL * scale:
            return False
    return True


def _intrabar_text(row: pd.Series) -> str | None:
    pi, bi = row.get("intrabar_paper"), row.get("intrabar_backtest")
    if not (pi or bi):
        return None
    show = lambda v: v if v else ("none" if v == "" else "no fill")  # noqa: E731
    return f"ambiguous bar (SL and TP inside) decided by policy: paper={show(pi)}, backtest={show(bi)}"


def classify(
    diffs: pd.DataFrame,
    events: dict[str, pd.DataFrame] | pd.DataFrame,
    configs: dict[str, ConfigDiff],
    coverage: dict[str, tuple[int, int]] | None = None,
) -> pd.DataFrame:
    """Add ``category``, ``evidence`` and ``caused_by`` to the non-identical rows of a
    :func:`~tandem.backtest.reconcile.match.match_fills` frame (identical rows are dropped).

    ``events`` is a data-event frame per profile, or one frame that applies to all.
    ``coverage`` maps a profile to the close times ``(first, last)`` of the slices its
    daemon stepped: a fill outside that window is a *data* difference (the daemon never
    had those candles: it stopped early or started late), not a logic one.
    """
    out = diffs[diffs["status"] != IDENTICAL].copy()
    out["category"], out["evidence"], out["caused_by"] = "", "", ""
    if out.empty:
        return out.reset_index(drop=True)
    out = out.sort_values(["profile", "ts", "symbol"], kind="stable")
    cats, evid, cause, order = [], [], [], []
    for profile, g in out.groupby("profile", sort=False):
        ev_frame = events.get(profile) if isinstance(events, dict) else events
        ev = _Events.of(ev_frame) if ev_frame is not None and len(ev_frame) else _Events()
        cd = configs.get(str(profile)) or ConfigDiff(str(profile), None, None)
        window = (coverage or {}).get(str(profile))
        roots: list[tuple[int, str, str, str]] = []  # (ts, symbol, category, key)
        # One slice at a time: rows with evidence of their own become roots first, since
        # inside a slice an exit (any asset) changes the cash that later entries size on.
        for ts, slice_rows in g.groupby("ts", sort=True):
            decided: dict[int, tuple[str, str, str]] = {}
            for idx, row in slice_rows.iterrows():
                cat, text, _ = _own(row, ev, cd, window)
                if cat is not None:
                    decided[idx] = (cat, text, "")
                    roots.append((int(ts), str(row["symbol"]), cat, diff_key(row)))
            for idx, row in slice_rows.iterrows():
                if idx not in decided:
                    cat, text, by = _inherited(row, str(row["symbol"]), int(ts), roots, ev)
                    if cat is None:
                        cat, text, by = LOGIC, "no data, config, intrabar or rounding explanation", ""
                        roots.append((int(ts), str(row["symbol"]), cat, diff_key(row)))
                    decided[idx] = (cat, text, by)
                order.append(idx)
                cats.append(decided[idx][0])
                evid.append(decided[idx][1])
                cause.append(decided[idx][2])
    out = out.loc[order]
    out["category"], out["evidence"], out["caused_by"] = cats, evid, cause
    return out.reset_index(drop=True)


def _own(
    row: pd.Series, ev: _Events, cd: ConfigDiff, window: tuple[int, int] | None = None
) -> tuple[str | None, str, str]:
    sym, ts = str(row["symbol"]), int(row["ts"])
    if _is_rounding(row):
        return ROUNDING, f"relative differences <= {ROUNDING_REL:g} in {row['fields']}", ""
    if cd.hash_differs and not cd.intrabar_only:
        shown = ", ".join(cd.fields[:6]) + (" ..." if len(cd.fields) > 6 else "")
        what = f": {shown}" if cd.fields else ""
        ph, bh = (cd.paper_hash or "?")[:12], (cd.backtest_hash or "?")[:12]
        return CONFIG, f"profile hash differs (paper {ph}, backtest {bh}){what}", ""
    if window is not None and ts > window[1]:
        return DATA, f"after the daemon's last stepped slice (closed {fmt_ts(window[1])}): no candles", ""
    if window is not None and ts < window[0]:
        return DATA, f"before the daemon's first stepped slice (closed {fmt_ts(window[0])})", ""
    hit = ev.on_bar(sym, ts)
    if hit is not None:
        return DATA, _event_text(hit), ""
    ib = _intrabar_text(row)
    if ib is not None and cd.policy_may_differ:
        return INTRABAR, ib, ""
    hit = ev.before(sym, ts)
    if hit is not None:
        return DATA, _event_text(hit), ""
    return None, "", ""


def _inherited(
    row: pd.Series, sym: str, ts: int, roots: list[tuple[int, str, str, str]], ev: _Events
) -> tuple[str | None, str, str]:
    same = [r for r in roots if r[1] == sym and r[0] <= ts]
    if same:
        r = same[0]
        return r[2], f"follows the earlier difference {r[3]}", r[3]
    if roots:
        r = roots[0]
        return r[2], f"follows the earlier difference {r[3]} (shared cash/weights)", r[3]
    hit = ev.before(None, ts)
    if hit is not None:
        return DATA, f"another asset's data: {_event_text(hit)}", ""
    return None, "", ""


def category_counts(classified: pd.DataFrame) -> dict[str, int]:
    """``{category: count}`` over :data:`CATEGORIES` (zeros included, fixed order)."""
    counts = classified["category"].value_counts() if len(classified) else pd.Series(dtype=int)
    return {c: int(counts.get(c, 0)) for c in CATEGORIES}
