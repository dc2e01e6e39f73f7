"""``/positions`` and ``/fills`` read straight from the daemon's SQLite state file.

Its own **read-only** connection per request (``mode=ro`` URI), in a worker thread:

* it can only ever read: an HTTP bug cannot write the journal;
* under WAL a reader sees the last *committed* slice and never blocks the writer, so the
  endpoint can never observe half a slice nor delay the next commit;
* a slow query runs off the event loop that steps slices.

It depends on the state schema only (tables ``fills``, ``positions``, ``candles``, ``meta``
of :mod:`daemon.state`), not on the daemon's objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from daemon.state import JOURNAL_COLUMNS

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

    def fills_sync(self, since: int | None, limit: int) -> list[dict[str, Any]]:
        """Journal rows with ``ts > since`` in commit order (oldest first), at most ``limit``."""
        if not self.db_path.exists():
            return []
        cols = ", ".join(JOURNAL_COLUMNS)
        with contextlib.closing(self._connect()) as conn:
            rows = conn.execute(
                f"SELECT {cols} FROM fills WHERE ts > ? ORDER BY seq LIMIT ?",
                (-(2**63) if since is None else int(since), int(limit)),
            ).fetchall()
        return [dict(r) for r in rows]

    # --- StateProvider (async: off the event loop) ------------------------------------------
    async def positions(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.positions_sync)

    async def fills(self, since: int | None, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.fills_sync, since, limit)
