"""The daemon's durable state in SQLite (stdlib ``sqlite3``, WAL journal).

Everything the daemon needs to resume lives in one file:

* ``meta``      — profile name, canonical profile JSON and its hash, the session id, the first
                  tradable bar ``t0``, the last processed slice ``last_ts``;
* ``blobs``     — opaque state blobs (engine state, MTF/rating state) from the core's
                  ``to_bytes``;
* ``positions`` — position per symbol (a readable mirror of the blob): every open position
                  is rewritten by every live slice (``ts`` = that slice); a flat one only
                  when it changes (writing 200 unchanged zero rows per slice cost ~0.8 ms);
* ``fills``     — the fills journal, same columns as the backtest's ``fills.csv``; a fill
                  id is unique through an index keyed ``(ts, fill_id)`` (the id holds its
                  ``ts``: the same rule), so a slice's fills append at the index's end; keyed
                  by the id alone (``profile:symbol:...``) each fill dirtied its own page
                  (COMMIT 0.30 -> 0.62 ms at 46 fills a slice and 69k in the journal; files
                  made before keep that index and work as before);
* ``candles``   — every closed candle the engine consumed, with where it came from (keyed
                  ``(ts, symbol)`` WITHOUT ROWID: a slice appends at the end of one b-tree
                  instead of touching a page per asset — a smaller WAL and a faster commit);
* ``slices``    — one row per stepped slice (which assets were missing, warm-up or not);
* ``late``      — candles that arrived after their slice had been stepped (not consumed).

A slice is committed in ONE transaction (:meth:`StateStore.commit_slice`), so a crash
leaves either all of it or none of it; ``last_ts`` moves in that same transaction.

Durability: WAL with ``synchronous=NORMAL`` — a committed slice survives any *process* crash
(SIGKILL included: the WAL is written before COMMIT returns, only its fsync is deferred);
an OS crash or power loss may drop the newest commits, never half of one (``FULL`` adds an
fsync per commit). SQLite's automatic WAL checkpoint is switched off: it runs inside the
COMMIT that crosses 1000 WAL pages and fsyncs twice (tens of ms on the slice's
close-to-commit path). The daemon calls :meth:`StateStore.checkpoint_wal` itself, right
after a slice's commit, when the next bar is a whole bar period away.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import operator
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tandem.core.quoting import quote

if TYPE_CHECKING:  # pandas (+ pyarrow, ~75 MB resident) only for the readers: imported there
    import pandas as pd
    import pyarrow as pa

# The journal columns, in DESIGN.md order ("The fills journal").
JOURNAL_COLUMNS: tuple[str, ...] = (
    "fill_id", "source", "run_id", "profile", "symbol", "ts", "side", "qty", "price", "fee",
    "reason", "intrabar", "position_after", "cash_after",
)
_JOURNAL_SQL_TYPES = {
    "ts": "INTEGER NOT NULL", "qty": "REAL NOT NULL", "price": "REAL NOT NULL",
    "fee": "REAL NOT NULL", "position_after": "REAL NOT NULL", "cash_after": "REAL NOT NULL",
}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT PRIMARY KEY, qty REAL NOT NULL, ts INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS fills (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {_JOURNAL_SQL_TYPES.get(c, 'TEXT NOT NULL')}" for c in JOURNAL_COLUMNS)},
    UNIQUE (ts, fill_id));
CREATE TABLE IF NOT EXISTS candles (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, open REAL, high REAL, low REAL, close REAL,
    volume REAL, origin TEXT NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (ts, symbol))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slices (
    ts INTEGER PRIMARY KEY, n_assets INTEGER NOT NULL, missing TEXT NOT NULL,
    warmup INTEGER NOT NULL, n_fills INTEGER NOT NULL, committed_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS late (
    symbol TEXT NOT NULL, ts INTEGER NOT NULL, open REAL, high REAL, low REAL, close REAL,
    volume REAL, origin TEXT NOT NULL, received_at REAL NOT NULL, PRIMARY KEY (symbol, ts));
"""


#: the tables of a state database (sqlite_sequence: SQLite's, for AUTOINCREMENT)
_OWN_TABLES = frozenset({"meta", "blobs", "positions", "fills", "candles", "slices", "late",
                         "sqlite_sequence"})

#: candles per INSERT statement of a slice commit (9 bound values each: 4,500, under
#: SQLite's 32,766 since 3.32 and over the 999 of older builds, see StateStore._open)
CANDLES_PER_INSERT = 500


@functools.lru_cache(maxsize=8)
def _insert_candles_sql(n: int) -> str:
    """One INSERT of ``n`` candle rows (multi-row VALUES; cached: a slice's size rarely
    changes)."""
    return "INSERT INTO candles VALUES " + ",".join(["(?,?,?,?,?,?,?,?,?)"] * n)


_INSERT_FILL = (f"INSERT INTO fills ({', '.join(JOURNAL_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(JOURNAL_COLUMNS))})")
#: a journal row's values in :data:`JOURNAL_COLUMNS` order (one C call, not a generator
#: per fill: ~2 us a fill on the close-to-commit path)
_fill_values = operator.itemgetter(*JOURNAL_COLUMNS)


class StateDbError(Exception):
    """The state database cannot be opened. ``usage`` is True for a path problem (a folder,
    a place that cannot be created or written: configuration) and False for a file that is
    there but is not a usable SQLite database (corrupt, another format: data)."""

    def __init__(self, message: str, *, usage: bool):
        super().__init__(message)
        self.usage = usage


def _open_error(path: Path, exc: sqlite3.Error) -> StateDbError:
    """Which side of the policy a failed open is on (see :class:`StateDbError`)."""
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and any(
            w in text for w in ("unable to open", "readonly", "read-only", "permission")):
        # cannot open or write there: where, not what
        return StateDbError(f"state database {path}: cannot open it ({exc})", usage=True)
    # SQLITE_NOTADB / SQLITE_CORRUPT, or another program's tables: the file's content.
    return StateDbError(f"state database {path} is not a usable Tandem/SQLite database "
                        f"({exc}); move it away or pass another --db", usage=False)


class ProfileChangedError(RuntimeError):
    """The stored profile's hash differs from the one asked for; resume refused."""


def profile_hash(profile: Mapping[str, Any] | str) -> str:
    """SHA-256 of the profile's canonical JSON (sorted keys, no whitespace)."""
    text = profile if isinstance(profile, str) else canonical_json(profile)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, compact separators — stable across runs and machines."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


class _CandleFields(NamedTuple):
    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    origin: str
    received_at: float


class ClosedCandle(_CandleFields):
    """One closed candle as the engine consumes it (``ts`` = bar open time, ms); ``origin``:
    "ws" (closing kline frame), "rest" (backfill / warm-up / catch-up) or "store";
    ``received_at``: ``time.time()`` when made, unless given.

    An immutable named tuple: one is made per closing frame on the close-to-commit path,
    where a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) was ~1/8 of
    a closing frame's handling."""

    __slots__ = ()

    def __new__(cls, symbol: str, ts: int, open: float, high: float, low: float,  # noqa: A002
                close: float, volume: float, origin: str = "ws",
                received_at: float | None = None) -> ClosedCandle:
        return tuple.__new__(cls, (symbol, ts, open, high, low, close, volume, origin,
                                   time.time() if received_at is None else received_at))


class StateStore:
    """SQLite-backed daemon state. Not thread-safe: use it from the event-loop thread."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL"):
        self.path = Path(path)
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError("synchronous must be NORMAL or FULL")
        try:
            self._open(synchronous.upper())
        except (sqlite3.Error, StateDbError) as exc:
            conn = getattr(self, "conn", None)  # set once connect() succeeded
            if conn is not None:
                conn.close()
            if isinstance(exc, StateDbError):
                raise
            raise _open_error(self.path, exc) from None

    def _open(self, synchronous: str) -> None:
        if self.path.is_dir():
            raise StateDbError(f"state database {self.path} is a folder; give a file path "
                               "(--db or TANDEM_STATE_DB)", usage=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((p for p in self.path.parents if p.exists()), None)
            why = (f"{blocker} is a file" if blocker is not None and not blocker.is_dir()
                   else exc.strerror or str(exc))
            raise StateDbError(f"state database {self.path}: cannot create its folder "
                               f"({why})", usage=True) from None
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per slice.
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        self._refuse_foreign()
        self.conn.execute("PRAGMA journal_mode=WAL")
        # WAL + synchronous=NORMAL: a commit is atomic and survives any process crash
        # (SIGKILL included); only an OS crash/power loss may drop the newest commits (never
        # half of one). FULL adds an fsync per slice for power-loss durability too.
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        # Checkpoints are ours (checkpoint_wal), off the close-to-commit path (module doc).
        self.conn.execute("PRAGMA wal_autocheckpoint=0")
        self.conn.executescript(_SCHEMA)
        self._candles_per_insert = min(
            CANDLES_PER_INSERT, self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 9)
        self._last_ts: int | None = self.last_ts  # cached: the commit guard reads it per slice
        # Quantity last written per symbol (positions table), so a slice rewrites only the
        # open positions and the ones that changed.
        self._pos_written: dict[str, float] = self.positions()
        self._commits_since_ckpt = 0

    def _refuse_foreign(self) -> None:
        """Another program's SQLite file (a typo in --db, a wrong TANDEM_STATE_DB) is
        refused BEFORE anything is written: the schema below would add our tables to it and
        switch it to WAL for good — even ``status``, a read, did that and printed an empty
        summary, exit 0. Only our own tables (some may be missing: a crash during the first
        creation) make a file ours."""
        names = {r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        # sqlite_*: SQLite's own (sqlite_stat1 after an ANALYZE or PRAGMA optimize)
        foreign = sorted(n for n in names - _OWN_TABLES if not n.startswith("sqlite_"))
        if foreign:
            self.conn.close()
            shown = ", ".join(quote(n) for n in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise StateDbError(f"state database {self.path} is not a usable Tandem/SQLite "
                               f"database (it holds another program's tables: {shown}); "
                               "move it away or pass another --db", usage=False)

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        # The last connection to close checkpoints the WAL and removes it (SQLite default).
        self.conn.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bind_profile(
        self, name: str, profile: Mapping[str, Any] | str, run_id: str, *, fresh: bool = False,
        kind: str = "live",
    ) -> bool:
        """Attach this database to a profile. Returns True when resuming existing state.

        A database created for another profile, for this profile with different contents
        (hash changed), or by the other kind of run (``kind``: "live" or "replay": a live
        run must not continue a replay's played fills, nor a replay a live journal),
        refuses to resume unless ``fresh``; ``fresh`` wipes every table.
        """
        text = profile if isinstance(profile, str) else canonical_json(profile)
        digest = profile_hash(text)
        stored = self.get_meta("profile_hash")
        if stored is not None and not fresh:
            if stored != digest or self.get_meta("profile") != name:
                raise ProfileChangedError(
                    f"state in {self.path} belongs to profile {self.get_meta('profile')!r} "
                    f"(hash {stored[:12]}), not {name!r} (hash {digest[:12]}): "
                    "refusing to resume; start with --fresh to discard it"
                )
            made_by = self.get_meta("journal_kind")  # None: a journal from before this rule
            if made_by is not None and made_by != kind:
                raise ProfileChangedError(
                    f"state in {self.path} is a {made_by} journal (tandem-daemon "
                    f"{'replay' if made_by == 'replay' else 'run'}), not a {kind} one: "
                    "refusing to continue it; start with --fresh to discard it or pass another --db")
            # run_id is the current session's (status shows what runs now); the first
            # session's stays as first_run_id.
            with self.transaction():
                meta = {"run_id": run_id, "run_started_at": repr(time.time())}
                if self.get_meta("first_run_id") is None:
                    meta["first_run_id"] = self.get_meta("run_id")
                self._set_meta_many(meta)
            return True
        self._wipe()
        now = repr(time.time())
        with self.transaction():
            self._set_meta_many(
                {"profile": name, "profile_json": text, "profile_hash": digest,
                 "run_id": run_id, "first_run_id": run_id, "created_at": now,
                 "run_started_at": now, "journal_kind": kind}
            )
        return False

    def _wipe(self) -> None:
        with self.transaction():
            for table in ("meta", "blobs", "positions", "fills", "candles", "slices", "late"):
                self.conn.execute(f"DELETE FROM {table}")
        self._last_ts = None
        self._pos_written = {}

    # ---- transactions ------------------------------------------------------------------
    def transaction(self) -> _Tx:
        return _Tx(self.conn)

    # ---- meta --------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _meta_number(self, key: str, kind: type) -> Any:
        """A numeric meta value (None when absent). A hand-edited or corrupt value is one
        line naming the key, as for a journal row, not a ValueError traceback."""
        value = self.get_meta(key)
        if value is None:
            return None
        try:
            number = kind(value)
            _iso(number / 1000 if kind is int else number)  # a time a date can hold
            return number
        except (ValueError, OverflowError, OSError):
            raise StateDbError(
                f"state database {self.path}: meta {key} is {quote(value)}, not "
                f"{'a time in ms' if kind is int else 'a time'} (a corrupt or hand-edited file); "
                "move it away or pass another --db", usage=False) from None

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self._set_meta_many({key: value})

    def _set_meta_many(self, items: Mapping[str, Any]) -> None:
        self.conn.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [(k, None if v is None else str(v)) for k, v in items.items()],
        )

    @property
    def last_ts(self) -> int | None:
        """Open time of the last committed slice, or None before the first one."""
        return self._meta_number("last_ts", int)

    @property
    def t0(self) -> int | None:
        """Open time of the first tradable bar (everything before it is warm-up)."""
        return self._meta_number("t0", int)

    # ---- blobs -------------------------------------------------------------------------
    def load_blobs(self) -> dict[str, bytes]:
        return {name: bytes(data) for name, data in self.conn.execute("SELECT name, data FROM blobs")}

    # ---- the slice commit --------------------------------------------------------------
    def commit_slice(
        self,
        ts: int,
        candles: Sequence[ClosedCandle],
        missing: Sequence[str],
        fills: Sequence[Mapping[str, Any]],
        positions: Mapping[str, float],
        *,
        warmup: bool,
        extra_meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Persist one stepped slice atomically: its candles, fills, positions, ``last_ts``.

        The strategy state is a deterministic function of the consumed candles, so it is not
        rewritten per slice (hundreds of KB): :meth:`write_checkpoint` stores it now and
        then, and a restart re-steps the slices committed after the checkpoint.
        """
        now = time.time()
        last = self._last_ts
        if last is not None and ts <= last:
            # The assembler guarantees order; this guards the database against a logic slip.
            raise ValueError(f"slice {ts} is not after the last committed slice {last}")
        written = self._pos_written
        pos_rows = []
        if fills or not warmup:
            pos_rows = [(s, float(q), ts) for s, q in positions.items()
                        if q != 0.0 or written.get(s) != q]
        # One statement per table; sqlite3 caches the prepared statements by their text.
        with self.transaction():
            c = self.conn
            # Multi-row INSERTs: executemany steps the statement once per row (500 candles:
            # 1.15 ms, the bulk of the commit, vs 0.64 ms). A ClosedCandle's fields are the
            # table's columns, in order: its values are bound as they are.
            per = self._candles_per_insert
            for i in range(0, len(candles), per):
                chunk = candles[i:i + per]
                c.execute(_insert_candles_sql(len(chunk)), tuple(itertools.chain.from_iterable(chunk)))
            if fills:
                c.executemany(_INSERT_FILL, map(_fill_values, fills))
            if pos_rows:
                c.executemany(
                    "INSERT INTO positions(symbol, qty, ts) VALUES (?, ?, ?) "
                    "ON CONFLICT(symbol) DO UPDATE SET qty = excluded.qty, ts = excluded.ts",
                    pos_rows,
                )
            c.execute(
                "INSERT INTO slices VALUES (?,?,?,?,?,?)",
                (ts, len(candles), json.dumps(list(missing)), int(warmup), len(fills), now),
            )
            self._set_meta_many({"last_ts": ts, **(extra_meta or {})})
        # Only once the transaction is in: a failed slice leaves the caches as they were.
        self._last_ts = ts
        for s, q, _ in pos_rows:
            written[s] = q
        self._commits_since_ckpt += 1

    def checkpoint_wal(self, every: int = 1) -> bool:
        """Copy the WAL back into the database file (``PASSIVE``: never waits for readers)
        once ``every`` slices were committed since the last time. Two fsyncs: call it after
        a commit, not before one. Returns True when it ran."""
        if self._commits_since_ckpt < every:
            return False
        self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self._commits_since_ckpt = 0
        return True

    def write_checkpoint(self, ts: int, blobs: Mapping[str, bytes]) -> None:
        """Store the strategy state as of the committed slice ``ts`` (one transaction)."""
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO blobs(name, data) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                list(blobs.items()),
            )
            self._set_meta_many({"checkpoint_ts": ts})

    def commit_warmup(self, last_ts: int, blobs: Mapping[str, bytes],
                      meta: Mapping[str, Any]) -> None:
        """The warm-up of a fresh start (tandem.daemon.warmstart), stepped in one batch: the
        strategy state as of ``last_ts`` (the bar before ``t0``) becomes the checkpoint and
        ``last_ts`` the last committed slice, atomically. Its journal rows follow
        (:meth:`journal_warmup`)."""
        last = self._last_ts
        if last is not None and last_ts <= last:
            raise ValueError(f"warm-up end {last_ts} is not after the last committed slice {last}")
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO blobs(name, data) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                list(blobs.items()),
            )
            self._set_meta_many({"last_ts": last_ts, "checkpoint_ts": last_ts,
                                 "warmup_journal": "pending", **meta})
        self._last_ts = last_ts

    def journal_warmup(self, slices: Sequence[tuple], candles: Iterable[tuple]) -> None:
        """Journal rows of warm-up slices stepped in a batch (one transaction): ``slices``
        rows and ``candles`` rows as :meth:`commit_slice` writes them."""
        with self.transaction():
            c = self.conn
            c.executemany("INSERT INTO candles VALUES (?,?,?,?,?,?,?,?,?)", candles)
            c.executemany("INSERT INTO slices VALUES (?,?,?,?,?,?)", slices)
        self._commits_since_ckpt += 1

    def warmup_journal_gap(self) -> dict[str, int | None] | None:
        """None when the warm-up's journal rows are all written, else
        ``{"missing_candles": n, "warmup_candles": m}`` (None where unknown): a stop or a
        kill before the last of them (:meth:`journal_warmup`) leaves ``warmup_journal =
        pending`` for good. A state without that meta predates the rule (its warm-up was
        journaled slice by slice): complete. Reconcile reads the same rule from the file
        (``tandem.backtest.reconcile.sources.warmup_journal_gap``)."""
        if self.get_meta("warmup_journal") != "pending":
            return None
        try:
            total, t0 = int(self.get_meta("warmup_candles")), int(self.get_meta("warmup_to"))
        except (TypeError, ValueError):
            return {"missing_candles": None, "warmup_candles": None}
        # a warm-up slice's row and its candles are written in one transaction
        journaled = self.conn.execute(
            "SELECT COALESCE(SUM(n_assets), 0) FROM slices WHERE ts < ?", (t0,)).fetchone()[0]
        missing = max(0, total - int(journaled))
        # every row written, only the closing "done" lost to the stop: complete
        return {"missing_candles": missing, "warmup_candles": total} if missing else None

    @property
    def checkpoint_ts(self) -> int | None:
        return self._meta_number("checkpoint_ts", int)

    def slices_after(self, ts: int | None) -> list[tuple[int, bool, list[ClosedCandle]]]:
        """Committed slices with ``ts`` after the given one, oldest first:
        ``(ts, warmup, candles)`` — what a restart re-steps after its checkpoint."""
        lo = -1 if ts is None else ts
        rows = self.conn.execute(
            "SELECT s.ts, s.warmup, c.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume, "
            "c.origin, c.received_at FROM slices s LEFT JOIN candles c ON c.ts = s.ts "
            "WHERE s.ts > ? ORDER BY s.ts", (lo,),
        ).fetchall()
        out: list[tuple[int, bool, list[ClosedCandle]]] = []
        for r in rows:
            if not out or out[-1][0] != r[0]:
                out.append((r[0], bool(r[1]), []))
            if r[2] is not None:
                out[-1][2].append(ClosedCandle(*r[2:]))
        return out

    def fills_of_slice(self, ts_close: int) -> list[dict[str, Any]]:
        """Journal rows whose ``ts`` (bar close) is ``ts_close``, in commit order."""
        cur = self.conn.execute(
            f"SELECT {', '.join(JOURNAL_COLUMNS)} FROM fills WHERE ts = ? ORDER BY seq",
            (ts_close,),
        )
        return [dict(zip(JOURNAL_COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def record_late(self, candle: ClosedCandle) -> None:
        """Keep a candle that arrived after its slice was stepped (for reconcile), once."""
        with self.transaction():
            self.conn.execute(
                "INSERT OR IGNORE INTO late VALUES (?,?,?,?,?,?,?,?,?)",
                (candle.symbol, candle.ts, candle.open, candle.high, candle.low, candle.close,
                 candle.volume, candle.origin, candle.received_at),
            )

    # ---- readers -----------------------------------------------------------------------
    def fills_frame(self) -> pd.DataFrame:
        """The fills journal in commit order, with the journal's columns and dtypes."""
        import pandas as pd

        df = pd.read_sql_query(
            f"SELECT {', '.join(JOURNAL_COLUMNS)} FROM fills ORDER BY seq", self.conn
        )
        return _journal_dtypes(df)

    def fills_table(self) -> pa.Table:
        """:meth:`fills_frame` as an Arrow table (the journal's schema), without pandas:
        what an export writes and a replay's summary reads."""
        from tandem.core.arrow_numpy import table_from_columns
        from tandem.core.journal import fills_schema

        rows = self.conn.execute(
            f"SELECT {', '.join(JOURNAL_COLUMNS)}, seq FROM fills ORDER BY seq").fetchall()
        columns = dict(zip((*JOURNAL_COLUMNS, "seq"), zip(*rows, strict=True) if rows else
                           [()] * (len(JOURNAL_COLUMNS) + 1), strict=True))
        for col in _TEXT_COLUMNS:  # NULL text reads as "" (as fills_frame has it)
            columns[col] = ["" if v is None else v for v in columns[col]]
        for col in _SQL_NUMERIC:  # NOT NULL REAL/INTEGER: anything else is a corrupt file
            kinds = (int,) if col == "ts" else (int, float)
            for seq, v in zip(columns["seq"], columns[col], strict=True):
                if type(v) not in kinds:
                    raise StateDbError(
                        f"state database {self.path}: journal row seq {seq}: {col} is "
                        f"{'NULL' if v is None else quote(v)}, not a number (a corrupt or "
                        f"hand-edited file); move it away or pass another --db", usage=False)
        return table_from_columns(columns, fills_schema())

    def candles_frame(self, symbol: str | None = None) -> pd.DataFrame:
        """Consumed closed candles (``ts`` = bar open time), ordered by symbol then ts."""
        q = "SELECT symbol, ts, open, high, low, close, volume, origin FROM candles"
        args: tuple = ()
        if symbol is not None:
            q += " WHERE symbol = ?"
            args = (symbol,)
        import pandas as pd

        return pd.read_sql_query(q + " ORDER BY symbol, ts", self.conn, params=args)

    def consumed(self, symbol: str, ts: int) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM candles WHERE symbol = ? AND ts = ?", (symbol, ts)
        ).fetchone()
        return row is not None

    def positions(self) -> dict[str, float]:
        return {s: q for s, q in self.conn.execute("SELECT symbol, qty FROM positions")}

    def slice_count(self, warmup: bool | None = None) -> int:
        """Slices in the journal: all, or only the warm-up (True) or tradable (False) ones."""
        if warmup is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM slices").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM slices WHERE warmup = ?",
                                     (int(warmup),)).fetchone()[0])

    def fill_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM fills").fetchone()[0])

    def status(self) -> dict[str, Any]:
        """A summary for ``tandem-daemon status``: times as ISO 8601 UTC (bar times ``t0``,
        ``last_ts``, ``checkpoint_ts``, ``warmup_from``, ``warmup_to`` are bar opens; their ms
        values as ``<key>_ms``),
        ``run_id`` the current (or last) session's, ``first_run_id`` the first one's."""
        meta: dict[str, Any] = dict(self.conn.execute("SELECT key, value FROM meta").fetchall())
        meta.pop("profile_json", None)
        # warmup_from/warmup_to (the warm-up's bar range) were printed as raw ms strings
        for key in ("t0", "last_ts", "checkpoint_ts", "warmup_from", "warmup_to"):
            if meta.get(key) is not None:
                ms = self._meta_number(key, int)
                meta[key], meta[f"{key}_ms"] = _iso(ms / 1000), ms
        if meta.get("warmup_candles") is not None:
            meta["warmup_candles"] = self._meta_number("warmup_candles", int)
        for key in ("created_at", "run_started_at"):
            if meta.get(key) is not None:
                meta[key] = _iso(self._meta_number(key, float))
        return {
            **meta,
            "slices": self.slice_count(),
            "fills": self.fill_count(),
            "candles": int(self.conn.execute("SELECT COUNT(*) FROM candles").fetchone()[0]),
            "late": int(self.conn.execute("SELECT COUNT(*) FROM late").fetchone()[0]),
            "positions": {s: q for s, q in self.positions().items() if q != 0.0},
        }


def _iso(epoch_s: float) -> str:
    """``2024-01-01T00:00:00Z`` (milliseconds shown only when there are any)."""
    dt = datetime.fromtimestamp(epoch_s, tz=UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


_SQL_NUMERIC = tuple(_JOURNAL_SQL_TYPES)
_TEXT_COLUMNS = ("fill_id", "source", "run_id", "profile", "symbol", "side", "reason", "intrabar")


def _journal_dtypes(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({"ts": "int64", "qty": "float64", "price": "float64", "fee": "float64",
                    "position_after": "float64", "cash_after": "float64"})
    for col in _TEXT_COLUMNS:
        df[col] = df[col].astype(object).where(df[col].notna(), "")
    return df


class _Tx:
    """``with store.transaction():`` — BEGIN IMMEDIATE … COMMIT, ROLLBACK on error."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR, ...): a
            # second ROLLBACK would fail and hide the error that matters.
            self.conn.execute("ROLLBACK")


def iter_fill_rows(df: pd.DataFrame) -> Iterable[dict[str, Any]]:
    """Journal rows of a DataFrame as dicts (helper for tests and export)."""
    return df[list(JOURNAL_COLUMNS)].to_dict("records")
