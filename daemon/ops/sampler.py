"""Sample the running daemon's own counters into metrics and health, once a second.

Why sample instead of calling ``ops`` from every code path: the feeds already keep exact
counters (``reconnects``, ``backfills``, ``last_update_at`` on every websocket update, the
forming ones included) and the engine knows its equity. Reading them here keeps the trading
code free of monitoring calls, and a feed that stops updating is noticed even though it
never calls anything — which is precisely the stale-feed case.

Everything is duck-typed (``daemon.supervisor.feeds[*].symbol / last_update_at /
reconnects / backfills``, ``daemon.supervisor.restarts / watchdog_fires``, ``daemon.late``,
``daemon.stepper.engine.equity() / cash / entries_skipped()``,
``daemon.stepper.positions()``), so this module imports nothing from the daemon. Reading
Python attributes from the event-loop thread is race-free: the daemon mutates them on the
same thread.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from tandem.daemon.ops.health import Health
from tandem.daemon.ops.metrics import Metrics

__all__ = ["DaemonSampler"]


class DaemonSampler:
    """Turns the daemon's counters into metric increments and health feed timestamps."""

    def __init__(self, daemon: Any, metrics: Metrics, health: Health):
        self.daemon, self.metrics, self.health = daemon, metrics, health
        self._seen: dict[str, dict[str, int]] = {}  # symbol -> last counter values
        self._totals: dict[str, int] = {}  # daemon-wide counters -> last values

    def feeds(self) -> list[Any]:
        sup = getattr(self.daemon, "supervisor", None)
        return list(getattr(sup, "feeds", None) or [])

    def sample(self) -> None:
        """One pass (cheap: a few attribute reads per feed)."""
        for feed in self.feeds():
            symbol = str(feed.symbol)
            seen = self._seen.get(symbol)
            if seen is None:
                self.health.register_feed(symbol)
                seen = self._seen[symbol] = {"reconnects": 0, "backfills": 0}
            at = getattr(feed, "last_update_at", None)
            if at is not None:
                self.health.feed_update(symbol, at=at)
            for name, counter in (("reconnects", self.metrics.reconnects),
                                  ("backfills", self.metrics.backfills)):
                now = int(getattr(feed, name, 0) or 0)
                if now > seen[name]:
                    counter.labels(symbol=symbol).inc(now - seen[name])
                # A restarted feed object starts from 0 again: re-base, never count down.
                seen[name] = now
        sup = getattr(self.daemon, "supervisor", None)
        for name, obj, attr, counter in (
            ("restarts", sup, "restarts", self.metrics.feed_restarts),
            ("watchdog", sup, "watchdog_fires", self.metrics.watchdog_fires),
            ("late", self.daemon, "late", self.metrics.late_candles),
        ):
            value = getattr(obj, attr, None)
            if isinstance(value, int):
                delta = value - self._totals.get(name, 0)
                if delta > 0:
                    counter.inc(delta)
                self._totals[name] = value
        self._sample_portfolio()

    def _sample_portfolio(self) -> None:
        stepper = getattr(self.daemon, "stepper", None)
        engine = getattr(stepper, "engine", None)
        if engine is None:
            return
        try:
            equity = float(engine.equity())
            cash = float(engine.cash)
            positions = stepper.positions()
        except Exception:  # noqa: BLE001 - monitoring must never break trading
            return
        if math.isfinite(equity):
            self.metrics.set_equity(equity, cash)
        self.metrics.set_open_positions(sum(1 for q in positions.values() if q != 0.0))
        self._sample_skipped(engine)

    def _sample_skipped(self, engine: Any) -> None:
        """The engine's skipped-entry counters (cumulative since the run's first slice, kept
        in its checkpointed state) into ``tandem_entries_skipped_total``: the first sample
        after a start adds the restored total, so the counter reads as the engine's count.
        A rebuilt engine (checkpoint_incompatible) counts up from 0 again: re-based, never
        counted down."""
        try:
            skipped = engine.entries_skipped()
        except Exception:  # noqa: BLE001 - monitoring must never break trading
            return
        for cause, now in skipped.items():
            key = f"skipped:{cause}"
            delta = int(now) - self._totals.get(key, 0)
            if delta > 0:
                self.metrics.on_entries_skipped(cause, delta)
            self._totals[key] = int(now)

    async def run(self, every_s: float = 1.0) -> None:
        """Sample forever (cancel to stop)."""
        while True:
            try:
                self.sample()
            except Exception:  # noqa: BLE001, S110 - never let monitoring kill the loop
                pass
            await asyncio.sleep(every_s)
