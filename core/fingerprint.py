"""Fingerprints of a fills journal: one hash per trade and one per run.

Both drivers print them, so two runs (a backtest and a replay, two backtests, a run before
and after a refactor) can be compared at a glance: equal run fingerprints mean equal fills
in every column but ``source`` and ``run_id`` (the two columns that name *who* produced the
rows, not *what* they are).

Encoding rules, chosen so that a hash changes exactly when a journal value changes:

* floats are encoded with ``float.hex`` — exact, so ``0.1 + 0.2`` and ``0.3`` hash
  differently, and no decimal formatting can hide or invent a difference; ``-0.0`` is
  normalized to ``0.0`` (they compare equal, and a kernel may produce either);
* ints as decimal, strings as-is, fields joined by ``\\x1f`` and rows by ``\\x1e`` (ASCII
  unit/record separators, which never occur in symbols or profile names);
* the run hash sorts rows by ``(profile, ts, fill_id)`` first, so the physical row order
  of a CSV, a Parquet file or an SQLite table does not matter.

A **trade** is one round trip of one symbol within one profile: the fills from a flat
position until it is flat again (a reversal through zero closes one trade and opens the
next). Its hash covers the trade's own fills *without* ``cash_after`` (which reflects every
other asset's trades too), so a difference in one trade does not change the hash of an
unrelated trade of another asset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Columns of a journal row that identify its producer, not its content.
IGNORED_COLUMNS: tuple[str, ...] = ("source", "run_id")
#: Columns hashed for a run, in this order (DESIGN.md journal order minus the ignored ones).
RUN_COLUMNS: tuple[str, ...] = (
    "fill_id", "profile", "symbol", "ts", "side", "qty", "price", "fee", "reason", "intrabar",
    "position_after", "cash_after",
)
#: Columns hashed for a trade: the run columns without ``cash_after`` (see module doc).
TRADE_COLUMNS: tuple[str, ...] = tuple(c for c in RUN_COLUMNS if c != "cash_after")
_FLOAT_COLUMNS = frozenset({"qty", "price", "fee", "position_after", "cash_after"})
_UNIT, _RECORD = "\x1f", "\x1e"
#: Characters of a fingerprint shown in one-line summaries (48 bits: ample to spot a change).
SHORT = 12


def _enc_floats(values: np.ndarray) -> list[str]:
    # ``+ 0.0`` turns -0.0 into 0.0 (IEEE: -0.0 + 0.0 == +0.0) and leaves every other value
    # as it is; tolist() hands float.hex Python floats without a per-value numpy scalar.
    return list(map(float.hex, (np.asarray(values, dtype=np.float64) + 0.0).tolist()))


def encode_rows(fills: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """One canonical string per row of ``fills`` over ``columns`` (see the module doc)."""
    cols = list(columns)
    parts: list[list[str]] = []
    for col in cols:
        values = fills[col].to_numpy()
        if col in _FLOAT_COLUMNS:
            parts.append(_enc_floats(values))
        elif col == "ts":
            parts.append(list(map(str, values.astype(np.int64).tolist())))
        else:
            parts.append(["" if v is None else str(v) for v in values.tolist()])
    return list(map(_UNIT.join, zip(*parts, strict=True))) if cols else []


def _digest(rows: list[str]) -> str:
    # One update over the whole journal: each row followed by the record separator.
    body = "".join(row + _RECORD for row in rows)
    return hashlib.sha256(body.encode()).hexdigest()


def canonical_order(fills: pd.DataFrame) -> pd.DataFrame:
    """``fills`` sorted by ``(profile, ts, fill_id)`` — the order the run hash uses."""
    return fills.sort_values(["profile", "ts", "fill_id"], kind="stable").reset_index(drop=True)


def run_fingerprint(fills: pd.DataFrame) -> str:
    """sha256 hex over every fill (all columns but ``source``/``run_id``), order-independent.

    An empty journal has a fingerprint too (the hash of nothing), so "no fills" compares.
    """
    return _digest(encode_rows(canonical_order(fills), RUN_COLUMNS))


def profile_fingerprints(fills: pd.DataFrame) -> dict[str, str]:
    """Run fingerprint per profile (a journal may hold several profiles)."""
    return {str(p): run_fingerprint(g) for p, g in fills.groupby("profile", sort=True)}


def _trade_order(df: pd.DataFrame) -> pd.DataFrame:
    # Within one bar the engine exits before it enters (a reversal is exit then entry);
    # fill_id alone would sort "entry" before "exit", so rank the entry leg last.
    rank = (df["reason"] == "entry").to_numpy(np.int8)
    order = np.lexsort(
        (df["fill_id"].to_numpy(str), rank, df["ts"].to_numpy(np.int64),
         df["symbol"].to_numpy(str), df["profile"].to_numpy(str))
    )
    return df.iloc[order]


def _label_trades(order: pd.DataFrame) -> list[str]:
    """Trade label of each row of a frame already in :func:`_trade_order`."""
    prof = order["profile"].to_numpy()
    sym = order["symbol"].to_numpy()
    ts = order["ts"].to_numpy()
    pos = order["position_after"].to_numpy()
    labels: list[str] = []
    key = None
    label = ""
    open_ = False
    for k in range(len(order)):
        here = (prof[k], sym[k])
        if here != key:
            key, open_ = here, False
        if not open_:
            label = f"{prof[k]}:{sym[k]}:{int(ts[k])}"
            open_ = True
        labels.append(label)
        if pos[k] == 0.0:
            open_ = False
    return labels


def trade_ids(fills: pd.DataFrame) -> np.ndarray:
    """Label each fill with its trade: ``{profile}:{symbol}:{entry_ts}``.

    The entry time identifies a trade (one symbol never opens two trades on one bar: exits
    come before entries in a slice, and an entry bar never exits), so the same trade has
    the same id in two runs even when one run has extra trades before it.

    Fills are walked per (profile, symbol) in time order (within one bar, exits before an
    entry, as the engine emits them); a trade starts at the first fill after a flat
    position and ends at the fill that leaves it flat. A fill that reverses the position
    (through zero, ``long_short``) ends its trade and the next fill starts a new one — the
    engine writes a reversal as two rows (exit, then entry).
    """
    out = np.empty(len(fills), dtype=object)
    if not len(fills):
        return out
    df = fills.reset_index(drop=True)
    order = _trade_order(df)
    out[order.index.to_numpy()] = _label_trades(order)
    return out


def trade_fingerprints(fills: pd.DataFrame) -> pd.DataFrame:
    """One row per trade: ``trade_id, profile, symbol, entry_ts, n_fills, closed, fingerprint``.

    ``closed`` is False for a trade still open at the end of the journal. Rows come in
    ``(profile, entry_ts, symbol)`` order.
    """
    cols = ["trade_id", "profile", "symbol", "entry_ts", "n_fills", "closed", "fingerprint"]
    if not len(fills):
        return pd.DataFrame(columns=cols)
    order = _trade_order(fills.reset_index(drop=True))
    labels = _label_trades(order)
    encoded = encode_rows(order, TRADE_COLUMNS)
    pos = order["position_after"].to_numpy()
    prof, sym, ts = order["profile"].to_numpy(), order["symbol"].to_numpy(), order["ts"].to_numpy()
    rows: dict[str, dict] = {}
    hashes: dict[str, hashlib._Hash] = {}
    for k, label in enumerate(labels):  # rows of one trade are contiguous in this order
        if label not in rows:
            rows[label] = {"trade_id": label, "profile": prof[k], "symbol": sym[k],
                           "entry_ts": int(ts[k]), "n_fills": 0, "closed": False}
            hashes[label] = hashlib.sha256()
        rows[label]["n_fills"] += 1
        rows[label]["closed"] = bool(pos[k] == 0.0)
        hashes[label].update(encoded[k].encode())
        hashes[label].update(_RECORD.encode())
    for label, h in hashes.items():
        rows[label]["fingerprint"] = h.hexdigest()
    out = pd.DataFrame(list(rows.values()), columns=cols)
    return out.sort_values(["profile", "entry_ts", "symbol"], kind="stable").reset_index(drop=True)


def count_trades(fills: pd.DataFrame) -> int:
    """Number of trades (round trips, open ones included) in ``fills``."""
    if not len(fills):
        return 0
    return len(set(_label_trades(_trade_order(fills.reset_index(drop=True)))))


def fingerprint_line(fills: pd.DataFrame, label: str = "fingerprint",
                     run_hash: str | None = None) -> str:
    """The one line both drivers print, e.g.
    ``fingerprint run=3fa9c0d1e2b4 fills=812 trades=401 crypto_rating_all=3fa9c0d1e2b4``
    (one hash per profile only when the journal holds several). ``run_hash``: the
    :func:`run_fingerprint` of ``fills`` when the caller has it already."""
    run_hash = run_hash or run_fingerprint(fills)
    n_profiles = fills["profile"].nunique() if len(fills) else 0
    per_profile = profile_fingerprints(fills) if n_profiles > 1 else {}
    extra = "".join(f" {p}={h[:SHORT]}" for p, h in per_profile.items())
    return (
        f"{label} run={run_hash[:SHORT]} fills={len(fills)} "
        f"trades={count_trades(fills)}{extra}"
    )
