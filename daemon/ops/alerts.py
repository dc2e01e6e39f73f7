"""Notifications for people through Apprise (``TANDEM_NOTIFY_URLS``): entries, exits,
stop-loss / take-profit / trailing-stop hits, degraded / recovered health, a daily summary.

Sending never blocks or slows the slice loop:

* the slice path only formats one message per slice (all its fills together) and
  ``put_nowait``s it on a bounded queue — a full queue drops the message and counts it as
  failed instead of waiting;
* one worker thread (a daemon thread: a target that hangs can never hold up the exit
  after SIGTERM) drains the queue and runs Apprise's blocking HTTP, one message at a
  time, and hands the results back to the event loop;
* every delivery is counted per target in ``tandem_notifications_sent_total`` /
  ``tandem_notifications_failed_total``.

The URLs carry credentials (bot tokens, passwords): they stay a ``SecretStr`` until the
worker thread hands them to Apprise, are never logged (Apprise's own logger is silenced: it
would print them), and a failure is logged with the target's position and scheme only.

Health is watched by the same task every ``health_every_s`` once the daemon is live; the
daily summary is an APScheduler cron job (00:00:10 UTC) reading the journal read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from tandem.core.utc import ended_utc_day
from tandem.daemon.ops.health import Health
from tandem.daemon.ops.metrics import Metrics

__all__ = ["Alerts", "Message", "NotifyConfigError", "format_fills", "parse_urls"]

_REASONS = {
    "entry": "Entry", "exit": "Exit", "stop_loss": "Stop-loss hit",
    "take_profit": "Take-profit hit", "trailing_stop": "Trailing stop hit",
    "rebalance": "Rebalance",
}


class NotifyConfigError(ValueError):
    """A TANDEM_NOTIFY_URLS entry Apprise cannot use (the message never shows the URL)."""


@dataclass(frozen=True)
class Message:
    """One notification: Apprise's title, body and type (info/success/warning/failure)."""

    title: str
    body: str
    kind: str = "info"


def parse_urls(urls: SecretStr | str | None) -> list[SecretStr]:
    """Comma-separated URLs -> one SecretStr each (blank entries ignored)."""
    if urls is None:
        return []
    raw = urls.get_secret_value() if isinstance(urls, SecretStr) else str(urls)
    return [SecretStr(u.strip()) for u in raw.split(",") if u.strip()]


def _scheme(url: SecretStr) -> str:
    """``json``, ``tgram``... — the only part of a URL we ever show."""
    head = url.get_secret_value().split("://", 1)[0]
    return head if head.isalnum() and len(head) <= 16 else "?"


def _quiet_apprise() -> None:
    # Apprise logs the targets it sends to, and urllib3 (under Apprise's requests) logs
    # every request line at DEBUG: URLs with their tokens. Never let either through. (The
    # daemon itself speaks HTTP through aiohttp, so nothing else is silenced.)
    for name in ("apprise", "urllib3"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.CRITICAL + 10)
        lg.propagate = False


def validate_urls(urls: Sequence[SecretStr]) -> None:
    """Raise :class:`NotifyConfigError` naming the first entry Apprise does not support."""
    if not urls:
        return
    import apprise

    _quiet_apprise()
    for k, url in enumerate(urls, 1):
        if apprise.Apprise.instantiate(url.get_secret_value()) is None:
            raise NotifyConfigError(
                f"settings: TANDEM_NOTIFY_URLS: entry {k} of {len(urls)} "
                f"(scheme {_scheme(url)!r}) is not a URL Apprise supports")


def _fmt_num(v: Any, digits: int = 10) -> str:
    # 10 significant digits: a person can match the message to the journal row (6 turned
    # 81,037,277 units into 8.10373e+07 and a 1.00001 fee into 1).
    try:
        return f"{float(v):,.{digits}g}"
    except (TypeError, ValueError):
        return str(v)


def format_fills(rows: Sequence[Mapping[str, Any]]) -> Message:
    """One message for the fills of one slice (journal rows, same ``ts``)."""
    ts = int(rows[0]["ts"])
    when = datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
    reasons = sorted({str(r["reason"]) for r in rows})
    what = ", ".join(_REASONS.get(r, r) for r in reasons)
    profile = rows[0].get("profile") or "tandem"
    title = f"Tandem {profile}: {what}" if len(rows) == 1 else \
        f"Tandem {profile}: {len(rows)} fills ({what})"
    lines = [f"Bar closing {when}"]
    for r in rows:
        lines.append(
            f"{_REASONS.get(str(r['reason']), r['reason'])}: {str(r['side']).upper()} "
            f"{_fmt_num(r['qty'])} {r['symbol']} @ {_fmt_num(r['price'])} "
            f"(fee {_fmt_num(r['fee'])}; position after {_fmt_num(r['position_after'])})")
    lines.append(f"Cash after: {_fmt_num(rows[-1]['cash_after'])}")
    stops = {"stop_loss", "trailing_stop"}
    kind = "warning" if stops & set(reasons) else ("success" if "take_profit" in reasons
                                                   else "info")
    return Message(title, "\n".join(lines), kind)


class Alerts:
    """Queue + background sender (see the module docstring). ``start``/``stop`` on the loop."""

    def __init__(
        self,
        urls: SecretStr | str | None,
        metrics: Metrics,
        health: Health | None = None,
        *,
        logger: Any = None,
        queue_size: int = 256,
        health_every_s: float = 5.0,
        daily: bool = True,
        sender: Callable[[str, Message], bool] | None = None,
    ):
        self._urls = parse_urls(urls)
        validate_urls(self._urls)  # a bad entry fails at start-up (exit 2), not at 3 a.m.
        self.metrics, self.health, self._log = metrics, health, logger
        self.queue: queue.Queue[Message | None] | None = None
        self._queue_size = int(queue_size)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # queued or being sent (the loop's count, for stop()'s flush)
        self.health_every_s = float(health_every_s)
        self._daily = daily
        self._sender = sender
        self._targets: list[Any] | None = None  # Apprise objects, built in the worker thread
        self._health_task: asyncio.Task[None] | None = None
        self._sched: Any = None
        self._last_status: str | None = None
        self.daemon: Any = None
        self.db_path: Path | None = None
        self.sent = self.failed = 0

    @property
    def enabled(self) -> bool:
        return bool(self._urls)

    def __repr__(self) -> str:  # the URLs must not leak through a debug print
        return f"Alerts(targets={len(self._urls)}, schemes={[_scheme(u) for u in self._urls]})"

    def attach(self, daemon: Any) -> None:
        """The running daemon: its state file feeds the daily summary, its engine the equity."""
        self.daemon = daemon
        db = getattr(getattr(daemon, "cfg", None), "state_db", None)
        if db is not None:
            self.db_path = Path(db)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self.queue = queue.Queue(maxsize=self._queue_size)
        loop = self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._worker, args=(self.queue,),
                                        name="tandem-notify", daemon=True)
        self._thread.start()
        if self.health is not None and self.health_every_s > 0:
            self._health_task = loop.create_task(self._watch_health(), name="tandem-notify-health")
        if self._daily:
            from apscheduler.schedulers.asyncio import AsyncIOScheduler

            self._sched = AsyncIOScheduler(timezone="UTC")
            self._sched.add_job(self._daily_job, "cron", hour=0, minute=0, second=10,
                                id="notify_daily_summary", max_instances=1, coalesce=True,
                                misfire_grace_time=None)
            self._sched.start()

    async def stop(self, flush_s: float = 2.0) -> None:
        """Send what is queued (at most ``flush_s`` seconds: SIGTERM must exit quickly)."""
        if self._sched is not None:
            self._sched.shutdown(wait=False)
            self._sched = None
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        if self._thread is not None and self.queue is not None:
            deadline = time.monotonic() + flush_s
            while self._in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            # Never joined: a hung target must not hold the process (daemon thread).
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(None)
            self._thread = None

    # --- producers (the slice path: never blocks) ---------------------------------------
    def on_fills(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The fills of one committed slice: one message."""
        if rows and self.enabled:
            self.enqueue(format_fills(rows))

    def enqueue(self, msg: Message) -> bool:
        """Queue ``msg`` without waiting (False when not started or the queue is full)."""
        if self.queue is None or self._thread is None:
            return False
        try:
            self.queue.put_nowait(msg)
            self._in_flight += 1
            return True
        except queue.Full:
            self._count(False, len(self._urls))
            self._emit("notification_dropped", reason="queue full", title=msg.title)
            return False

    # --- consumer -----------------------------------------------------------------------
    def _worker(self, q: queue.Queue[Message | None]) -> None:
        """The sender thread: one message at a time until the ``None`` sentinel."""
        while True:
            msg = q.get()
            if msg is None:
                return
            try:
                results = self._send_all(msg)
            except Exception:  # noqa: BLE001 - the sender must survive anything
                results = [False] * len(self._urls)
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            with contextlib.suppress(RuntimeError):  # loop closed between check and call
                loop.call_soon_threadsafe(self._delivered, msg, results)

    def _delivered(self, msg: Message, results: list[bool]) -> None:
        """On the loop: count and log one message's deliveries."""
        self._in_flight = max(0, self._in_flight - 1)
        for k, ok in enumerate(results, 1):
            self._count(ok, 1)
            if not ok:
                self._emit("notification_failed", target=k,
                           scheme=_scheme(self._urls[k - 1]), title=msg.title)

    def _send_all(self, msg: Message) -> list[bool]:
        """In the worker thread: deliver ``msg`` to every target; one bool per target."""
        out = []
        for k, url in enumerate(self._urls):
            try:
                if self._sender is not None:
                    ok = bool(self._sender(url.get_secret_value(), msg))
                else:
                    ok = bool(self._target(k).notify(body=msg.body, title=msg.title,
                                                     notify_type=msg.kind))
            except Exception:  # noqa: BLE001 - its message could contain the URL
                ok = False
            out.append(ok)
        return out

    def _target(self, k: int) -> Any:
        if self._targets is None:
            import apprise

            _quiet_apprise()
            targets = []
            for url in self._urls:
                ap = apprise.Apprise()
                ap.add(url.get_secret_value())
                targets.append(ap)
            self._targets = targets
        return self._targets[k]

    def _count(self, ok: bool, n: int) -> None:
        if ok:
            self.sent += n
        else:
            self.failed += n
        self.metrics.on_notification(ok, n)

    # --- health and the daily summary ---------------------------------------------------
    def check_health(self) -> Message | None:
        """Compare with the last live evaluation; a message on degraded / recovered."""
        if self.health is None:
            return None
        report = self.health.evaluate()
        if report.phase != "live":
            return None  # warm-up and shutdown are not news
        prev, self._last_status = self._last_status, report.status
        if report.status == prev or (prev is None and report.ok):
            return None
        if report.ok:
            msg = Message("Tandem: recovered", "Health is ok again.", "success")
        else:
            msg = Message("Tandem: degraded", "\n".join(report.reasons), "failure")
        self.enqueue(msg)
        return msg

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(self.health_every_s)
            with contextlib.suppress(Exception):
                self.check_health()

    async def _daily_job(self) -> None:
        with contextlib.suppress(Exception):
            self.enqueue(await asyncio.to_thread(self.daily_summary))

    def daily_summary(self, now_ms: int | None = None) -> Message:
        """The UTC day that ended at the last midnight, from the journal (read-only), and
        the engine's equity now. The window is the calendar day, not "the last 24 h": a job
        run late (a busy loop) neither counts the new day's bars twice nor names the new day.
        Fill ``ts`` is the bar's close, so the bar closing at 00:00 is the old day's last."""
        now_ms = int(time.time() * 1000) if now_ms is None else int(now_ms)
        since, end = ended_utc_day(now_ms)
        by_reason: dict[str, int] = {}
        fees = 0.0
        if self.db_path is not None and self.db_path.exists():
            conn = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True,
                                   timeout=5.0)
            try:
                for reason, n, fee in conn.execute(
                        "SELECT reason, COUNT(*), SUM(fee) FROM fills WHERE ts > ? AND ts <= ? "
                        "GROUP BY reason", (since, end)):
                    by_reason[str(reason)] = int(n)
                    fees += float(fee or 0.0)
            finally:
                conn.close()
        day = datetime.fromtimestamp(since / 1000, UTC).strftime("%Y-%m-%d")
        lines = [f"Fills on {day} (UTC): {sum(by_reason.values())}"]
        lines += [f"  {_REASONS.get(r, r)}: {n}" for r, n in sorted(by_reason.items())]
        lines.append(f"Fees: {_fmt_num(fees)}")
        engine = getattr(getattr(self.daemon, "stepper", None), "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                lines.append(f"Equity: {_fmt_num(engine.equity(), 10)} "
                             f"(cash {_fmt_num(engine.cash, 10)})")
                lines.append(f"Open positions: {len(engine.open_levels())}")
        if self.health is not None:
            report = self.health.evaluate()
            lines.append(f"Health: {report.status}"
                         + (f" ({'; '.join(report.reasons)})" if report.reasons else ""))
        return Message(f"Tandem daily summary {day}", "\n".join(lines), "info")

    def _emit(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.warning(event, **fields)
