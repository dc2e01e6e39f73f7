"""The daemon: feeds -> slices -> core step -> one SQLite transaction per slice.

Lifecycle of :meth:`Daemon.run`:

1. open the state database and bind the profile (a changed profile hash refuses to resume
   unless ``fresh``); load the exchange's markets — a profile symbol it does not list is
   refused here, before the core's kernels load (or compile) — then make the stepper, load
   its kernels and restore the strategy's state blobs when resuming;
2. start one feed per asset under the supervisor (+ watchdog), start the scheduler jobs;
3. each feed, on its first websocket update, asks where to start: the bar after the last
   committed slice (resume: catch-up over REST), or ``t0 - warmup_bars`` on a fresh start
   (``t0`` = the forming bar of the first update, persisted), so history and stream meet;
4. every closed candle goes to the :class:`SliceAssembler`; each released slice is stepped
   (warm-up slices, ``ts < t0``, seed state only and never trade) and committed at once —
   synchronously, with no ``await`` between step and commit, so a stop request can only
   land between slices;
5. on stop (SIGTERM/SIGINT or ``stop()``): feeds cancelled, state closed, return.

The daemon holds no trading rule: the stepper (:mod:`tandem.daemon.strategy`) calls the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import ccxt
from tandem.core import exiting
from tandem.daemon.client import build_exchange
from tandem.daemon.feeds import CandleFeed, FeedSupervisor
from tandem.daemon.jobs import build_scheduler, export_job
from tandem.daemon.logconfig import get_logger
from tandem.daemon.memory import defer_collection, release_memory, resume_collection
from tandem.daemon.slices import Slice, SliceAssembler, by_name, make_slice
from tandem.daemon.state import ClosedCandle, StateStore
from tandem.daemon.warmstart import JOURNAL_AT_ONCE_ROWS, WarmupSink

log = get_logger("daemon")
T = TypeVar("T")
#: what the "compiling_core" log line announces (measured: 24-44 s on 2 shared cores)
COLD_COMPILE_ESTIMATE = "20-60 s"
#: at stop, seconds spent writing what is left of the warm-up's journal (daemon.warmstart)
STOP_JOURNAL_S = 2.0


class SliceFailedError(RuntimeError):
    """A slice could not be stepped or committed (e.g. the disk is full): the daemon
    stopped without it. Raised by :meth:`Daemon.run` after cleanup, so the process ends
    non-zero and a supervisor (systemd ``Restart=on-failure``) restarts it."""


class SliceStepper(Protocol):
    """What the daemon needs from the strategy (implemented over the core in
    :class:`tandem.daemon.strategy.ProfileStepper`)."""

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
    #: what makes the journal: "live" (``tandem-daemon run``) or "replay" (played history);
    #: one never continues the other's (:meth:`tandem.daemon.state.StateStore.bind_profile`)
    journal_kind: str = "live"
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
    #: once live: no automatic cyclic collection from a slice's first candle to its commit
    #: (daemon.memory.defer_collection)
    defer_gc: bool = True
    #: while a feed's websocket is down, fetch closed bars over REST this often (seconds);
    #: None = a tenth of the bar, 1-30 s (daemon.feeds.CandleFeed)
    stream_down_poll_s: float | None = None
    #: websocket streams per connection (Binance: at most 1,024) and SUBSCRIBE messages per
    #: second per connection (Binance closes at more than 5 incoming messages a second);
    #: None = the venue adapter's defaults (daemon.venues; Binance: 200 and 3)
    streams_per_connection: int | None = None
    subscribe_msgs_per_s: int | None = None
    #: REST request weight per minute the daemon may spend (Binance spot: 6,000); it uses
    #: 80 % of it (daemon.restbudget); None = the venue's
    rest_weight_per_min: int | None = None
    #: local candle store root (TANDEM_DATA_DIR) to warm up from; None = REST only
    candle_store: Path | None = None
    #: the store's venue folder (<candle_store>/<exchange>/...); None = ``exchange_id``:
    #: a fixed "binance" default read Binance's folder for a bybit/okx daemon built
    #: without it (bench/daemon.py --venue bybit)
    candle_store_exchange: str | None = None


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
        self.history: Any = None  # daemon.history.StoreHistory when warming up from the store
        #: a fresh start's warm-up, stepped per asset in the core's batch kernel
        self.warm: WarmupSink | None = None
        self._journal: Iterator[int] | None = None  # its journal rows still to write
        self._journal_task: asyncio.Task | None = None
        self.warmup_done_s: float | None = None  # seconds from run() to the warm-up commit
        self.t0: int | None = None
        self.slices_stepped = 0
        self.fills_written = 0
        self.late = 0
        self.live = False
        self.live_ts: int | None = None  # the slice at which the daemon went live
        self._defer_gc = False  # live and cfg.defer_gc: see _on_candle, _drain
        self.commit_hook: Callable[[Slice, float], None] | None = None  # (slice, commit time)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._markets_retrying = asyncio.Event()  # load_markets failed once (see _start_up)
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
                                          fresh=cfg.fresh, kind=cfg.journal_kind)
        self._ckpt_slices = 0
        own_exchange = self.ex is None
        if own_exchange:
            self.ex = build_exchange(cfg.exchange_id, cfg.rest_url, cfg.ws_url,
                                     timeout_ms=cfg.rest_timeout_ms,
                                     streams_per_connection=cfg.streams_per_connection,
                                     subscribe_msgs_per_s=cfg.subscribe_msgs_per_s,
                                     rest_weight_per_min=cfg.rest_weight_per_min)
        sched = None
        try:
            if not await self._start_up():
                log.info("stopped_before_start",
                         reason="stop requested while loading markets or the core")
                return 0
            self.t0 = self.store.t0
            if resumed:
                self._restore()
            self._ckpt_slices = 0
            self._ckpt_at = time.monotonic()
            last_ts = self.store.last_ts
            log.info("daemon_start", profile=cfg.profile_name, run_id=cfg.run_id,
                     resumed=resumed, last_ts=last_ts, t0=self.t0, symbols=len(cfg.symbols),
                     db=str(cfg.state_db))
            if resumed:
                self._warn_warmup_journal()
            if (cfg.stop_after_ts is not None and last_ts is not None
                    and last_ts >= cfg.stop_after_ts):
                return 0
            self.assembler = SliceAssembler(cfg.symbols, cfg.grace_s, last_ts=last_ts,
                                            hold=self._hold)
            history = None
            if cfg.candle_store is not None:
                from tandem.daemon.history import StoreHistory

                history = StoreHistory(cfg.candle_store,
                                       cfg.candle_store_exchange or cfg.exchange_id,
                                       cfg.base_timeframe)
            self.history = history
            if self.store.last_ts is None and cfg.warmup_bars > 0:
                self.warm = WarmupSink(cfg.symbols, self.stepper, cfg.tf_ms, ops=self.ops)
                if self.t0 is not None:  # a warm-up cut short before: same t0 again
                    self._begin_warmup()
            feeds = [
                CandleFeed(self.ex, s, cfg.base_timeframe, cfg.tf_ms, self._feed_start,
                           self._on_candle, stream_down_poll_s=cfg.stream_down_poll_s,
                           history=history, warm=self.warm)
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
                    break
                if self._warmup_delivered():
                    self._finish_warmup()
                if not self.live and self._caught_up_idle():
                    if self._ckpt_slices:
                        try:
                            self._checkpoint(self.store.last_ts)
                        except sqlite3.Error as exc:
                            self._fail("checkpoint_failed", exc)
                            break
                    self._go_live(self.store.last_ts)
                deadline = self.assembler.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self.live:  # feeds report progress without waking us: look again
                    timeout = 0.25 if timeout is None else min(timeout, 0.25)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
                except TimeoutError:
                    pass
            # The failure may have stopped the loop from a feed callback (the loop then
            # sees the stop flag first): it must still end the run with an error.
            if self._failed is not None:
                exc = self._failed
                raise SliceFailedError(f"a slice could not be committed: {exc!r}") from exc
        finally:
            self._defer_gc = False
            resume_collection()  # a burst cut short by the stop
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
            # The connections are closed: nothing waits on the loop. Bounded: SIGTERM must
            # still exit within seconds (the state itself is committed).
            self._journal_rest(STOP_JOURNAL_S)
            last = self.store.last_ts
            if last is not None and self._ckpt_slices and self._failed is None:
                try:
                    self._checkpoint(last)
                except sqlite3.Error as exc:  # e.g. disk full: the slices are committed
                    self._fail("checkpoint_failed", exc)
            if cfg.export_dir is not None and self._failed is None:
                # The timer alone left a stopped daemon's export up to --export-every behind
                # its journal (none at all for a shorter run, or with --export-every 0, which
                # left --export-dir ignored): export what is committed.
                try:
                    export_job(self.store, cfg.export_dir)
                except (OSError, sqlite3.Error) as exc:  # the state is committed; the export is a copy
                    log.warning("export_failed", error=repr(exc))
            # fills_this_run: written by this process; fills_total: the whole journal (the
            # heartbeat's figure), so the two are never confused.
            log.info("daemon_stop", slices=self.slices_stepped,
                     fills_this_run=self.fills_written, fills_total=self.store.fill_count(),
                     last_ts=last, failed=self._failed is not None)
            self.store.close()
        if self._failed is not None:  # a failed final checkpoint (nothing else in flight)
            exc = self._failed
            raise SliceFailedError(f"the state could not be written: {exc!r}") from exc
        return self.slices_stepped

    async def _start_up(self) -> bool:
        """The exchange's markets, then the core's kernels (a cold numba cache compiles for
        20-60 s): a symbol the exchange does not list is refused (:class:`UnknownSymbolError`)
        before the strategy, numba or any kernel is loaded — a typo costs one REST request,
        not a compile. While the exchange is unreachable the kernels load meanwhile, so an
        outage at start does not add the compile on top. False: a stop request came first."""
        markets = asyncio.ensure_future(self._load_markets())
        retrying = asyncio.ensure_future(self._markets_retrying.wait())
        try:
            await asyncio.wait((markets, retrying), return_when=asyncio.FIRST_COMPLETED)
        finally:
            retrying.cancel()
        if markets.done():  # the usual start: the markets first, then the core
            return markets.result() and await self._prepare_core()
        core = asyncio.ensure_future(self._prepare_core())
        try:
            done, _ = await asyncio.wait((markets, core), return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # an unknown symbol, a failed compile
            return markets.result() and core.result()
        finally:
            if not markets.done():  # the compile failed while the exchange is unreachable
                markets.cancel()
                await asyncio.gather(markets, return_exceptions=True)
            if not core.done():  # an unknown symbol while the core compiles: abandon it
                core.cancel()
                await asyncio.gather(core, return_exceptions=True)
                cancel = getattr(self.stepper, "cancel_prewarm", None)
                if cancel is not None:
                    cancel()  # its warm-up worker processes

    async def _prepare_core(self) -> bool:
        """Make the stepper and load (or compile) its kernels; False: stopped meanwhile."""
        self.stepper = self._stepper_factory(self.cfg.run_id)
        return await self._prewarm()

    async def _prewarm(self) -> bool:
        """Load (or, on a cold numba cache, compile) the core's kernels before the feeds
        start, in a worker thread so that SIGTERM is honoured at once: a stop request
        abandons the compile (False). numba writes a cache entry to a temporary name and
        renames it into place, so an abandoned compile leaves the cache consistent; the
        next start compiles what is missing."""
        prewarm = getattr(self.stepper, "prewarm", None)
        if prewarm is None:
            return True
        cold = getattr(self.stepper, "is_cold", None)
        if cold is not None and cold():
            # Tens of seconds without a word looked like a hang: say what is going on.
            log.info("compiling_core", message="compiling the core, first run only "
                     f"(about {COLD_COMPILE_ESTIMATE}; later starts load it in seconds)",
                     estimate=COLD_COMPILE_ESTIMATE)
        t = time.perf_counter()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[BaseException | None] = loop.create_future()

        def settle(outcome: BaseException | None) -> None:
            if not fut.done():
                fut.set_result(outcome)

        def work() -> None:
            outcome: BaseException | None = None
            try:
                prewarm()
            except BaseException as exc:  # noqa: BLE001 - handed to the event loop
                outcome = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: we were stopped
                loop.call_soon_threadsafe(settle, outcome)

        # A daemon thread: an abandoned compile must not hold up the process exit.
        thread = threading.Thread(target=work, name="tandem-prewarm", daemon=True)
        thread.start()
        done, outcome = await self._until_stopped(fut)
        if not done:
            exiting.abandon(thread)  # the process must not exit through LLVM's destructors
            cancel = getattr(self.stepper, "cancel_prewarm", None)
            if cancel is not None:
                cancel()  # warm-up worker processes, if any
            log.info("prewarm_abandoned", seconds=round(time.perf_counter() - t, 3))
            return False
        if outcome is not None:
            raise outcome
        log.info("kernels_ready", seconds=round(time.perf_counter() - t, 3))
        return True

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
        order = by_name(self.cfg.symbols)
        for ts, warmup, candles in todo:
            sl = make_slice(self.cfg.symbols, ts, {c.symbol: c for c in candles}, order=order)
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

    def _warn_warmup_journal(self) -> None:
        """A resumed state whose warm-up journal was cut short (stopped or killed while
        writing it): trading is unaffected (the warm-up state was committed whole), but the
        journal lacks warm-up candles, so `tandem-backtest run --candles-from` refuses it
        and reconcile's evidence is partial. Said once, at start, and on /health.
        Completing the journal would mean fetching those bars again (the candle store or
        REST, rate-limited): not done here; the collected bars are gone with the old
        process."""
        gap = self.store.warmup_journal_gap()
        if gap is None:
            return
        log.warning("warmup_journal_incomplete", db=str(self.cfg.state_db), **gap,
                    hint="the journal lacks warm-up candles: backtest this run from the "
                         "candle store (tandem-backtest run --data), not --candles-from")
        if self.ops is not None:
            self.ops.on_warmup_journal_incomplete(gap)

    def _checkpoint(self, ts: int) -> None:
        self.store.write_checkpoint(ts, self.stepper.blobs())
        self._ckpt_slices = 0
        self._ckpt_at = time.monotonic()

    async def _until_stopped(self, aw: Awaitable[T]) -> tuple[bool, T | None]:
        """Await ``aw`` unless a stop request comes first (then ``aw`` is cancelled):
        ``(True, result)`` or ``(False, None)``. What start-up waits on (markets from an
        unreachable exchange, a cold compile) must never outlast SIGTERM."""
        job = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((job, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if job.done():
            return True, job.result()
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await job
        return False, None

    async def _load_markets(self) -> bool:
        """Load the exchange's markets, retrying while it is unreachable. False when a stop
        request came first (the caller then shuts down cleanly)."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                done, _ = await self._until_stopped(self.ex.load_markets())
                if not done:
                    return False
                break
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                log.warning("load_markets_retry", error=str(exc)[:200], backoff_s=backoff)
                self._markets_retrying.set()
                done, _ = await self._until_stopped(asyncio.sleep(backoff))
                if not done:
                    return False
                backoff = min(backoff * 2, 5.0)
        if self._stop.is_set():
            return False
        missing = [s for s in self.cfg.symbols if s not in self.ex.markets]
        if missing:
            # An unknown symbol would never deliver a bar; refuse rather than limp on.
            raise UnknownSymbolError(f"exchange {self.cfg.exchange_id} does not list "
                                     f"{', '.join(missing)} (check the profile's assets)")
        return True

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
            try:
                self.store.set_meta("t0", self.t0)
            except sqlite3.Error as exc:
                self._fail("state_write_failed", exc)
                raise
            log.info("warmup_start", t0=self.t0, warmup_bars=self.cfg.warmup_bars,
                     from_ts=self.t0 - self.cfg.warmup_bars * tf)
            self._begin_warmup()
        return self.t0 - self.cfg.warmup_bars * tf

    # ---- the warm-up (daemon.warmstart) ------------------------------------------------
    def _begin_warmup(self) -> None:
        if self.warm is not None and self.warm.end is None:
            self.warm.begin(self.t0 - self.cfg.warmup_bars * self.cfg.tf_ms, self.t0)

    def _warmup_delivered(self) -> bool:
        """True when the warm-up is open and every feed delivered its warm-up bars (or, not
        started after ``startup_wait_s``, is given up on, as the slice assembler does)."""
        w, sup = self.warm, self.supervisor
        if w is None or w.finished or w.end is None or sup is None:
            return False
        return all(not self._hold(f.symbol) and (f.next_ts is None or f.next_ts >= w.end)
                   for f in sup.feeds)

    def _finish_warmup(self) -> None:
        """Commit the warm-up: the state after it is the checkpoint at ``t0 - tf`` (the
        last committed slice); its journal rows follow (at once when few, else between
        live slices, at stop for a bounded time)."""
        w = self.warm
        if w is None or w.finished:
            return
        meta = w.finish()
        try:
            self.store.commit_warmup(self.t0 - self.cfg.tf_ms, self.stepper.blobs(), meta)
        except sqlite3.Error as exc:
            self._fail("state_write_failed", exc)
            return
        self._ckpt_slices = 0
        self._ckpt_at = time.monotonic()
        self.warmup_done_s = time.monotonic() - self._started_at
        log.info("warmup_done", candles=w.n_bars, late=w.late, core_s=round(w.seconds, 3),
                 since_start_s=round(self.warmup_done_s, 3))
        self._journal = w.journal_chunks(self.store)
        if w.n_bars <= JOURNAL_AT_ONCE_ROWS:
            self._journal_rest()
        else:
            self._journal_task = asyncio.ensure_future(self._journal_between_slices())

    async def _journal_between_slices(self) -> None:
        """The warm-up's journal rows, a short transaction at a time, yielding to the feeds
        and the slices in between."""
        while self._journal is not None:
            await asyncio.sleep(0.002)
            try:
                next(self._journal)
                self.store.checkpoint_wal(self.cfg.wal_checkpoint_every)  # keep the WAL short
            except StopIteration:
                self._journal = None
                log.info("warmup_journaled", candles=self.warm.n_bars)
                if self.cfg.release_memory and self.live:
                    # the warm-up's bars and rows are garbage now (daemon.memory)
                    release_memory(freeze=False)
            except sqlite3.Error as exc:
                self._journal = None
                self._fail("state_write_failed", exc)

    def _journal_rest(self, within_s: float | None = None) -> None:
        """Write what is left of the warm-up's journal now: all of it, or at stop what
        ``within_s`` seconds allow. A journal cut short stays ``warmup_journal = pending``
        in the state's meta (logged): the warm-up state itself is committed, only its
        candle rows are missing for reconcile."""
        task, self._journal_task = self._journal_task, None
        if task is not None:
            task.cancel()
        journal, self._journal = self._journal, None
        if journal is None:
            return
        deadline = None if within_s is None else time.monotonic() + within_s
        written = 0
        try:
            for n in journal:
                written += n
                if deadline is not None and time.monotonic() > deadline:
                    journal.close()
                    log.warning("warmup_journal_incomplete", written_at_stop=written,
                                candles=self.warm.n_bars if self.warm else None,
                                reason="stopped while journaling the warm-up")
                    break
        except sqlite3.Error as exc:
            self._fail("state_write_failed", exc)

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
                try:
                    self.store.record_late(candle)
                except sqlite3.Error as exc:
                    self._fail("state_write_failed", exc)
                    return
                log.warning("candle_late", symbol=candle.symbol, ts=candle.ts,
                            origin=candle.origin)
            return
        if verdict != "ok":
            log.warning("candle_rejected", verdict=verdict, symbol=candle.symbol, ts=candle.ts)
            return
        if self._defer_gc:
            defer_collection()  # until the commit (daemon.memory): a no-op after the first
        # Step right here (no await): the lowest close-to-commit latency.
        self._drain()

    # ---- stepping ----------------------------------------------------------------------
    def _drain(self) -> None:
        if self._failed is not None or self.assembler is None:
            return
        stepped = False
        try:
            for sl in self.assembler.pop_ready():
                self._step(sl)
                stepped = True
        except Exception as exc:  # noqa: BLE001 - a failed step/commit stops the daemon
            self._fail("slice_failed", exc)
        if stepped:
            resume_collection()  # after the commit: what the burst deferred runs now

    def _fail(self, event: str, exc: BaseException) -> None:
        """A state write (or step) failed: log it, stop, and make :meth:`run` raise
        :class:`SliceFailedError` (exit 1) once the feeds are down."""
        log.error(event, error=repr(exc), exc_info=True)
        if self.ops is not None:
            self.ops.on_write_error(type(exc).__name__)
        if self._failed is None:
            self._failed = exc
        self.stop()

    def _step(self, sl: Slice) -> None:
        if self.warm is not None and not self.warm.finished and self.warm.end is not None:
            self._finish_warmup()  # the first slice after t0 needs the warmed state
            if self._failed is not None:
                raise self._failed
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
        # Live (READY=1) means caught up: a trading slice of the newest closed bar, not the
        # first of a catch-up backlog (see _caught_up).
        going_live = (trade and not self.live and self._caught_up(sl.ts)
                      and self._streams_delivering())
        if (self._ckpt_slices >= self.cfg.checkpoint_every
                or time.monotonic() - self._ckpt_at >= self.cfg.checkpoint_every_s
                or going_live):
            # After the commit, outside the close-to-commit path; its own transaction.
            self._checkpoint(sl.ts)
            self.store.checkpoint_wal()  # the state blobs are the WAL's bulk
        else:
            self.store.checkpoint_wal(self.cfg.wal_checkpoint_every)
        self.fills_written += len(rows)
        if going_live:
            self._go_live(sl.ts)
        for r in rows:
            log.info("fill", **r)
            if self.ops is not None:
                self.ops.on_fill(r["symbol"], r["side"], r["reason"], r)
        if self.ops is not None:
            self.ops.on_slice(sl.ts + self.cfg.tf_ms, now - t_start, bool(sl.missing))
        if self.commit_hook is not None:
            self.commit_hook(sl, now)
        stop_at = self.cfg.stop_after_ts
        if stop_at is not None and sl.ts >= stop_at:
            log.info("replay_done", last_ts=sl.ts)
            self.stop()

    # ---- live = caught up ----------------------------------------------------------------
    def _caught_up(self, ts: int) -> bool:
        """True when slice ``ts`` is the newest closed bar any feed knows of: nothing
        closed after it is waiting for REST catch-up."""
        sup = self.supervisor
        horizons = [f.forming_ts for f in sup.feeds if f.forming_ts is not None] if sup else []
        return not horizons or ts + self.cfg.tf_ms >= max(horizons)

    def _caught_up_idle(self) -> bool:
        """Warm-up or catch-up done with no bar owed (e.g. a restart within the bar it
        stopped in): every feed started and owes nothing, no slice is pending, and the
        next slice trades. Live now rather than a whole bar later (TimeoutStartSec)."""
        sup, last = self.supervisor, self.store.last_ts
        if sup is None or self.t0 is None or last is None or last + self.cfg.tf_ms < self.t0:
            return False
        if self.assembler is None or self.assembler.pending() or not self._streams_delivering():
            return False
        return all(f.next_ts is not None and f.forming_ts is not None and not f.busy
                   and f.next_ts >= f.forming_ts for f in sup.feeds)

    def _streams_delivering(self) -> bool:
        """Every feed's websocket stream delivered a frame and is not down: live means every
        stream delivers (500 streams once went live with ~100 subscribed, DESIGN.md)."""
        sup = self.supervisor
        return sup is not None and all(f.updates > 0 and not f.stream_down for f in sup.feeds)

    def _go_live(self, ts: int) -> None:
        self.live = True
        self.live_ts = ts
        log.info("live", ts=ts)
        if self.cfg.release_memory:
            # Start-up garbage out, start-up survivors frozen (daemon.memory); after the
            # commit, a bar period before the next slice is due.
            mem = release_memory()
            log.info("memory_released", **{k: v and round(v, 1) for k, v in mem.items()})
        self._defer_gc = self.cfg.defer_gc
        if self.ops is not None:
            self.ops.ready()

    # ---- status ------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Fields for the heartbeat: feeds, reconnects, pending slices."""
        sup = self.supervisor
        feeds = sup.feeds if sup else []
        return {
            "live": self.live,
            "slices_stepped": self.slices_stepped,
            "fills_this_run": self.fills_written,
            "late": self.late,
            "pending_slices": len(self.assembler.pending()) if self.assembler else 0,
            "reconnects": sum(f.reconnects for f in feeds),
            "backfills": sum(f.backfills for f in feeds),
            "feed_restarts": sup.restarts if sup else 0,
            "watchdog_fires": sup.watchdog_fires if sup else 0,
        }
