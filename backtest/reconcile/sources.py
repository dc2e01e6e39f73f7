"""Reading what reconcile compares: fills journals, daemon databases, run metadata.

The daemon's SQLite database is read with :mod:`sqlite3` against its documented tables
(``meta``, ``fills``, ``candles``, ``slices``, ``late``; see ``daemon/state.py``) rather than
through the daemon's code, because ``backtest`` must not import ``daemon`` (DESIGN.md).
The table layout is therefore part of the contract between the two drivers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tandem.core import journal
from tandem.core.store import _Source, normalize_candles

SQLITE_MAGIC = b"SQLite format 3\x00"
#: Sidecar files next to a backtest's fills that may carry the profile (first found wins).
SIDECAR_NAMES = ("run.json", "stats.json", "meta.json", "manifest.json", "profile.json")


class ReconcileInputError(ValueError):
    """An input file is missing or is not a fills journal / daemon database."""


@dataclass(frozen=True)
class ProfileInfo:
    """What one side knows about a profile's configuration."""

    name: str
    hash: str | None = None
    json: dict[str, Any] | None = None
    origin: str = ""


@dataclass
class Side:
    """One side of the comparison: its fills plus whatever metadata came with them."""

    label: str  # "paper" or "backtest"
    fills: pd.DataFrame
    profiles: dict[str, ProfileInfo] = field(default_factory=dict)
    dbs: list[Path] = field(default_factory=list)  # daemon databases among the inputs
    paths: list[Path] = field(default_factory=list)


def is_sqlite(path: str | Path) -> bool:
    """True when ``path`` is an SQLite database (by its magic header, not its suffix)."""
    p = Path(path)
    if not p.is_file():
        return False
    with p.open("rb") as fh:
        return fh.read(16) == SQLITE_MAGIC


def connect_ro(path: str | Path) -> sqlite3.Connection:
    """Open a daemon database for reading without ever writing to it."""
    p = Path(path).resolve()
    try:
        conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        # A WAL database whose -shm file is missing cannot be opened read-only; a normal
        # connection only creates the shm/wal side files, it changes no table.
        return sqlite3.connect(str(p))


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def read_db_fills(path: str | Path) -> pd.DataFrame:
    """The fills journal kept in a daemon database, in commit order, journal dtypes."""
    with _closing(connect_ro(path)) as conn:
        if "fills" not in _tables(conn):
            raise ReconcileInputError(f"{path}: SQLite file without a 'fills' table")
        cols = ", ".join(journal.FILL_COLUMNS)
        order = "seq" if "seq" in _columns(conn, "fills") else "rowid"
        df = pd.read_sql_query(f"SELECT {cols} FROM fills ORDER BY {order}", conn)
    return conform(df)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def read_db_meta(path: str | Path) -> dict[str, str]:
    """The daemon database's ``meta`` table as a dict (empty when absent)."""
    with _closing(connect_ro(path)) as conn:
        if "meta" not in _tables(conn):
            return {}
        return {k: v for k, v in conn.execute("SELECT key, value FROM meta")}


def db_profile(path: str | Path) -> ProfileInfo | None:
    """The profile a daemon database was bound to (name, hash, canonical JSON)."""
    meta = read_db_meta(path)
    if "profile" not in meta:
        return None
    text = meta.get("profile_json")
    return ProfileInfo(
        name=meta["profile"],
        hash=meta.get("profile_hash"),
        json=json.loads(text) if text else None,
        origin=str(path),
    )


def warmup_journal_gap(path: str | Path) -> dict[str, int | None] | None:
    """Whether a daemon database's journal lacks some of its warm-up candles: None when
    complete, else ``{"missing_candles": n, "warmup_candles": m}`` (None where unknown).

    The daemon commits its warm-up state at ``t0`` and journals the warm-up's candle rows
    afterwards (``daemon/warmstart.py``); stopped or killed before the last of them, its
    meta keeps ``warmup_journal = pending`` for good. A database without that key predates
    the rule and journaled its warm-up slice by slice: complete. The same rule as
    ``StateStore.warmup_journal_gap`` on the daemon side (backtest must not import daemon).
    """
    with _closing(connect_ro(path)) as conn:
        tables = _tables(conn)
        if "meta" not in tables:
            return None
        meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                                 "('warmup_journal', 'warmup_candles', 'warmup_to')"))
        if meta.get("warmup_journal") != "pending":
            return None
        try:
            total, t0 = int(meta["warmup_candles"]), int(meta["warmup_to"])
        except (KeyError, TypeError, ValueError):
            return {"missing_candles": None, "warmup_candles": None}
        # A warm-up slice's row and its candles go in one transaction: the slices' asset
        # counts before t0 are the journaled warm-up candles (thousands of rows, not millions).
        journaled = conn.execute(
            "SELECT COALESCE(SUM(n_assets), 0) FROM slices WHERE ts < ?", (t0,),
        ).fetchone()[0] if "slices" in tables else 0
    missing = max(0, total - int(journaled))
    # every row written, only the closing "done" lost to the stop: complete
    return {"missing_candles": missing, "warmup_candles": total} if missing else None


def warmup_gap_text(path: str | Path, gap: dict[str, int | None]) -> str:
    """``<db>: its warm-up journal is incomplete (n of m warm-up candles not journaled:
    ...)`` — for a refusal or a report caveat."""
    n, m = gap.get("missing_candles"), gap.get("warmup_candles")
    count = f"{n:,} of {m:,} warm-up candles" if n is not None and m is not None else "warm-up candles"
    return (f"{path}: its warm-up journal is incomplete ({count} not journaled: the daemon "
            "was stopped while journaling its warm-up, or still is)")


def read_db_candles(path: str | Path, table: str = "candles") -> pd.DataFrame:
    """Candles the daemon consumed (``candles``) or received too late (``late``).

    Columns ``symbol, ts, open, high, low, close, volume, origin, received_at``; ``ts`` is
    the bar open time. Empty (with those columns) when the table does not exist.
    """
    with _closing(connect_ro(path)) as conn:
        if table not in _tables(conn):
            return empty_candles()
        have = _columns(conn, table)
        sel = ", ".join(c if c in have else f"NULL AS {c}" for c in CANDLE_COLUMNS)
        df = pd.read_sql_query(f"SELECT {sel} FROM {table} ORDER BY symbol, ts", conn)
    return df.astype({k: v for k, v in _CANDLE_DTYPES.items()})


CANDLE_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "origin", "received_at"]
_CANDLE_DTYPES = {
    "ts": "int64", "open": "float64", "high": "float64", "low": "float64", "close": "float64",
    "volume": "float64", "received_at": "float64",
}


def empty_candles() -> pd.DataFrame:
    """A zero-row frame shaped like :func:`read_db_candles`' result."""
    return pd.DataFrame({c: pd.Series(dtype=_CANDLE_DTYPES.get(c, object)) for c in CANDLE_COLUMNS})


def read_db_slices(path: str | Path) -> pd.DataFrame:
    """Stepped slices: ``ts`` (bar open), ``missing`` (list of symbols), ``warmup`` (bool)."""
    with _closing(connect_ro(path)) as conn:
        if "slices" not in _tables(conn):
            return pd.DataFrame({"ts": pd.Series(dtype="int64"), "missing": [], "warmup": []})
        df = pd.read_sql_query("SELECT ts, missing, warmup FROM slices ORDER BY ts", conn)
    df["missing"] = [json.loads(m) if m else [] for m in df["missing"]]
    df["warmup"] = df["warmup"].astype(bool)
    return df.astype({"ts": "int64"})


class _closing:
    """``with _closing(conn)``: sqlite3's own context manager commits but never closes."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Journal columns in order with the journal's dtypes; empty strings for NULL text."""
    missing = [c for c in journal.FILL_COLUMNS if c not in df.columns]
    if missing:
        raise ReconcileInputError(f"fills lack columns {missing}")
    df = df[journal.FILL_COLUMNS].copy()
    empty = np.flatnonzero(df["ts"].isna().to_numpy())
    if len(empty):  # a blank or trailing ',,,' line: pandas' error named no column or row
        raise ValueError(f"fill row {empty[0] + 1}: ts is empty")
    df["ts"] = df["ts"].astype("int64")
    for col in ("qty", "price", "fee", "position_after", "cash_after"):
        df[col] = df[col].astype("float64")
    for col in ("fill_id", "source", "run_id", "profile", "symbol", "side", "reason", "intrabar"):
        df[col] = df[col].astype(object).where(df[col].notna(), "").astype(str).astype(object)
    return df.reset_index(drop=True)


def read_fills(path: str | Path) -> pd.DataFrame:
    """A fills journal from CSV, Parquet or a daemon database (detected by content)."""
    p = Path(path)
    if not p.exists():
        raise ReconcileInputError(f"{p} does not exist")
    if p.is_dir():
        found = [p / n for n in ("fills.parquet", "fills.csv") if (p / n).is_file()]
        if not found:
            raise ReconcileInputError(f"{p} is a folder without fills.parquet or fills.csv")
        fills = read_fills(found[0])
        # The twins are written together: when they differ one was edited or a write was cut
        # short, and reading the Parquet alone silently ignored an edited CSV.
        if len(found) == 2 and not fills.equals(read_fills(found[1])):
            raise ReconcileInputError(f"{p}: its fills.parquet and fills.csv differ; pass the "
                                      "one you mean (the file, not the folder)")
        return fills
    if is_sqlite(p):
        try:
            return check_values(read_db_fills(p), p)
        except sqlite3.Error as exc:  # corrupt, truncated: was a sqlite3 traceback
            raise ReconcileInputError(f"{p}: not a readable SQLite database ({exc})") from None
    with p.open("rb") as fh:
        magic = fh.read(4)
    try:
        if magic == b"PAR1":
            return check_values(conform(journal.read_parquet(p)), p)
        return check_values(conform(journal.read_csv(p)), p)
    except ReconcileInputError:
        raise
    except Exception as exc:  # pyarrow raises many types for a file of the wrong kind
        raise ReconcileInputError(f"{p}: not a fills journal ({exc})") from exc


_MS_LO, _MS_HI = 315_532_800_000, 7_258_118_400_000  # 1980 .. 2200 in ms (core.candles)


def check_values(fills: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``fills`` unchanged, or :class:`ReconcileInputError` naming the first row whose ``ts``
    is an epoch in seconds/µs/ns (a journal in seconds matched nothing and every fill was
    blamed on logic; µs/ns ended in a traceback) or whose ``qty`` is not > 0 (a traceback
    in the trade split). NaN values stay: they are differences, classed logic."""
    from tandem.core.candles import epoch_unit

    ts = fills["ts"].to_numpy(np.int64)
    for i in np.flatnonzero((ts < _MS_LO) | (ts >= _MS_HI)):
        unit = epoch_unit(int(ts[i]))
        if unit is not None:
            raise ReconcileInputError(
                f"{path}: fill row {i + 1}: ts {ts[i]} is an epoch in {unit}, not in "
                "milliseconds as a fills journal's ts is")
    bad = np.flatnonzero(fills["qty"].to_numpy(np.float64) <= 0)
    if len(bad):
        i = int(bad[0])
        raise ReconcileInputError(f"{path}: fill row {i + 1}: qty {fills['qty'].iat[i]} is not > 0 "
                                  "(a fill's qty is its size; its side says buy or sell)")
    return fills


def sidecar_profiles(fills_path: str | Path) -> dict[str, ProfileInfo]:
    """Profile hash/JSON from a JSON file next to a backtest's fills, when there is one.

    Understood shapes: ``{"profile": name, "profile_hash": h, "profile_json": {...}|str}``,
    ``{"profiles": {name: {"hash"|"profile_hash": h, "json"|"profile"|"profile_json": ...}}}``
    or a manifest (``{"profiles": {name: <profile>}}``, hashed with the manifest's rule).
    """
    p = Path(fills_path)
    folder = p if p.is_dir() else p.parent
    for name in SIDECAR_NAMES:
        f = folder / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            found = _profiles_from_json(data, str(f))
            if found:
                return found
    return {}


def sidecar_data_path(fills_path: str | Path) -> Path | None:
    """The candle source a backtest read, from the ``data`` key of its ``stats.json``
    (``tandem-backtest run`` writes it), when that is an existing path."""
    p = Path(fills_path)
    stats = (p if p.is_dir() else p.parent) / "stats.json"
    try:
        data = json.loads(stats.read_text()).get("data")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    if isinstance(data, str) and data and Path(data).exists():
        return Path(data)
    return None


def _as_obj(v: Any) -> dict[str, Any] | None:
    if isinstance(v, dict):
        return v
    if isinstance(v, str):
        try:
            obj = json.loads(v)
        except json.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None
    return None


def _profiles_from_json(data: Any, origin: str) -> dict[str, ProfileInfo]:
    if not isinstance(data, dict):
        return {}
    if isinstance(data.get("profile"), str) and ("profile_hash" in data or "profile_json" in data):
        name = data["profile"]
        return {name: ProfileInfo(name, data.get("profile_hash"), _as_obj(data.get("profile_json")), origin)}
    profs = data.get("profiles")
    if not isinstance(profs, dict):
        return {}
    out: dict[str, ProfileInfo] = {}
    for name, v in profs.items():
        if not isinstance(v, dict):
            continue
        h = v.get("hash") or v.get("profile_hash")
        j = _as_obj(v.get("json") or v.get("profile_json"))
        if h is None and j is None and "strategy" in v:
            # A manifest: hash the profile the way the manifest does.
            return manifest_profiles(data, origin)
        out[name] = ProfileInfo(name, h, j, origin)
    return out


def manifest_profiles(manifest: str | Path | dict[str, Any], origin: str = "") -> dict[str, ProfileInfo]:
    """Every profile of a manifest with its canonical JSON and hash (tandem.core.manifest rules)."""
    from tandem.core.manifest import load_manifest, parse_manifest

    if isinstance(manifest, dict):
        m = parse_manifest(manifest, origin or "manifest")
    else:
        m = load_manifest(manifest)
        origin = origin or str(manifest)
    out = {}
    for name in m.profiles:
        prof = m.profile(name)
        out[name] = ProfileInfo(name, prof.profile_hash(), json.loads(prof.canonical_json()), origin)
    return out


def first_time_reversal(fills: pd.DataFrame) -> tuple[int, str] | None:
    """``(row, profile)`` of the first fill earlier than the fill before it of its profile.

    Drift takes a bar's last fill (journal order) for its cash and position, and needs each
    profile's fills in time order: out of order, it failed ("index must be monotonic") or,
    reversed, drifted on identical fills (a wrong verdict under --equity-tolerance).
    """
    for profile, ts in fills.groupby("profile", sort=False)["ts"]:
        back = np.flatnonzero(np.diff(ts.to_numpy(np.int64)) < 0)
        if len(back):
            return int(ts.index[back[0] + 1]), str(profile)
    return None


def check_time_order(fills: pd.DataFrame, where: str) -> None:
    """:class:`ReconcileInputError` naming the first row that goes back in time."""
    hit = first_time_reversal(fills)
    if hit is not None:
        i, profile = hit
        raise ReconcileInputError(
            f"{where}: fill row {i + 1} (ts {fills['ts'].iat[i]}) is earlier than the row before "
            f"it of profile {profile!r}; a fills journal is in time order (sort it by ts, "
            "keeping the order within a bar, or export it again)")


def load_side(
    label: str, paths: Sequence[str | Path], profiles: dict[str, ProfileInfo] | None = None
) -> Side:
    """Read and concatenate one side's journals; gather profile metadata (explicit wins)."""
    frames, infos, dbs = [], {}, []
    for raw in paths:
        p = Path(raw)
        frames.append(read_fills(p))
        check_time_order(frames[-1], str(p))
        if is_sqlite(p):
            dbs.append(p)
            info = db_profile(p)
            if info is not None:
                infos[info.name] = info
        else:
            for name, info in sidecar_profiles(p).items():
                infos.setdefault(name, info)
    infos.update(profiles or {})
    fills = pd.concat(frames, ignore_index=True) if frames else conform(journal.empty_fills_frame())
    if first_time_reversal(fills) is not None:  # each file is in order: the files are not
        raise ReconcileInputError(f"{label} inputs {', '.join(map(str, paths))}: one profile's "
                                  "fills go back in time from one file to the next (the same "
                                  "fills twice?); give each journal once, oldest first")
    return Side(label, conform(fills), infos, dbs, [Path(p) for p in paths])


# ------------------------------------------------------------------------------------------
# The candles a daemon consumed, as a candle source (``tandem-backtest run --candles-from``)


class DaemonCandleSource(_Source):
    """Read-only candle source over the candles one or more daemon databases consumed.

    Gives a backtest exactly the bars the daemon stepped (same values, same gaps), so a
    remaining difference between the two runs cannot be a data difference. Late candles
    (the ``late`` table) are *not* included: the daemon never stepped them.
    """

    def __init__(self, paths: str | Path | Iterable[str | Path], timeframe: str | None = None):
        paths = [paths] if isinstance(paths, str | Path) else list(paths)
        frames = []
        for p in paths:
            if not is_sqlite(p):
                raise ReconcileInputError(f"{p} is not a daemon database (SQLite)")
            gap = warmup_journal_gap(p)
            if gap is not None:
                # Its journal holds fewer warm-up bars than the daemon warmed up on: a
                # backtest of it would start from another state and differ, silently.
                raise ReconcileInputError(
                    f"{warmup_gap_text(p, gap)}, so a backtest of its candles would warm up "
                    "on fewer bars than the daemon did; backtest the candle store the daemon "
                    "warmed up from instead (--data)")
            frames.append(read_db_candles(p))
            if timeframe is None:
                info = db_profile(p)
                if info is not None and info.json:
                    timeframe = info.json.get("base_timeframe")
        self.paths = [Path(p) for p in paths]
        self.default_timeframe = timeframe or infer_timeframe(frames)
        allc = pd.concat(frames, ignore_index=True) if frames else empty_candles()
        # Several databases (one per profile) consumed the same market: the first db wins
        # for a (symbol, ts) seen twice, as in the candle store.
        allc = allc.drop_duplicates(["symbol", "ts"], keep="first")
        self._frames = {
            str(sym): normalize_candles(g.sort_values("ts")).reset_index(drop=True)
            for sym, g in allc.groupby("symbol", sort=True)
        }

    def symbols(self, timeframe: str | None = None) -> list[str]:
        return sorted(self._frames) if self._tf(timeframe) == self.default_timeframe else []

    def _read_all(self, symbol: str, timeframe: str) -> pd.DataFrame:
        if timeframe != self.default_timeframe or symbol not in self._frames:
            raise self._missing(symbol, timeframe, f"daemon db {', '.join(map(str, self.paths))}")
        return self._frames[symbol]


def infer_timeframe(frames: Sequence[pd.DataFrame]) -> str | None:
    """The base timeframe from candle open times: the smallest step between two bars."""
    steps = []
    for f in frames:
        for _, g in f.groupby("symbol"):
            d = np.diff(np.sort(g["ts"].to_numpy(np.int64)))
            d = d[d > 0]
            if len(d):
                steps.append(int(d.min()))
    if not steps:
        return None
    ms = min(steps)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return None
