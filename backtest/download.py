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


# --------------------------------------------------------------------------- CLI glue

DOWNLOAD_HELP = "download closed candles from the exchange into the Parquet candle store"

DOWNLOAD_DESCRIPTION = """\
Download closed OHLCV candles with ccxt's REST fetch_ohlcv into the candle store
(<store>/<exchange>/<BASE-QUOTE>/<timeframe>.parquet).

Paginated (--limit bars per request), rate-limited (ccxt enableRateLimit), incremental:
a symbol that already has bars resumes after its last stored bar, so re-running after an
interruption neither refetches nor duplicates anything. The still-forming candle is never
stored. Transient errors (network, timeouts, HTTP 5xx) are retried with back-off.

examples:
  tandem-backtest download --symbols BTC/USDT,ETH/USDT --timeframe 1h --since 2024-01-01
  tandem-backtest download --symbols BTC/USDT --since 2024-01-01 --until 2024-07-01 --store data/
  tandem-backtest download --symbols BTC/USDT --since 2021-01-01 \\
      --rest-url http://127.0.0.1:8080/api/v3      # any server speaking Binance's REST
  tandem-backtest download --exchange okx --symbols BTC/USDT --since 2024-01-01 \\
      --rest-url http://127.0.0.1:8081             # a server speaking OKX's (or Bybit's)
"""


def _symbol_list(text: str) -> list[str]:
    out = [part.strip() for part in text.split(",") if part.strip()]
    if not out:
        raise ValueError("empty symbol list")
    return out


def add_download_arguments(parser: Any) -> None:
    """Add the ``download`` options to an ``argparse`` (sub)parser (see :func:`cli_main`)."""
    parser.add_argument("--exchange", default="binance", help="ccxt exchange id (default: binance)")
    parser.add_argument("--symbols", type=_symbol_list, required=True,
                        help="comma-separated ccxt unified symbols, e.g. BTC/USDT,ETH/USDT")
    parser.add_argument("--timeframe", default="1h", help="candle timeframe (default: 1h)")
    parser.add_argument("--since", default=None,
                        help="first bar open time to fetch, inclusive: a UTC date or epoch ms; "
                        "needed for symbols with nothing stored yet")
    parser.add_argument("--until", default=None,
                        help="stop before this bar open time (exclusive); default: now")
    parser.add_argument("--data", "--store", dest="data", default=None,
                        help="candle store root folder (default: $TANDEM_DATA_DIR or ./data)")
    parser.add_argument("--rest-url", default=None,
                        help="override the exchange REST base URL (binance, bybit, okx; e.g. "
                        "an emulator's or a testnet's); default: $TANDEM_EXCHANGE_REST_URL or "
                        "the exchange's own")
    parser.add_argument("--limit", type=int, default=1000,
                        help="bars per request, at most the venue's page (binance and bybit "
                        "1000, okx 300; default: 1000)")
    parser.add_argument("--retries", type=int, default=5,
                        help="retries per request on transient errors (default: 5)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def cli_main(args: Any, settings: Any = None, profile: Any = None) -> int:
    """Run ``tandem-backtest download`` from parsed ``args``; returns the exit code.

    Reads (all optional except what the situation needs): ``exchange``, ``symbols`` (list
    or comma string; default ``profile.assets``), ``timeframe`` (default
    ``profile.base_timeframe``), ``since``, ``until``, ``data`` (default
    ``settings.data_dir`` / ``$TANDEM_DATA_DIR`` / ``./data``), ``rest_url`` (default
    ``settings.exchange_rest_url`` / ``$TANDEM_EXCHANGE_REST_URL``), ``limit``, ``retries``,
    ``no_progress``. Exit 0 on success, 1 on a download error, 130 on Ctrl-C.
    """
    import os
    import sys

    def pick(name: str, default: Any = None) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    symbols = pick("symbols", getattr(profile, "assets", None))
    if isinstance(symbols, str):
        symbols = _symbol_list(symbols)
    timeframe = pick("timeframe", getattr(profile, "base_timeframe", None) or "1h")
    exchange = pick("exchange", getattr(profile, "exchange", None) or "binance")
    data = pick("data", getattr(settings, "data_dir", None) or os.environ.get("TANDEM_DATA_DIR") or "data")
    rest_url = pick("rest_url", getattr(settings, "exchange_rest_url", None)
                    or os.environ.get("TANDEM_EXCHANGE_REST_URL") or None)
    if not symbols:
        print("error: no symbols given (use --symbols or a profile)", file=sys.stderr)
        return 1
    problem = _usage_problem(symbols, timeframe, pick("since"), pick("until"),
                             pick("limit", 1000), pick("retries", 5))
    if problem:  # before the exchange is contacted: a typo costs no request (exit 2)
        print(f"error: {problem}", file=sys.stderr)
        return 2
    import ccxt
    from tandem.core.store import CandleStore, CandleStoreError

    try:
        added = download(
            exchange, list(symbols), timeframe, pick("since"),
            CandleStore(data, exchange=exchange, timeframe=timeframe),
            until=pick("until"), progress=not pick("no_progress", False), rest_url=rest_url,
            limit=int(pick("limit", 1000)), max_retries=int(pick("retries", 5)),
        )
    except (DownloadError, CandleStoreError, ccxt.BaseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the bars stored so far are kept; re-run to resume", file=sys.stderr)
        return 130
    for symbol, n in added.items():
        print(f"{symbol}: {n} new bars -> {Path(data) / exchange}")
    return 0


def _usage_problem(symbols: Any, timeframe: str, since: Any, until: Any, limit: Any,
                   retries: Any) -> str | None:
    """What is wrong with the options, or None. They were checked only after the exchange
    answered (exit 1, or a traceback for ``--retries -1``), some never (``--until`` before
    ``--since`` downloaded nothing and exited 0)."""
    from tandem.core.candles import ms_option_problem
    from tandem.core.store import CandleStoreError, symbol_to_filename, to_ms
    from tandem.core.timeframes import TimeframeError, is_fixed_length, timeframe_to_ms

    try:
        timeframe_to_ms(timeframe)
    except TimeframeError as exc:
        return f"--timeframe: {exc}"
    if not is_fixed_length(timeframe):
        # Pages advance by a fixed bar length (a "1M" of 30 days skipped months) and the
        # store checks bars are one timeframe apart: months and years have no such length.
        return (f"--timeframe {timeframe}: months and years have no fixed length; download "
                "1d (or 1w) bars, the store and the backtest aggregate from fixed bars")
    bounds = {}
    for name, value in (("--since", since), ("--until", until)):
        try:
            bounds[name] = to_ms(value)
        except (ValueError, TypeError, OverflowError):
            return f"{name}: not a date: {str(value)[:40]!r} (use e.g. 2024-01-01 or epoch ms)"
        digits = isinstance(value, int) or str(value).strip().lstrip("-").isdigit()
        if digits and (problem := ms_option_problem(bounds[name])) is not None:
            return f"{name} {value} {problem}"  # seconds read as ms fetched from 1970
    if None not in bounds.values() and bounds["--until"] <= bounds["--since"]:
        return f"--until ({until}) must be after --since ({since})"
    for name, value, least in (("--limit", limit, 1), ("--retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            return f"{name} must be an integer >= {least}, got {value!r}"
    for sym in symbols:
        try:
            symbol_to_filename(sym)
        except CandleStoreError as exc:
            return f"--symbols: {exc}"
    return None


run_download_command = cli_main  # older name
