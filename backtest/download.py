"""Download closed candles from an exchange's REST API into the candle store.

``download(exchange, symbols, timeframe, since, store)`` pages through ccxt
``fetch_ohlcv`` and appends every page to :class:`tandem.core.store.CandleStore` as it arrives,
so an interrupted download keeps what it got and the next run **resumes** after the last
stored bar (the store's first-write-wins dedup makes any overlap harmless).

Rules:

* **Explicit windows.** Each request asks for ``[cursor, cursor + limit bars)`` with ccxt's
  unified ``until`` (Binance ``endTime``, Bybit ``end``, OKX ``after``), ``limit`` clamped
  to the venue's page (:data:`PAGE_MAX`). A bare ``since`` is not enough: Bybit answers it
  with the newest ``limit`` bars up to now (ccxt issue 16551), which once stored only the
  latest page and exited 0. An empty window is a gap (downtime, a pause, before the
  listing): the download goes on to the next window until it reaches the last closed bar
  or ``until`` — on Binance, which lists the oldest bars from a bare ``since``, one request
  finds the bar after the gap instead (:data:`SINCE_LISTS_OLDEST`).

* **Only closed bars are stored.** The exchange's clock is read once per symbol before the
  first page (``fetch_time``; the local clock if the exchange has none). A bar is kept iff
  ``ts + timeframe <= that time``. So the still-forming last candle of ``fetch_ohlcv`` is
  always dropped, and a download fetches exactly what had closed when it started.
* ``since`` is inclusive and ``until`` exclusive, both on the bar open time (like the
  store's ``read``). ``since`` only matters for a symbol with nothing stored yet, or when
  it lies after the last stored bar.
* **Rate limits**: the client runs with ccxt's ``enableRateLimit`` (forced on).
* **Transient errors** (ccxt ``OperationFailed``: network errors, timeouts, 5xx,
  ``-1001``) are retried with exponential back-off; after ``max_retries`` a
  :class:`DownloadError` says how far the download got (re-run to resume).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

# ccxt (≈1.5 s to import), asyncio, tqdm and the candle store (pandas, pyarrow) are imported
# where they are used, so that building the ``tandem-backtest`` parser (every command, every
# ``--help``) does not pay for them.
if TYPE_CHECKING:
    from tandem.core.store import CandleStore, TimeLike

log = structlog.get_logger(__name__)

PageHook = Callable[[str, list[list[float]]], None]


#: Most rows one klines request gets, per venue; ccxt clamps ``limit`` to these itself
#: (binance.py and bybit.py: 1000; okx.py: 300, OKX's candles and history-candles), so a
#: wider window would come back cut.
PAGE_MAX = {"binance": 1000, "bybit": 1000, "okx": 300}
#: Venues whose ccxt ``until`` excludes a bar opening at that ms: okx sends it as ``after``
#: (rows with ts < after), while binance's ``endTime`` and bybit's ``end`` include it.
UNTIL_EXCLUSIVE = frozenset({"okx"})
#: Venues that answer a bare ``since`` with the OLDEST bars from it (Binance's
#: ``startTime``): after an empty window, one such request finds the next bar, however long
#: the gap. Elsewhere every empty window costs a request (a 1m ``--since`` a year before a
#: listing: 526 of them per symbol).
SINCE_LISTS_OLDEST = frozenset({"binance"})


class DownloadError(RuntimeError):
    """The download stopped (bad symbol, or transient errors beyond the retry budget)."""


async def download_async(
    exchange: Any,
    symbols: list[str] | tuple[str, ...],
    timeframe: str,
    since: TimeLike,
    store: CandleStore | str | Path,
    until: TimeLike = None,
    progress: bool = True,
    *,
    rest_url: str | None = None,
    limit: int = 1000,
    max_retries: int = 5,
    retry_delay: float = 1.0,
    on_page: PageHook | None = None,
) -> dict[str, int]:
    """Async core of :func:`download`; returns new bars stored per symbol.

    ``exchange`` is a ccxt async / pro client (left open) or an exchange id (a client is
    created with :func:`tandem.core.exchange.create_exchange`, optionally at ``rest_url``, and
    closed afterwards). ``on_page(symbol, rows)`` is called after each stored page.
    """
    from tandem.core.exchange import create_exchange
    from tandem.core.store import CandleStore, to_ms

    own = isinstance(exchange, str)
    client = create_exchange(exchange, flavor="async", rest_url=rest_url) if own else exchange
    client.enableRateLimit = True  # never hammer the API, whatever the caller configured
    if not isinstance(store, CandleStore):
        store = CandleStore(store, exchange=client.id, timeframe=timeframe)
    try:
        await _retry(client.load_markets, max_retries, retry_delay, "load_markets")
        unknown = [s for s in symbols if s not in client.markets]
        if unknown:
            raise DownloadError(f"{client.id} has no market {', '.join(unknown)}")
        added: dict[str, int] = {}
        for symbol in symbols:
            added[symbol] = await _download_symbol(
                client, symbol, timeframe, to_ms(since), to_ms(until), store,
                progress, limit, max_retries, retry_delay, on_page,
            )
        return added
    finally:
        if own:
            await client.close()


def download(
    exchange: Any,
    symbols: list[str] | tuple[str, ...],
    timeframe: str,
    since: TimeLike,
    store: CandleStore | str | Path,
    until: TimeLike = None,
    progress: bool = True,
    **kwargs: Any,
) -> dict[str, int]:
    """Download closed ``timeframe`` candles of ``symbols`` into ``store`` (see module doc).

    Blocking wrapper around :func:`download_async` (runs its own event loop, so pass an
    exchange id, e.g. ``"binance"``, plus optional ``rest_url=``). Returns new bars per
    symbol.
    """
    import asyncio

    return asyncio.run(
        download_async(exchange, symbols, timeframe, since, store, until, progress, **kwargs)
    )


async def _download_symbol(
    client: Any,
    symbol: str,
    timeframe: str,
    since: int | None,
    until: int | None,
    store: CandleStore,
    progress: bool,
    limit: int,
    max_retries: int,
    retry_delay: float,
    on_page: PageHook | None,
) -> int:
    from tandem.core.store import timeframe_ms

    tf = timeframe_ms(timeframe)
    last = store.last_ts(symbol, timeframe=timeframe)
    if since is None and last is None:
        raise DownloadError(f"{symbol}: nothing stored yet, so 'since' is required")
    cursor = last + tf if last is not None else since
    if since is not None:
        cursor = max(cursor, since)
    server_now = None
    if client.has.get("fetchTime"):
        server_now = await _retry(client.fetch_time, max_retries, retry_delay, f"{symbol} time")
    if not server_now or server_now <= 0:  # no clock, or a 0 / missing field: ours
        server_now = client.milliseconds()
    server_now = int(server_now)
    # Bars opening before `end` have closed by server_now (ts + tf <= server_now) and lie
    # before `until`: the forming bar is never even asked for.
    end = server_now - tf + 1 if until is None else min(server_now - tf + 1, until)
    page = min(limit, PAGE_MAX.get(client.id, limit))
    first = cursor
    from tqdm import tqdm

    bar = tqdm(total=max(0, -(-(end - cursor) // tf)), desc=symbol, unit="bar",
               disable=not progress, leave=False)
    added = 0
    log.info("download_start", symbol=symbol, timeframe=timeframe, cursor=cursor, resume=last is not None)
    try:
        # Explicit windows [cursor, cursor + page bars): a venue that answers a bare `since`
        # with the NEWEST bars up to now (Bybit) would otherwise skip the history, and an
        # empty window is a gap (downtime, a pause, before the listing), not the end.
        while cursor < end:
            hi = min(cursor + page * tf, end)
            rows = await _window(client, symbol, timeframe, tf, cursor, hi, page,
                                 max_retries, retry_delay, added)
            if rows:
                n = store.append(symbol, rows, timeframe=timeframe)
                added += n
                if on_page is not None:
                    on_page(symbol, rows)
            # After the last row, not the window: a venue that lists fewer rows than asked
            # (its oldest ones) gets the rest asked again; an empty window is passed.
            if rows:
                cursor = int(rows[-1][0]) + tf
            elif client.id in SINCE_LISTS_OLDEST:
                nxt = await _next_bar(client, symbol, timeframe, hi, max_retries, retry_delay,
                                      added)
                cursor = end if nxt is None else max(hi, nxt)
            else:
                cursor = hi
            bar.update(min(bar.total, (cursor - first) // tf) - bar.n)
    finally:
        bar.close()
    log.info("download_done", symbol=symbol, timeframe=timeframe, added=added,
             last_ts=store.last_ts(symbol, timeframe=timeframe))
    return added


async def _window(client: Any, symbol: str, timeframe: str, tf: int, lo: int, hi: int,
                  page: int, max_retries: int, retry_delay: float, done: int) -> list[list]:
    """The bars with ``lo <= ts < hi`` (at most ``page``), oldest first.

    When the first row leaves room for a bar before it, that stretch is asked again before
    returning: a venue listing only the newest rows of a window (a page cap below ours:
    Bybit and OKX answer newest first) would otherwise lose them silently; a real gap costs
    one empty request. Ascending order matters: resuming starts after the last stored bar."""
    until = hi if client.id in UNTIL_EXCLUSIVE else hi - 1
    rows = await _retry(
        lambda: client.fetch_ohlcv(symbol, timeframe, since=lo, limit=page,
                                   params={"until": until}),
        max_retries, retry_delay, f"{symbol} klines@{lo}", done=done,
    )
    rows = sorted((r for r in rows if lo <= r[0] < hi), key=lambda r: r[0])
    if rows and rows[0][0] - lo >= tf:
        head = await _window(client, symbol, timeframe, tf, lo, int(rows[0][0]), page,
                             max_retries, retry_delay, done)
        rows = head + rows
    return rows


async def _next_bar(client: Any, symbol: str, timeframe: str, since: int, max_retries: int,
                    retry_delay: float, done: int) -> int | None:
    """Open time of the venue's first bar at or after ``since`` (None: there is none), for
    a venue listing the oldest bars from a bare ``since`` (:data:`SINCE_LISTS_OLDEST`)."""
    rows = await _retry(
        lambda: client.fetch_ohlcv(symbol, timeframe, since=since, limit=1),
        max_retries, retry_delay, f"{symbol} next bar@{since}", done=done,
    )
    later = [int(r[0]) for r in rows if r[0] is not None and r[0] >= since]
    return min(later) if later else None


async def _retry(
    call: Callable[[], Any], max_retries: int, delay: float, what: str, done: int = 0
) -> Any:
    """Await ``call()``, retrying ccxt's transient errors with exponential back-off."""
    import asyncio

    import ccxt

    for attempt in range(max_retries + 1):
        try:
            return await call()
        except ccxt.OperationFailed as exc:  # NetworkError, RequestTimeout, 5xx, -1001 ...
            if attempt == max_retries:
                raise DownloadError(
                    f"{what}: gave up after {max_retries} retries ({type(exc).__name__}: {exc}); "
                    f"{done} new bars were stored, re-run to resume"
                ) from exc
            wait = delay * 2**attempt
            log.warning("download_retry", what=what, attempt=attempt + 1, wait_s=wait,
                        error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")
