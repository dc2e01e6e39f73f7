"""The daemon: feeds -> slices -> core step -> one SQLite transaction per slice.

Lifecycle of :meth:`Daemon.run`:

1. open the state database and bind the profile (a changed profile hash refuses to resume
   unless ``fresh``); restore the strategy's state blobs when resuming;
2. load markets, start one feed per asset under the supervisor (+ watchdog), start the
   scheduler jobs;
3. each feed, on its first websocket update, asks where to start: the bar after the last
   committed slice (resume: catch-up over REST), or ``t0 - warmup_bars`` on a fresh start
   (``t0`` = the forming bar of the first update, persisted), so history and stream meet;
4. every closed candle goes to the :class:`SliceAssembler`; each released slice is stepped
   (warm-up slices, ``ts < t0``, seed state only and never trade) and committed at once —
   synchronously, with no ``await`` between step and commit, so a stop request can only
   land between slices;
5. on stop (SIGTERM/SIGINT or ``stop()``): feeds cancelled, state closed, return.

The daemon holds no trading rule: the stepper (:mod:`daemon.strategy`) calls the core.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ccxt

from daemon.client import build_exchange
from daemon.feeds import CandleFeed, FeedSupervisor
from daemon.jobs import build_scheduler
from daemon.logconfig import get_logger
from daemon.memory import release_memory
from daemon.slices import Slice, SliceAssembler, make_slice
from daemon.state import ClosedCandle, StateStore

log = get_logger("daemon")


class SliceStepper(Protocol):
    """What the daemon needs from the strategy (implemented over the core in
    :class:`daemon.strategy.ProfileStepper`)."""

    symbols: list[str]

    def step(self, sl: Slice, *, trade: bool) -> list[dict[str, Any]]:
        """Step one slice; return its fills as journal rows (none when ``trade`` is False)."""

    def blobs(self) -> dict[str, bytes]:
        """The whole strategy state as named blobs (restorable with :meth:`restore`)."""

    def restore(self, blobs: dict[str, bytes]) -> None:
        """Continue from blobs saved by :meth:`blobs`."""

    def positions(self) -> dict[str, float]:
        """Position per symbol (base units) after the last step."""


@dataclass
class DaemonConfig:
    """Everything :class:`Daemon` needs besides the stepper."""

    profile_name: str
    profile_json: str  # canonical JSON of the effective profile (hashed for resume)
    symbols: list[str]
    exchange_id: str
    base_timeframe: str
    tf_ms: int
    warmup_bars: int
    state_db: Path
    rest_url: str | None = None
    ws_url: str | None = None
    grace_s: float = 10.0
    watchdog_s: float = 60.0
    export_dir: Path | None = None
    export_every_s: float = 300.0
    heartbeat_every_s: float = 30.0
    fresh: bool = False
    run_id: str = field(default_factory=lambda: f"paper-{uuid.uuid4().hex[:12]}")
    #: stop by itself once this slice ts (bar open) is committed (replay); None = run forever
    stop_after_ts: int | None = None
    rest_timeout_ms: int = 10_000
    #: first tradable bar (open ts) for a fresh start; None = the first bar seen on the ws
    t0: int | None = None
    #: grace never expires a slice on an asset whose feed has not started for this long
    startup_wait_s: float = 60.0
    #: SQLite synchronous mode: NORMAL (crash-safe) or FULL (+ power-loss durable)
    sqlite_synchronous: str = "NORMAL"
    #: strategy-state checkpoint after this many slices or seconds (whichever first); a
    #: restart re-steps the committed slices after the last checkpoint
    checkpoint_every: int = 500
    checkpoint_every_s: float = 30.0
    #: SQLite WAL checkpoint after this many slices (and after each strategy checkpoint);
    #: always right after a commit, never inside one (see daemon.state)
    wal_checkpoint_every: int = 100
    #: on going live: gc.collect + gc.freeze + malloc_trim (daemon.memory)
    release_memory: bool = True


class UnknownSymbolError(ValueError):
    """A profile symbol the exchange does not list: configuration, never retried."""


class Daemon:
    """One profile's live paper-trading session (see the module docstring)."""

    def __init__(
        self,
        config: DaemonConfig,
        stepper_factory: Callable[[str], SliceStepper],
        *,
        ops: Any = None,
        exchange: Any = None,
    ):
        self.cfg = config
        self._stepper_factory = stepper_factory
        self.ops = ops
        self.ex = exchange
        self.store: StateStore | None = None
        self.stepper: SliceStepper | None = None
        self.assembler: SliceAssembler | None = None
        self.supervisor: FeedSupervisor | None = None
        self.t0: int | None = None
        self.slices_stepped = 0
        self.fills_written = 0
        self.late = 0
        self.live = False
        self.commit_hook: Callable[[Slice, float], None] | None = None  # (slice, commit time)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._failed: BaseException | None = None

    # ---- control -----------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the daemon to stop after the slice in hand (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    # ---- main --------------------------------------------------------------------------
    async def run(self) -> int:
        """Run until stopped; returns the number of slices stepped in this session."""
        cfg = self.cfg
        self.store = StateStore(cfg.state_db, synchronous=cfg.sqlite_synchronous)
        self._started_at = time.monotonic()
        resumed = self.store.bind_profile(cfg.profile_name, cfg.profile_json, cfg.run_id,
                                          fresh=cfg.fresh)
        self.stepper = self._stepper_factory(cfg.run_id)
        prewarm = getattr(self.stepper, "prewarm", None)
        if prewarm is not None:
            t = time.perf_counter()
            prewarm()  # JIT/cache load now, not while feeds wait on the first slice
            log.info("kernels_ready", seconds=round(time.perf_counter() - t, 3))
        self.t0 = self.store.t0
        if resumed:
            self._restore()
        self._ckpt_slices = 0
        self._ckpt_at = time.monotonic()
        last_ts = self.store.last_ts
        log.info("daemon_start", profile=cfg.profile_name, run_id=cfg.run_id, resumed=resumed,
                 last_ts=last_ts, t0=self.t0, symbols=len(cfg.symbols), db=str(cfg.state_db))
        if cfg.stop_after_ts is not None and last_ts is not None and last_ts >= cfg.stop_after_ts:
            self.store.close()
            return 0
        self.assembler = SliceAssembler(cfg.symbols, cfg.grace_s, last_ts=last_ts,
                                        hold=self._hold)
        own_exchange = self.ex is None
        if own_exchange:
            self.ex = build_exchange(cfg.exchange_id, cfg.rest_url, cfg.ws_url,
                                     timeout_ms=cfg.rest_timeout_ms)
        sched = None
        try:
            await self._load_markets()
            feeds = [
                CandleFeed(self.ex, s, cfg.base_timeframe, cfg.tf_ms, self._feed_start,
                           self._on_candle)
                for s in cfg.symbols
            ]
            self.supervisor = FeedSupervisor(self.ex, feeds, watchdog_s=cfg.watchdog_s)
            self.supervisor.start()
            if self.ops is not None:
                for s in cfg.symbols:
                    self.ops.register_feed(s)
            sched = build_scheduler(
                self.store, export_dir=cfg.export_dir, export_every_s=cfg.export_every_s,
                heartbeat_every_s=cfg.heartbeat_every_s, health=self.health,
            )
            sched.start()
            while not self._stop.is_set():
                self._wake.clear()
                self._drain()
                if self._failed is not None:
                    raise self._failed
                deadline = self.assembler.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                except TimeoutError:
                    pass
        finally:
            if sched is not None:
                sched.shutdown(wait=False)
            if self.supervisor is not None:
                await self.supervisor.stop()
            if own_exchange and self.ex is not None:
                try:
                    # Bounded: a polite close handshake on dozens of sockets must not hold
                    # up the SIGTERM exit (state is already committed at this point).
                    await asyncio.wait_for(self.ex.close(), timeout=2.0)
                except Exception as exc:  # noqa: BLE001 - closing must not mask the exit
                    log.warning("exchange_close_failed", error=repr(exc))
            last = self.store.last_ts
            if last is not None and self._ckpt_slices and self._failed is None:
                self._checkpoint(last)
            log.info("daemon_stop", slices=self.slices_stepped, fills=self.fills_written,
                     last_ts=last)
            self.store.close()
        return self.slices_stepped

    def _restore(self) -> None:
        """Checkpoint + re-step of the slices committed after it (same candles, same code:
        the same state). Re-derived fills are checked against the journal."""
        blobs = self.store.load_blobs()
        ckpt = self.store.checkpoint_ts if blobs else None
        if blobs:
            try:
                self.stepper.restore(blobs)
            except Exception as exc:  # noqa: BLE001 - e.g. a core upgrade changed the layout
                # Every consumed candle is journaled: rebuild the state from the first slice.
                log.warning("checkpoint_incompatible", error=repr(exc))
                self.stepper = self._stepper_factory(self.cfg.run_id)
                ckpt = None
        todo = self.store.slices_after(ckpt)
        mismatches = 0
        skip = {"source", "run_id"}
        for ts, warmup, candles in todo:
            sl = make_slice(self.cfg.symbols, ts, {c.symbol: c for c in candles})
            rows = self.stepper.step(sl, trade=not warmup)
            stored = self.store.fills_of_slice(ts + self.cfg.tf_ms)
            strip = [{k: v for k, v in r.items() if k not in skip} for r in rows]
            if strip != [{k: v for k, v in r.items() if k not in skip} for r in stored]:
                mismatches += 1
                log.error("restore_mismatch", ts=ts, derived=len(rows), journal=len(stored))
        log.info("restored", checkpoint_ts=ckpt, restepped=len(todo), mismatches=mismatches,
                 last_ts=self.store.last_ts)
        if todo:
            self._checkpoint(todo[-1][0])

    def _checkpoint(self, ts: int) -> None:
        self.store.write_checkpoint(ts, self.stepper.blobs())
        self._ckpt_slices = 0
        self._ckpt_at = time.monotonic()

    async def _load_markets(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.ex.load_markets()
                break
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                log.warning("load_markets_retry", error=str(exc)[:200], backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        missing = [s for s in self.cfg.symbols if s not in self.ex.markets]
        if missing:
            # An unknown symbol would never deliver a bar; refuse rather than limp on.
            raise UnknownSymbolError(f"exchange {self.cfg.exchange_id} does not list "
                                     f"{', '.join(missing)} (check the profile's assets)")

    def _hold(self, symbol: str) -> bool:
        """True while ``symbol``'s feed is still fetching older bars (see SliceAssembler)."""
        sup = self.supervisor
        feed = sup.by_symbol.get(symbol) if sup is not None else None
        if feed is None:
            return False
        if feed.busy:
            return True
        return feed.next_ts is None and time.monotonic() - self._started_at < self.cfg.startup_wait_s

    # ---- feed callbacks ----------------------------------------------------------------
    async def _feed_start(self, forming_ts: int) -> int:
        """First bar a feed must deliver (called on each feed's first websocket update)."""
        tf = self.cfg.tf_ms
        if self.store.last_ts is not None:
            return self.store.last_ts + tf
        if self.t0 is None:
            self.t0 = int(forming_ts if self.cfg.t0 is None else self.cfg.t0)
            self.store.set_meta("t0", self.t0)
            log.info("warmup_start", t0=self.t0, warmup_bars=self.cfg.warmup_bars,
                     from_ts=self.t0 - self.cfg.warmup_bars * tf)
        return self.t0 - self.cfg.warmup_bars * tf

    def _on_candle(self, candle: ClosedCandle) -> None:
        """A feed delivered a closed candle: assemble, and step whatever became ready."""
        verdict = self.assembler.add(candle)
        self._wake.set()  # the grace deadline may have changed
        if self.ops is not None:
            self.ops.on_feed_update(candle.symbol)
            self.ops.on_candle(candle.symbol, candle.ts + self.cfg.tf_ms)
        if verdict == "late":
            if not self.store.consumed(candle.symbol, candle.ts):
                self.late += 1
                self.store.record_late(candle)
                log.warning("candle_late", symbol=candle.symbol, ts=candle.ts,
                            origin=candle.origin)
            return
        if verdict != "ok":
            log.warning("candle_rejected", verdict=verdict, symbol=candle.symbol, ts=candle.ts)
            return
        # Step right here (no await): the lowest close-to-commit latency.
        self._drain()

    # ---- stepping ----------------------------------------------------------------------
    def _drain(self) -> None:
        if self._failed is not None or self.assembler is None:
            return
        try:
            for sl in self.assembler.pop_ready():
                self._step(sl)
        except Exception as exc:  # noqa: BLE001 - a failed step/commit stops the daemon
            log.error("slice_failed", error=repr(exc), exc_info=True)
            if self.ops is not None:
                self.ops.on_write_error(type(exc).__name__)
            self._failed = exc
            self.stop()

    def _step(self, sl: Slice) -> None:
        t_start = time.perf_counter()
        trade = self.t0 is not None and sl.ts >= self.t0
        if sl.missing:
            log.warning("slice_partial", ts=sl.ts, missing=sl.missing, by_grace=sl.by_grace)
        rows = self.stepper.step(sl, trade=trade)
        self.store.commit_slice(
            sl.ts, sl.candles, sl.missing, rows, self.stepper.positions(), warmup=not trade,
        )
        now = time.perf_counter()
        self.slices_stepped += 1
        self._ckpt_slices += 1
        if (self._ckpt_slices >= self.cfg.checkpoint_every
                or time.monotonic() - self._ckpt_at >= self.cfg.checkpoint_every_s
                or (trade and not self.live)):
            # After the commit, outside the close-to-commit path; its own transaction.
            self._checkpoint(sl.ts)
            self.store.checkpoint_wal()  # the state blobs are the WAL's bulk
        else:
            self.store.checkpoint_wal(self.cfg.wal_checkpoint_every)
        self.fills_written += len(rows)
        if trade and not self.live:
            self.live = True
            log.info("live", ts=sl.ts)
            if self.cfg.release_memory:
                # Start-up garbage out, start-up survivors frozen (daemon.memory); after the
                # commit, a bar period before the next slice is due.
                mem = release_memory()
                log.info("memory_released", **{k: v and round(v, 1) for k, v in mem.items()})
            if self.ops is not None:
                self.ops.ready()
        for r in rows:
            log.info("fill", **r)
            if self.ops is not None:
                self.ops.on_fill(r["symbol"], r["side"], r["reason"])
        if self.ops is not None:
            self.ops.on_slice(sl.ts + self.cfg.tf_ms, now - t_start, bool(sl.missing))
        if self.commit_hook is not None:
            self.commit_hook(sl, now)
        stop_at = self.cfg.stop_after_ts
        if stop_at is not None and sl.ts >= stop_at:
            log.info("replay_done", last_ts=sl.ts)
            self.stop()

    # ---- status ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Fields for the heartbeat: feeds, reconnects, pending slices."""
        sup = self.supervisor
        feeds = sup.feeds if sup else []
        return {
            "live": self.live,
            "slices_stepped": self.slices_stepped,
            "late": self.late,
            "pending_slices": len(self.assembler.pending()) if self.assembler else 0,
            "reconnects": sum(f.reconnects for f in feeds),
            "backfills": sum(f.backfills for f in feeds),
            "feed_restarts": sup.restarts if sup else 0,
            "watchdog_fires": sup.watchdog_fires if sup else 0,
        }
