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
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from tandem.core.arrow_numpy import column_values

if TYPE_CHECKING:  # a journal may come as a pandas frame or an Arrow table; neither is needed
    import pandas as pd
    import pyarrow as pa

    Journal = pd.DataFrame | pa.Table

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

Columns = Mapping[str, np.ndarray]


def _columns(fills: Journal, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The named columns as NumPy arrays (a frame's Series and an Arrow column alike)."""
    return {c: column_values(fills, c) for c in names}


def _take(cols: Columns, index: np.ndarray) -> dict[str, np.ndarray]:
    return {c: v[index] for c, v in cols.items()}


def _enc_floats(values: np.ndarray) -> list[str]:
    # ``+ 0.0`` turns -0.0 into 0.0 (IEEE: -0.0 + 0.0 == +0.0) and leaves every other value
    # as it is; tolist() hands float.hex Python floats without a per-value numpy scalar.
    return list(map(float.hex, (np.asarray(values, dtype=np.float64) + 0.0).tolist()))


def _encode(cols: Columns, names: Iterable[str]) -> list[str]:
    parts: list[list[str]] = []
    for col in names:
        values = cols[col]
        if col in _FLOAT_COLUMNS:
            parts.append(_enc_floats(values))
        elif col == "ts":
            parts.append(list(map(str, values.astype(np.int64).tolist())))
        else:
            parts.append(["" if v is None else str(v) for v in values.tolist()])
    return list(map(_UNIT.join, zip(*parts, strict=True))) if parts else []


def encode_rows(fills: Journal, columns: Iterable[str]) -> list[str]:
    """One canonical string per row of ``fills`` over ``columns`` (see the module doc)."""
    cols = list(columns)
    return _encode(_columns(fills, cols), cols)


def _digest(rows: list[str]) -> str:
    # One update over the whole journal: each row followed by the record separator.
    body = "".join(row + _RECORD for row in rows)
    return hashlib.sha256(body.encode()).hexdigest()


def _text(values: np.ndarray) -> np.ndarray:
    """Strings as a NumPy unicode array, which sorts by code point as Python does."""
    return values.astype(str)


def _canonical_index(cols: Columns) -> np.ndarray:
    # np.lexsort is stable and sorts by its last key first: (profile, ts, fill_id).
    return np.lexsort((_text(cols["fill_id"]), cols["ts"].astype(np.int64), _text(cols["profile"])))


def canonical_order(fills: pd.DataFrame) -> pd.DataFrame:
    """``fills`` sorted by ``(profile, ts, fill_id)`` — the order the run hash uses."""
    return fills.sort_values(["profile", "ts", "fill_id"], kind="stable").reset_index(drop=True)


def _run_hash(cols: Columns) -> str:
    return _digest(_encode(_take(cols, _canonical_index(cols)), RUN_COLUMNS))


def run_fingerprint(fills: Journal) -> str:
    """sha256 hex over every fill (all columns but ``source``/``run_id``), order-independent.

    An empty journal has a fingerprint too (the hash of nothing), so "no fills" compares.
    """
    return _run_hash(_columns(fills, RUN_COLUMNS))


def _per_profile(cols: Columns) -> dict[str, str]:
    profiles = _text(cols["profile"])
    return {str(p): _run_hash(_take(cols, np.flatnonzero(profiles == p)))
            for p in sorted(set(profiles.tolist()))}


def profile_fingerprints(fills: Journal) -> dict[str, str]:
    """Run fingerprint per profile (a journal may hold several profiles)."""
    return _per_profile(_columns(fills, RUN_COLUMNS))


def _trade_index(cols: Columns) -> np.ndarray:
    """Rows in trade order: ``(profile, symbol, ts)``, and within one bar the entry leg last.

    Within one bar the engine exits before it enters (a reversal is exit then entry);
    fill_id alone would sort "entry" before "exit", so rank the entry leg last.
    """
    rank = (cols["reason"] == "entry").astype(np.int8)
    return np.lexsort((_text(cols["fill_id"]), rank, cols["ts"].astype(np.int64),
                       _text(cols["symbol"]), _text(cols["profile"])))


def _label_trades(order: Columns) -> list[str]:
    """Trade label of each row of columns already in :func:`_trade_index` order."""
    prof, sym, ts, pos = order["profile"], order["symbol"], order["ts"], order["position_after"]
    labels: list[str] = []
    key = None
    label = ""
    open_ = False
    for k in range(len(ts)):
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


_LABEL_COLUMNS = ("fill_id", "profile", "symbol", "ts", "reason", "position_after")


def trade_ids(fills: Journal) -> np.ndarray:
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
    cols = _columns(fills, _LABEL_COLUMNS)
    index = _trade_index(cols)
    out[index] = _label_trades(_take(cols, index))
    return out


def trade_fingerprints(fills: Journal) -> pd.DataFrame:
    """One row per trade: ``trade_id, profile, symbol, entry_ts, n_fills, closed, fingerprint``.

    ``closed`` is False for a trade still open at the end of the journal. Rows come in
    ``(profile, entry_ts, symbol)`` order.
    """
    import pandas as pd

    cols_out = ["trade_id", "profile", "symbol", "entry_ts", "n_fills", "closed", "fingerprint"]
    if not len(fills):
        return pd.DataFrame(columns=cols_out)
    cols = _columns(fills, TRADE_COLUMNS)
    order = _take(cols, _trade_index(cols))
    labels = _label_trades(order)
    encoded = _encode(order, TRADE_COLUMNS)
    pos, prof, sym, ts = order["position_after"], order["profile"], order["symbol"], order["ts"]
    rows: dict[str, dict[str, Any]] = {}
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
    out = pd.DataFrame(list(rows.values()), columns=cols_out)
    return out.sort_values(["profile", "entry_ts", "symbol"], kind="stable").reset_index(drop=True)


def _count_trades(cols: Columns) -> int:
    if not len(cols["ts"]):
        return 0
    return len(set(_label_trades(_take(cols, _trade_index(cols)))))


def count_trades(fills: Journal) -> int:
    """Number of trades (round trips, open ones included) in ``fills``."""
    return _count_trades(_columns(fills, _LABEL_COLUMNS))


def fingerprint_line(fills: Journal, label: str = "fingerprint",
                     run_hash: str | None = None) -> str:
    """The one line both drivers print, e.g.
    ``fingerprint run=3fa9c0d1e2b4 fills=812 trades=401 crypto_rating_all=3fa9c0d1e2b4``
    (one hash per profile only when the journal holds several). ``run_hash``: the
    :func:`run_fingerprint` of ``fills`` when the caller has it already."""
    cols = _columns(fills, RUN_COLUMNS)
    run_hash = run_hash or _run_hash(cols)
    per_profile = _per_profile(cols) if len(set(cols["profile"].tolist())) > 1 else {}
    extra = "".join(f" {p}={h[:SHORT]}" for p, h in per_profile.items())
    return (
        f"{label} run={run_hash[:SHORT]} fills={len(cols['ts'])} "
        f"trades={_count_trades(cols)}{extra}"
    )
