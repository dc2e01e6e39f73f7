"""Evidence that explains a difference: data events (candles) and configuration changes.

*Data events* compare the candles the daemon journaled (its ``candles``, ``late`` and
``slices`` tables) with the stored history the backtest read, bar by bar:

=========  =================================================================================
altered    the daemon consumed a bar whose OHLCV differ from history (bitwise)
late       history has the bar; the daemon received it only after stepping that slice
           (its ``late`` table), so the engine saw the asset as missing
missing    history has the bar; the daemon never received it (stepped as missing)
extra      the daemon consumed a bar that history does not have
=========  =================================================================================

(``tandem.backtest.reconcile.api`` re-labels a *missing* warm-up bar of a database whose
warm-up journal is incomplete as *unjournaled*: the daemon may well have warmed up on it,
so it is listed but explains no difference.)

Without a history, only what the daemon itself recorded is used (late candles, and assets
its slices stepped as missing, which then cannot be told apart from a real exchange gap).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from tandem.backtest.reconcile.sources import ProfileInfo

EVENT_COLUMNS = ["symbol", "ts", "close_ts", "kind", "detail"]
_OHLCV = ("open", "high", "low", "close", "volume")


class CandleReader(Protocol):
    """What reconcile needs from a candle source (``tandem.core.store`` sources satisfy it)."""

    def read(self, symbol: str, start: Any = None, end: Any = None, *, timeframe: str | None = None) -> pd.DataFrame: ...


def empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {"symbol": pd.Series(dtype=object), "ts": pd.Series(dtype="int64"),
         "close_ts": pd.Series(dtype="int64"), "kind": pd.Series(dtype=object),
         "detail": pd.Series(dtype=object)}
    )


def _history(history: CandleReader | None, symbol: str, start: int, end: int, timeframe: str | None) -> pd.DataFrame | None:
    if history is None:
        return None
    try:
        return history.read(symbol, start, end, timeframe=timeframe)
    except KeyError:  # SymbolNotFoundError: the store has nothing for this symbol
        return pd.DataFrame({c: [] for c in ("ts", *_OHLCV)}).astype({"ts": "int64"})


def _fmt(x: float) -> str:
    return repr(float(x))


def data_events(
    consumed: pd.DataFrame,
    late: pd.DataFrame,
    slices: pd.DataFrame,
    tf_ms: int,
    history: CandleReader | None = None,
    timeframe: str | None = None,
) -> pd.DataFrame:
    """Data events (see the module doc), one row per (symbol, bar), sorted by time.

    ``consumed``/``late`` are :func:`~tandem.backtest.reconcile.sources.read_db_candles` frames,
    ``slices`` a :func:`~tandem.backtest.reconcile.sources.read_db_slices` frame; ``ts`` is the
    bar open time and ``close_ts = ts + tf_ms`` the journal time of fills on that bar.
    """
    rows: list[tuple[str, int, str, str]] = []
    if len(slices):
        lo, hi = int(slices["ts"].min()), int(slices["ts"].max())
    elif len(consumed):
        lo, hi = int(consumed["ts"].min()), int(consumed["ts"].max())
    else:
        return empty_events()
    missing_at: dict[str, set[int]] = {}
    for ts, miss in zip(slices["ts"], slices["missing"], strict=True):
        for sym in miss:
            missing_at.setdefault(sym, set()).add(int(ts))
    symbols = sorted(set(consumed["symbol"]) | set(late["symbol"]) | set(missing_at))
    late_by = {s: g.set_index("ts") for s, g in late.groupby("symbol")}
    for sym in symbols:
        mine = consumed[consumed["symbol"] == sym].set_index("ts")
        lt = late_by.get(sym)
        hist = _history(history, sym, lo, hi + 1, timeframe)
        if hist is None:
            # No history: trust the daemon's own records only.
            for ts in sorted(set(lt.index) if lt is not None else set()):
                rows.append((sym, int(ts), "late", "received after its slice was stepped"))
            for ts in sorted(missing_at.get(sym, set()) - (set(lt.index) if lt is not None else set())):
                rows.append((sym, ts, "missing", "stepped as missing (no history to confirm)"))
            continue
        hist = hist.set_index("ts")
        both = mine.index.intersection(hist.index)
        if len(both):
            a = mine.loc[both, list(_OHLCV)].to_numpy(np.float64)
            b = hist.loc[both, list(_OHLCV)].to_numpy(np.float64)
            differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
            for k in np.flatnonzero(differ.any(axis=1)):
                what = ", ".join(
                    f"{_OHLCV[j]} {_fmt(a[k, j])} vs history {_fmt(b[k, j])}"
                    for j in np.flatnonzero(differ[k])
                )
                rows.append((sym, int(both[k]), "altered", what))
        for ts in hist.index.difference(mine.index):
            if lt is not None and ts in lt.index:
                rows.append((sym, int(ts), "late", f"received after its slice was stepped (via {lt.loc[ts, 'origin']})"))
            else:
                rows.append((sym, int(ts), "missing", "in history, never received by the daemon"))
        for ts in mine.index.difference(hist.index):
            rows.append((sym, int(ts), "extra", "consumed by the daemon, absent from history"))
    if not rows:
        return empty_events()
    out = pd.DataFrame(rows, columns=["symbol", "ts", "kind", "detail"])
    out["ts"] = out["ts"].astype("int64")
    out["close_ts"] = out["ts"] + int(tf_ms)
    return out[EVENT_COLUMNS].sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class ConfigDiff:
    """How one profile's configuration differs between the two sides.

    ``hash_differs`` is None when either side's hash is unknown. ``fields`` lists the dotted
    paths whose values differ (empty when the JSON of either side is unknown).
    """

    profile: str
    paper_hash: str | None
    backtest_hash: str | None
    fields: tuple[str, ...] = field(default_factory=tuple)
    json_compared: bool = False  # both sides' canonical JSON were known and compared

    @property
    def hash_differs(self) -> bool | None:
        if self.paper_hash is not None and self.backtest_hash is not None:
            return self.paper_hash != self.backtest_hash
        if self.json_compared:  # a hash is unknown, but the JSONs speak for themselves
            return bool(self.fields)
        return None

    @property
    def intrabar_only(self) -> bool:
        """The only known change is the intrabar policy (so it shows as *intrabar*)."""
        return bool(self.fields) and all(f.split(".")[-1] == "intrabar" for f in self.fields)

    @property
    def policy_may_differ(self) -> bool:
        """Could the intrabar policy differ? (unknown hashes, or known to differ in it)."""
        if self.hash_differs is None:
            return True
        if not self.hash_differs:
            return False
        return not self.fields or any(f.split(".")[-1] == "intrabar" for f in self.fields)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def config_diff(name: str, paper: ProfileInfo | None, backtest: ProfileInfo | None) -> ConfigDiff:
    """Compare one profile's hash and (when both known) its canonical JSON field by field."""
    ph = paper.hash if paper else None
    bh = backtest.hash if backtest else None
    fields: tuple[str, ...] = ()
    compared = bool(paper and backtest and paper.json is not None and backtest.json is not None)
    if compared:
        fa, fb = flatten(paper.json), flatten(backtest.json)
        fields = tuple(sorted(k for k in fa.keys() | fb.keys() if not _same(fa.get(k), fb.get(k))))
    elif ph and bh and ph != bh:
        # Only one side's JSON is known (a backtest's stats.json keeps just the hash): if
        # that JSON with another intrabar policy hashes to the other side's hash, the
        # policy is exactly what changed.
        known, other = (paper, bh) if paper and paper.json is not None else (backtest, ph)
        if known is not None and known.json is not None:
            policy = _intrabar_variant(known.json, other)
            if policy is not None:
                fields = ("exit_rules.intrabar",)
    return ConfigDiff(name, ph, bh, fields, compared)


def _canonical_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _intrabar_variant(profile_json: dict[str, Any], target_hash: str) -> str | None:
    """The intrabar policy that makes ``profile_json`` hash to ``target_hash``, if any."""
    rules = profile_json.get("exit_rules")
    if not isinstance(rules, dict):
        return None
    for policy in ("pessimistic", "ohlc", "adaptive"):
        variant = {**profile_json, "exit_rules": {**rules, "intrabar": policy}}
        if _canonical_hash(variant) == target_hash:
            return policy
    return None
