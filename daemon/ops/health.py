"""The daemon's health model: ``ok`` or ``degraded`` with the reasons.

Three things make a daemon that is still running useless, and each is a reason here:

* **stale feed** — a feed got no websocket update for ``stale_feed_after_s``. ccxt.pro never
  notices a silent socket by itself (DESIGN.md), so this is measured from our side, on the
  wall clock, per stream;
* **lagging slice** — a feed saw a bar close but the engine has not stepped that slice
  within ``slice_lag_after_s`` (which must exceed the slice grace period);
* **failed write** — the last SQLite commit failed; cleared by the next successful one.

Plus the phase: until warm-up ends the daemon is ``starting`` (reported as degraded so a
load balancer or Docker's HEALTHCHECK does not count it healthy before it trades).

Time is measured with an injectable monotonic clock so tests can step it. The model is pure
bookkeeping (no asyncio, no I/O): the daemon reports events, ``evaluate()`` judges.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Health", "HealthConfig", "HealthReport", "Phase", "Status"]

Status = Literal["ok", "degraded"]
Phase = Literal["starting", "live", "stopping"]


@dataclass(frozen=True)
class HealthConfig:
    """Thresholds, in seconds of wall-clock time."""

    stale_feed_after_s: float = 90.0
    slice_lag_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.stale_feed_after_s > 0 and self.slice_lag_after_s > 0):
            raise ValueError("health thresholds must be > 0 seconds")


@dataclass(frozen=True)
class HealthReport:
    """One evaluation: ``status`` is ``ok`` exactly when ``reasons`` is empty."""

    status: Status
    reasons: tuple[str, ...]
    phase: Phase
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON body served by ``/health``."""
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "phase": self.phase,
            **self.details,
        }


class Health:
    """Bookkeeping of feed activity, slice progress and writes; ``evaluate()`` judges it."""

    def __init__(self, config: HealthConfig | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config or HealthConfig()
        self._clock = clock
        self._phase: Phase = "starting"
        self._feeds: dict[str, float] = {}  # stream -> last update (clock seconds)
        self._pending: dict[int, float] = {}  # closed-but-unstepped ts -> first seen
        self._last_stepped_ts: int | None = None
        self._write_error: str | None = None
        self._write_error_at: float | None = None
        self._warmup_journal: dict[str, Any] | None = None

    # --- events the daemon reports -----------------------------------------------------------
    def set_phase(self, phase: Phase) -> None:
        """``starting`` → ``live`` after warm-up → ``stopping`` on SIGTERM."""
        self._phase = phase

    @property
    def phase(self) -> Phase:
        return self._phase

    def register_feed(self, stream: str) -> None:
        """Start watching ``stream``: its staleness counts from now, not from the epoch."""
        self._feeds.setdefault(stream, self._clock())

    def forget_feed(self, stream: str) -> None:
        """Stop watching ``stream`` (unsubscribed on purpose)."""
        self._feeds.pop(stream, None)

    def feed_update(self, stream: str, at: float | None = None) -> None:
        """Any websocket update of ``stream`` (forming or closing candle) arrived, now or at
        clock time ``at`` (sampled from the feed); time never moves backwards."""
        if at is None:  # the hot path: called per candle, keep it to one clock read
            self._feeds[stream] = self._clock()
            return
        prev = self._feeds.get(stream)
        self._feeds[stream] = at if prev is None or at > prev else prev

    def candle_closed(self, ts_close_ms: int) -> None:
        """A feed saw the bar closing at ``ts_close_ms``: a slice for it is now due."""
        if self._last_stepped_ts is not None and ts_close_ms <= self._last_stepped_ts:
            return  # a late duplicate of a slice already stepped is not pending work
        if ts_close_ms not in self._pending:  # first sighting only (one per asset follows)
            self._pending[int(ts_close_ms)] = self._clock()

    def slice_stepped(self, ts_close_ms: int) -> None:
        """The slice closing at ``ts_close_ms`` was stepped and committed."""
        ts = int(ts_close_ms)
        if self._last_stepped_ts is None or ts > self._last_stepped_ts:
            self._last_stepped_ts = ts
        # Slices step in order, so everything up to ``ts`` is done.
        for pending in [p for p in self._pending if p <= ts]:
            del self._pending[pending]

    def write_ok(self) -> None:
        """A state/journal commit succeeded: clears a previous write failure."""
        self._write_error = None
        self._write_error_at = None

    def write_failed(self, error: str) -> None:
        """A state/journal commit failed with ``error`` (a message, never a secret)."""
        self._write_error = error
        self._write_error_at = self._clock()

    def warmup_journal_incomplete(self, gap: Mapping[str, Any]) -> None:
        """The state's journal lacks warm-up candles (a stop while journaling them): a
        detail for whoever reconciles this run, not a reason — trading is unaffected."""
        self._warmup_journal = {"status": "incomplete", **gap}

    def slice_lag_s(self) -> float:
        """Seconds the oldest closed-but-unstepped slice has waited (0.0 when none)."""
        if not self._pending:
            return 0.0
        return max(0.0, self._clock() - self._pending[min(self._pending)])

    def feed_ages(self) -> list[tuple[str, float]]:
        """``(stream, seconds since its last update)`` for every watched feed, sorted."""
        now = self._clock()
        return [(s, max(0.0, now - t)) for s, t in sorted(self._feeds.items())]

    # --- judgement ---------------------------------------------------------------------------
    def evaluate(self) -> HealthReport:
        """Judge the current state; pure (calling it twice gives the same answer)."""
        now = self._clock()
        cfg = self.config
        reasons: list[str] = []
        if self._phase == "starting":
            reasons.append("starting: warm-up not finished")
        elif self._phase == "stopping":
            reasons.append("stopping")
        stale = {
            s: now - t for s, t in sorted(self._feeds.items()) if now - t > cfg.stale_feed_after_s
        }
        for stream, age in stale.items():
            reasons.append(f"stale feed: {stream} silent for {age:.0f}s")
        if self._pending:
            oldest_ts = min(self._pending)
            lag = now - self._pending[oldest_ts]
            if lag > cfg.slice_lag_after_s:
                reasons.append(f"lagging slice: ts {oldest_ts} closed {lag:.0f}s ago, not stepped")
        if self._write_error is not None:
            reasons.append(f"failed write: {self._write_error}")
        details: dict[str, Any] = {
            "feeds": len(self._feeds),
            "stale_feeds": sorted(stale),
            "last_slice_ts": self._last_stepped_ts,
            "pending_slices": len(self._pending),
        }
        if self._warmup_journal is not None:
            details["warmup_journal"] = dict(self._warmup_journal)
        return HealthReport(
            status="ok" if not reasons else "degraded",
            reasons=tuple(reasons),
            phase=self._phase,
            details=details,
        )
