"""The REST request-weight budget: many symbols' pages in flight, inside Binance's limit.

Binance counts request weight per IP per minute (``REQUEST_WEIGHT``, 6,000/min on spot;
``GET /api/v3/klines`` weighs 2) and answers 429 beyond it, then 418 (a ban) to a client
that keeps going. ccxt's own throttler spaces every request one after the other at a rate
far under that (a 1,000-row klines page every 250 ms): the warm-up of 20 symbols took ~21 s.

:class:`RestBudget` is a token bucket over the weight: ``burst`` weight may go at once, the
rest refills at ``(share * limit - burst) / 60`` per second, so no 60-second window ever
spends more than ``share * limit``. A 429/418 stops every caller for its ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import time

from tandem.daemon.logconfig import get_logger

log = get_logger("restbudget")

#: Binance spot's published REQUEST_WEIGHT per minute, and the weight of a klines request.
BINANCE_WEIGHT_PER_MIN = 6000
KLINES_WEIGHT = 2


class RestBudget:
    """Token bucket over request weight (see the module docstring)."""

    def __init__(self, limit_per_min: int = BINANCE_WEIGHT_PER_MIN, *, share: float = 0.8,
                 burst_share: float = 0.25, max_in_flight: int = 16,
                 burst: float | None = None):
        if limit_per_min <= 0 or not 0 < share <= 1 or not 0 <= burst_share < 1:
            raise ValueError("limit_per_min > 0, 0 < share <= 1, 0 <= burst_share < 1")
        budget = share * limit_per_min
        # ``burst`` (weight): a venue that counts per few seconds (OKX: 2 s) must not get
        # a quarter of a minute's budget at once
        self.burst = burst_share * budget if burst is None else float(burst)
        self.rate = (budget - self.burst) / 60.0  # weight per second
        # a request heavier than the burst still goes
        self.cap = max(self.burst, 16.0) if burst is None else self.burst
        self.tokens = self.cap
        self.spent = 0.0
        self.waited_s = 0.0
        self.penalties = 0
        self._at = time.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(max_in_flight)

    def _refill(self, now: float) -> None:
        self.tokens = min(self.cap, self.tokens + (now - self._at) * self.rate)
        self._at = now

    async def acquire(self, weight: float) -> None:
        """Wait until ``weight`` may be spent (callers are served in arrival order)."""
        async with self._lock:
            t0 = time.monotonic()
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._refill(now)
                need = weight - self.tokens
                if need <= 0:
                    self.tokens -= weight
                    self.spent += weight
                    break
                await asyncio.sleep(need / self.rate if self.rate > 0 else 1.0)
            self.waited_s += time.monotonic() - t0

    def pause(self, seconds: float) -> None:
        """The exchange said 429/418: nobody sends for ``seconds``; the bucket starts empty."""
        self.penalties += 1
        until = time.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
        self.tokens = min(self.tokens, 0.0)
        log.warning("rest_rate_limited", pause_s=round(seconds, 3), penalties=self.penalties)

    async def __aenter__(self) -> RestBudget:
        await self._in_flight.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._in_flight.release()
