"""Periodic jobs on APScheduler (3.x, asyncio scheduler): journal export, daily summary,
heartbeat. The jobs only read state; trading happens in the slice loop, never here."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from tandem.core.utc import ended_utc_day
from tandem.daemon.logconfig import get_logger
from tandem.daemon.state import StateStore

log = get_logger("jobs")


def build_scheduler(
    store: StateStore,
    *,
    export_dir: Path | None,
    export_every_s: float = 300.0,
    heartbeat_every_s: float = 30.0,
    health: Callable[[], dict[str, Any]] | None = None,
) -> AsyncIOScheduler:
    """An (unstarted) scheduler with the daemon's jobs. Start it inside the running loop."""
    sched = AsyncIOScheduler(timezone="UTC")
    # Jobs are coroutines so they run on the event loop: a plain function would run in
    # APScheduler's thread pool, and the SQLite connection belongs to the loop's thread.
    if export_dir is not None and export_every_s > 0:
        sched.add_job(
            _on_loop(export_job), "interval", seconds=export_every_s, args=[store, export_dir],
            id="export", max_instances=1, coalesce=True, misfire_grace_time=None,
        )
    sched.add_job(
        _on_loop(heartbeat_job), "interval", seconds=heartbeat_every_s, args=[store, health],
        id="heartbeat", max_instances=1, coalesce=True, misfire_grace_time=None,
    )
    sched.add_job(
        _on_loop(daily_summary_job), "cron", hour=0, minute=0, second=5, args=[store],
        id="daily_summary", max_instances=1, coalesce=True, misfire_grace_time=None,
    )
    return sched


def _on_loop(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def job(*args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a failing job must not kill the scheduler
            log.error("job_failed", job=fn.__name__, error=repr(exc))

    job.__name__ = fn.__name__
    return job


def export_job(store: StateStore, export_dir: Path) -> list[Path]:
    """Write the journal to ``export_dir/fills.csv`` and ``fills.parquet`` (atomic replace)."""
    from tandem.daemon.export import export_fills  # pandas/pyarrow: only when an export runs

    paths = export_fills(store, export_dir)
    log.info("journal_exported", paths=[str(p) for p in paths], fills=store.fill_count())
    return paths


def heartbeat_job(store: StateStore, health: Callable[[], dict[str, Any]] | None = None) -> dict:
    """Log one ``heartbeat`` event: last slice, ``fills_total`` (the whole journal, all
    sessions; ``health()`` adds this session's ``fills_this_run``), and whatever
    ``health()`` adds."""
    fields: dict[str, Any] = {"last_ts": store.last_ts, "fills_total": store.fill_count()}
    if health is not None:
        fields.update(health())
    log.info("heartbeat", **fields)
    return fields


def daily_summary_job(store: StateStore, now_ms: int | None = None) -> dict:
    """Log the UTC day that just ended (:func:`tandem.core.utc.ended_utc_day`): fills by
    reason, fees; and now: the last cash, open positions."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since, end = ended_utc_day(now_ms)
    # In SQL, not a pandas frame of the whole journal: a live daemon never loads pandas
    # (~45 MB resident from the first summary on, for the rest of its life).
    by_reason = store.conn.execute(
        "SELECT reason, COUNT(*), TOTAL(fee) FROM fills WHERE ts > ? AND ts <= ? "
        "GROUP BY reason ORDER BY COUNT(*) DESC, MIN(seq)", (since, end)).fetchall()
    last = store.conn.execute("SELECT cash_after FROM fills ORDER BY seq DESC LIMIT 1").fetchone()
    summary = {
        "since_ts": since,
        "until_ts": end,
        "fills": sum(n for _, n, _ in by_reason),
        "fills_by_reason": {reason: n for reason, n, _ in by_reason},
        "fees": float(sum(fee for *_, fee in by_reason)),
        "last_cash": float(last[0]) if last else None,
        "open_positions": {s: q for s, q in store.positions().items() if q != 0.0},
        "last_ts": store.last_ts,
    }
    log.info("daily_summary", **summary)
    return summary
