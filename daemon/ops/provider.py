"""``/positions`` and ``/fills`` read straight from the daemon's SQLite state file.

Its own **read-only** connection per request (``mode=ro`` URI), in a worker thread:

* it can only ever read: an HTTP bug cannot write the journal;
* under WAL a reader sees the last *committed* slice and never blocks the writer, so the
  endpoint can never observe half a slice nor delay the next commit;
* a slow query runs off the event loop that steps slices.

It depends on the state schema only (tables ``fills``, ``positions``, ``candles``, ``meta``
of :mod:`tandem.daemon.state`), not on the daemon's objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from tandem.daemon.state import JOURNAL_COLUMNS

__all__ = ["SqliteStateProvider"]


class SqliteStateProvider:
    """Reads positions and fills from a daemon state database (read-only, per call)."""

    def __init__(self, db_path: str | Path, timeout_s: float = 5.0):
        self.db_path = Path(db_path)
        self.timeout_s = timeout_s

    def _connect(self) -> sqlite3.Connection:
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=self.timeout_s)
        conn.row_factory = sqlite3.Row
        return conn

    # --- sync readers (run in a thread by the async faces below) ---------------------------
    def positions_sync(self) -> list[dict[str, Any]]:
        """Non-zero positions, each marked at the last close the engine consumed."""
        if not self.db_path.exists():
            return []
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(
                """
                SELECT p.symbol, p.qty, p.ts,
                       (SELECT c.close FROM candles c WHERE c.symbol = p.symbol
                        ORDER BY c.ts DESC LIMIT 1) AS mark_price
                FROM positions p WHERE p.qty != 0 ORDER BY p.symbol
                """
            ).fetchall()
        out = []
        for r in rows:
            mark = r["mark_price"]
            out.append({
                "symbol": r["symbol"],
                "qty": r["qty"],
                "as_of_ts": r["ts"],
                "mark_price": mark,
                "value": None if mark is None else r["qty"] * mark,
            })
        return out

    def fills_sync(self, since: int | None, limit: int,
                   since_id: int | None = None) -> list[dict[str, Any]]:
        """Journal rows in commit order (oldest first), each with its ``seq`` (the journal's
        unique, increasing sequence number): ``ts > since`` and ``seq > since_id`` where
        given, at most ``limit`` — except that a page selected by ``since`` alone never ends
        inside one bar's fills (it is extended to the bar's last fill), so that a client
        following ``next_since`` (``ts > cursor``) loses none. With ``since_id`` the page
        is exactly ``limit`` rows long (the cursor is unique)."""
        if not self.db_path.exists():
            return []
        cols = "seq, " + ", ".join(JOURNAL_COLUMNS)
        where, args = [], []
        if since is not None:
            where.append("ts > ?")
            args.append(int(since))
        if since_id is not None:
            where.append("seq > ?")
            args.append(int(since_id))
        cond = f"WHERE {' AND '.join(where)} " if where else ""
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(f"SELECT {cols} FROM fills {cond}ORDER BY seq LIMIT ?",
                                (*args, int(limit))).fetchall()
            if since_id is None and rows and len(rows) >= limit:
                # seq order is ts order (slices commit in time order), so the rest of the
                # last bar's fills are the next rows with the same ts.
                last = rows[-1]
                rows += conn.execute(
                    f"SELECT {cols} FROM fills WHERE ts = ? AND seq > ? ORDER BY seq",
                    (last["ts"], last["seq"])).fetchall()
        return [dict(r) for r in rows]

    # --- StateProvider (async: off the event loop) ------------------------------------------
    async def positions(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.positions_sync)

    async def fills(self, since: int | None, limit: int,
                    since_id: int | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.fills_sync, since, limit, since_id)
