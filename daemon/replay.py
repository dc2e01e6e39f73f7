"""Replay: paper-trade stored history through the exact live path.

The emulator (``tandem.daemon.emulator``) serves the history over Binance's wire protocol on
127.0.0.1; the daemon connects to it with the real ccxt.pro client, exactly as it would to
the exchange. Two pacings:

* **fast** (default): the virtual clock moves one bar as soon as every feed has delivered
  the previous one — as fast as the live path can go, deterministic;
* ``speed=x``: the emulator plays in wall time × ``x``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tandem.daemon.app import Daemon
from tandem.daemon.emulator.market import MarketData
from tandem.daemon.emulator.server import Emulator
from tandem.daemon.logconfig import get_logger
from tandem.daemon.state import StateStore

log = get_logger("replay")


async def wait_subscribed(emu: Emulator, n_streams: int, timeout_s: float = 30.0,
                          daemon: Daemon | None = None) -> None:
    """Wait until the emulator has ``n_streams`` subscriptions (the daemon is listening).

    With ``daemon``, the timeout counts from when its feeds started: a cold start compiles
    the core first (20-60 s), which once ran out this wait before a feed existed."""
    deadline = time.monotonic() + timeout_s
    while len(emu.subscriptions()) < n_streams:
        if daemon is not None and daemon.supervisor is None:
            deadline = time.monotonic() + timeout_s
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(emu.subscriptions())}/{n_streams} streams subscribed")
        await asyncio.sleep(0.005)


async def wait_delivered(daemon: Daemon, closed_ts: int, timeout_s: float) -> bool:
    """Wait until every feed delivered (or skipped as a gap) the bar ``closed_ts`` and the
    slice it completes was stepped. False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sup = daemon.supervisor
        if sup is not None and all(f.next_ts is not None and f.next_ts > closed_ts
                                   for f in sup.feeds):
            asm = daemon.assembler
            if asm is not None and not any(ts <= closed_ts for ts in asm.pending()):
                return True
        if daemon._stop.is_set():
            return True
        await asyncio.sleep(0.001)
    return False


async def run_replay(
    daemon: Daemon,
    market: MarketData,
    start_ts: int,
    end_ts: int,
    *,
    speed: float | None = None,
    updates_per_bar: int = 1,
    on_emulator: Callable[[Emulator], None] | None = None,
    on_bar: Callable[[Emulator, int], Awaitable[None]] | None = None,
    bar_timeout_s: float = 30.0,
    emulator_kwargs: dict | None = None,
    emulator_cls: type[Emulator] | None = None,
) -> Emulator:
    """Serve ``market`` from ``start_ts`` (first tradable bar's open) and play to ``end_ts``
    (exclusive: the last bar played opens at ``end_ts - tf``); run ``daemon`` against it.

    ``on_bar(emu, k)`` is awaited before the ``k``-th bar is played (fast mode): the hook
    tests use to inject faults at chosen moments. ``emulator_kwargs``: e.g. the exchange's
    limits (:class:`Emulator`: message rate, streams, connection lifetime, REST weight).
    ``emulator_cls``: the venue's wire protocol; None = the one of ``daemon.cfg.exchange_id``
    (:func:`emulator_class`)."""
    tf = market.tf_ms
    last_bar = end_ts - tf
    daemon.cfg.stop_after_ts = last_bar
    daemon.cfg.t0 = start_ts  # replay knows its first tradable bar: no race on the first update
    if emulator_cls is None:
        emulator_cls = emulator_class(daemon.cfg.exchange_id)
    emu = emulator_cls(market, start=start_ts, updates_per_bar=updates_per_bar,
                       **(emulator_kwargs or {}))
    await emu.start()
    daemon.cfg.rest_url, daemon.cfg.ws_url = emu.rest_url, emu.ws_url
    if on_emulator is not None:
        on_emulator(emu)
    task = asyncio.create_task(daemon.run(), name="daemon")
    try:
        await _race(task, wait_subscribed(emu, len(daemon.cfg.symbols), daemon=daemon))
        if speed is not None:
            emu.start_realtime(speed=speed, stop_at=end_ts + tf)
            await task
            return emu
        k = 0
        while not task.done() and emu.now < end_ts + tf:
            if on_bar is not None:
                await _race(task, on_bar(emu, k))
            k += 1
            await emu.advance(1)
            # After advance(1) the clock sits on a bar boundary B: the bar [B - tf, B) closed.
            closed = emu.now - tf
            await _race(task, wait_delivered(daemon, closed, bar_timeout_s))
        await task
    finally:
        if not task.done():
            daemon.stop()
            await asyncio.gather(task, return_exceptions=True)
        await emu.stop()
    return emu


def resume_conflict(store: StateStore, market: MarketData, start_ts: int,
                    end_ts: int) -> str | None:
    """Why the replay journal in ``store`` cannot be continued with this replay (``market``
    from ``start_ts`` to ``end_ts``), or None when it can.

    A replay resumes an existing ``--db`` after its last committed slice (a crash, a
    SIGTERM, a longer ``--to``). Without this check a journal of OTHER candles (another
    ``--seed``, ``--bars``, ``--data`` or ``--from``) was silently continued — or, when it
    already reached the end, its old summary and fingerprint printed as this run's, exit 0.
    So: the same first tradable bar, nothing committed past this replay's last bar, and
    every candle the journal consumed identical to this data's bar (exact floats: the
    emulator serves shortest round-trip decimals)."""
    import numpy as np
    from tandem.core.utc import iso_from_ms

    t0 = store.t0
    if t0 is not None and t0 != start_ts:
        return (f"its replay starts trading at {iso_from_ms(t0)}, this one at "
                f"{iso_from_ms(start_ts)} (another --from, --data or --warmup-bars)")
    last = store.last_ts
    if last is not None and last > end_ts - market.tf_ms:
        return (f"it holds slices up to {iso_from_ms(last)}, past this replay's last bar "
                f"{iso_from_ms(end_ts - market.tf_ms)} (another --to or --bars)")
    rows = store.conn.execute(
        "SELECT symbol, ts, open, high, low, close, volume FROM candles ORDER BY symbol, ts"
    ).fetchall()
    by_symbol: dict[str, list[tuple]] = {}
    for r in rows:
        by_symbol.setdefault(r[0], []).append(r[1:])
    for symbol, got in sorted(by_symbol.items()):
        arr = np.array(got, dtype=np.float64)
        ts = arr[:, 0].astype(np.int64)
        have = market.ts.get(symbol)
        if have is None or not len(have):
            return f"it consumed {symbol} candles that this data does not have"
        i = np.minimum(np.searchsorted(have, ts), len(have) - 1)
        want = market.ohlcv[symbol][i]
        same = (have[i] == ts) & ((want == arr[:, 1:]) |
                                  (np.isnan(want) & np.isnan(arr[:, 1:]))).all(axis=1)
        if not same.all():
            k = int(np.argmin(same))
            return (f"its {symbol} candle at {iso_from_ms(int(ts[k]))} differs from this "
                    f"data's (another --seed, --bars or --data)")
    return None


def emulator_class(exchange_id: str) -> type[Emulator]:
    """The emulator speaking ``exchange_id``'s wire protocol (every supported venue has
    one: that is how it is tested; see tandem.daemon.venues)."""
    from tandem.daemon.emulator.bybit import BybitEmulator
    from tandem.daemon.emulator.okx import OkxEmulator

    classes: dict[str, type[Emulator]] = {"binance": Emulator, "bybit": BybitEmulator,
                                          "okx": OkxEmulator}
    if exchange_id not in classes:
        raise ValueError(f"no emulator speaks {exchange_id!r}; emulated: {', '.join(classes)}")
    return classes[exchange_id]


async def _race(task: asyncio.Task, aw) -> None:
    """Await ``aw`` unless ``task`` finishes first (then re-raise its error, if any)."""
    other = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task, other}, return_when=asyncio.FIRST_COMPLETED)
    if other not in done:
        other.cancel()
    if task in done and task.exception() is not None:
        raise task.exception()
    if other in done:
        other.result()
