"""Closed-candle feeds over ccxt.pro: one ``watch_ohlcv`` task per symbol, REST backfill,
a connection-level watchdog and a supervisor.

What the ccxt.pro client does not do for us (DESIGN.md, "What we know about ccxt.pro"):

* ``watch_ohlcv`` returns the forming candle and drops Binance's ``x`` flag. We keep ``x``
  by wrapping ``handle_ohlcv`` (:class:`LiveExchangeMixin`): a closing frame's values are
  recorded the moment it is parsed. A bar is also known closed when a newer ``ts`` shows up.
* A reconnect loses candles silently, so every feed tracks ``next_ts`` (the next closed bar
  it owes the engine). When a bar is known closed but no valid closing frame for it was
  seen — after a reconnect, a dropped/late/malformed frame, at warm-up or catch-up — the
  feed fetches it over REST (``fetch_ohlcv``) and drops the forming row.
* A silent socket is never detected by ccxt: the watchdog forces a reconnect with
  ``client.on_error(NetworkError(...))`` when a connection carried no data frame for
  ``watchdog_s`` (server pings do not count).

Per-frame fast path (the close-to-commit latency at 200 streams): ccxt.pro still owns the
connections, subscriptions, pings, reconnects and JSON decoding, and each feed still runs
one ``watch_ohlcv`` task for its (symbol, timeframe) — but a kline frame is handed straight
from the frame handler to its feed (:meth:`CandleFeed.on_ws_kline`), synchronously, instead
of through ccxt's ``ArrayCacheByTimestamp``, future resolution, a task wake-up and a fresh
``watch_ohlcv`` call per frame (~3/4 of the daemon's CPU per frame, profiled). The
``watch_ohlcv`` call then stays pending for the life of the connection: it is how the feed
subscribes and how a disconnect reaches it (as a ``NetworkError``). Anything that needs an
``await`` (the first update's start, REST backfill of a gap) is handed to the feed task.

Candle validity: the one rule of :mod:`tandem.core.candles` (README, "Candle validation"), its
per-bar face :func:`tandem.core.candles.bar_fault` plus the timeframe grid:
* a closing ws frame that fails it is **not trusted**: logged (``ws_candle_invalid``) and
  the bar is fetched over REST instead;
* a REST row that fails it is **dropped** (the bar counts as missing, as in the backtest's
  loaders), logged once per backfill as ``rest_candles_rejected`` with the count, the first
  ts and its reason. Nothing is repaired.
* duplicates, the rule of :func:`tandem.core.candles.clean_candles` (the first *valid* copy):
  a closing frame that fails the rule is not recorded, so a later good closing frame of the
  same bar is (the bar is delivered once: ``next_ts`` moves past it, later copies are
  discarded as stale); a REST page repeating a bar keeps its first valid row
  (:func:`first_valid_rows`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import ccxt
import numpy as np
from tandem.core.candles import bar_fault, bar_fault_codes
from tandem.core.timeframes import bucket_offset_ms
from tandem.daemon.logconfig import get_logger
from tandem.daemon.restbudget import RestBudget
from tandem.daemon.state import ClosedCandle
from tandem.daemon.subscribe import BatchedKlinesMixin
from tandem.daemon.venues import BinanceAdapter, VenueAdapter

log = get_logger("feeds")

Row = list  # [ts, open, high, low, close, volume]


# ---------------------------------------------------------------------------------------
# candle validity
# ---------------------------------------------------------------------------------------
def candle_fault(row: Sequence[Any], tf_ms: int | None = None, grid_offset_ms: int = 0) -> str | None:
    """Why ``row`` is not a valid closed candle, or None: the core rule
    (:func:`tandem.core.candles.bar_fault`), plus the timeframe grid when ``tf_ms`` is given."""
    try:
        ts = int(row[0])
        o, h, lo, c, v = float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5])
    except (TypeError, ValueError, IndexError, OverflowError):
        return "unparseable"
    if ts < 0:
        return "negative ts"
    if tf_ms is not None and (ts - grid_offset_ms) % tf_ms:
        return "off the timeframe grid"
    return bar_fault(o, h, lo, c, v)


def first_valid_rows(rows: Sequence[Row], tf_ms: int | None = None,
                     grid_offset_ms: int = 0) -> dict[int, Row]:
    """One row per ts of REST ``rows``: the first that passes :func:`candle_fault`, else the
    first (then dropped as bad) — the duplicate rule of :func:`tandem.core.candles.clean_candles`.
    Was: the last copy, so a bad repeat of a good bar replaced it and the bar was lost."""
    out: dict[int, Row] = {}
    for r in rows:
        ts = int(r[0])
        held = out.get(ts)
        if held is None or (candle_fault(held, tf_ms, grid_offset_ms) is not None
                            and candle_fault(r, tf_ms, grid_offset_ms) is None):
            out[ts] = r
    return out


# ---------------------------------------------------------------------------------------
# the ccxt.pro exchange, with the hooks we need
# ---------------------------------------------------------------------------------------
class LiveExchangeMixin(BatchedKlinesMixin):
    """Mix into a ccxt.pro exchange class (see :func:`live_exchange_class`).

    * records closing kline frames (``x: true``) per (symbol, timeframe) in ``closed_rows``;
    * skips, and logs, klines for unknown symbols or streams we did not subscribe;
    * survives malformed frames (a JSON parse error inside ccxt's receive callback would
      otherwise stop the connection's receive loop silently);
    * stamps ``last_data_at[url]`` on every data frame for the watchdog (not on a venue's
      pong message: Bybit and OKX answer pings with messages, see ``VenueAdapter.is_pong``);
    * subscribes klines in batches over several connections (:mod:`tandem.daemon.subscribe`);
    * on Binance's ``serverShutdown`` event (the connection is about to end) reconnects that
      connection at once: its feeds resubscribe and fetch over REST what closed meanwhile.
    """

    def _live_init(self, rest_budget: RestBudget | None = None,
                   venue: VenueAdapter | None = None, **batching: int) -> None:
        #: the venue-specific edge (daemon.venues): frames, stream names, limits, REST paging
        self.venue = venue if venue is not None else BinanceAdapter()
        self._batched_init(**batching)
        self.server_shutdowns = 0
        #: klines requests go through this weight budget (ccxt's own throttler is off)
        self.rest_budget = rest_budget
        self.closed_rows: dict[tuple[str, str], dict[int, Row]] = {}
        self.subscribed: set[tuple[str, str]] = set()
        self.last_data_at: dict[str, float] = {}
        #: ``(symbol, timeframe, bar_ts)`` of each valid closing frame, as it is handled
        #: (bench/daemon.py splits close-to-commit latency there)
        self.frame_hook: Callable[[str, str, int], None] | None = None
        self.skipped_frames = 0
        #: (symbol, timeframe) -> ``sink(bar_ts)`` called for each kline frame of that stream
        #: instead of ccxt's handle_ohlcv (the fast path; see the module docstring)
        self.kline_sinks: dict[tuple[str, str], Callable[[int], None]] = {}
        self._routes: dict[tuple[str, str], tuple] = {}  # (market id, interval) -> route

    async def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        # a fresh dict per call: ccxt may write into it (see BatchedKlinesMixin.watch_ohlcv)
        params = {} if params is None else dict(params)
        budget = self.rest_budget
        if budget is None:
            return await self._fetch_klines(symbol, timeframe, since, limit, params)
        async with budget:
            await budget.acquire(self.venue.klines_weight)
            try:
                return await self._fetch_klines(symbol, timeframe, since, limit, params)
            # Binance 429 / 418, OKX 429 (50011), Bybit 403. RateLimitExceeded is NOT a
            # DDoSProtection in ccxt 4.5 (both are NetworkErrors): name both.
            except (ccxt.DDoSProtection, ccxt.RateLimitExceeded):
                headers = self.last_response_headers or {}
                pause = self.venue.rate_limit_pause_s
                try:
                    retry = float(headers.get("Retry-After") or headers.get("retry-after")
                                  or pause)
                except (TypeError, ValueError):
                    retry = pause
                budget.pause(retry)
                raise

    async def _fetch_klines(self, symbol, timeframe, since, limit, params):
        """ccxt's ``GET /api/v3/klines`` request (its signing, errors, timeouts), parsed here:
        ccxt's generic ``parse_ohlcv`` (safe_number per field) was ~1/4 of the replay's CPU.
        Same values: a field is ``float(text)`` either way; one that does not parse is None
        (the row then fails :func:`candle_fault`, as with ccxt's parser)."""
        if self.markets is None:
            await self.load_markets()
        market = self.market(symbol)
        if params or market.get("type") != "spot":
            return await super().fetch_ohlcv(symbol, timeframe, since, limit, params)
        # the venue's clock as ccxt knows it (timeDifference: set when ccxt measured it)
        now_ms = self.milliseconds() - int(self.options.get("timeDifference") or 0)
        name, request = self.venue.klines_call(
            market, self.safe_string(self.timeframes, timeframe, timeframe), since, limit,
            now_ms)
        response = await getattr(self, name)(request)
        return self.venue.rest_rows(response)

    def client(self, url):  # noqa: D401 - ccxt API
        existed = url in (self.clients or {})
        client = super().client(url)
        if not existed:
            _guard_client(client)
        return client

    def handle_message(self, client, message):
        venue = self.venue
        if not venue.is_pong(message):  # a pong message shows the socket, not its data
            self.last_data_at[client.url] = time.monotonic()
        if venue.is_kline_frame(message):
            # A raw-stream kline event: binance.handle_message would probe it for envelopes,
            # errors and ids and then call handle_ohlcv; go there directly.
            try:
                return self.handle_ohlcv(client, message)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
                self.skipped_frames += 1
                log.warning("ws_frame_skipped", reason=repr(exc), frame=str(message)[:200])
                return
        if type(message) is dict and message.get("e") == "serverShutdown":
            self.server_shutdowns += 1
            log.info("server_shutdown", url=client.url)
            client.on_error(ccxt.NetworkError("serverShutdown: the exchange ends this connection"))
            return
        if not isinstance(message, dict | list):
            if self.venue.is_control_text(message):
                return super().handle_message(client, message)
            self.skipped_frames += 1
            log.warning("ws_frame_skipped", reason="not a JSON object", frame=str(message)[:200])
            return
        try:
            return super().handle_message(client, message)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the stream
            self.skipped_frames += 1
            log.warning("ws_frame_skipped", reason=repr(exc), frame=str(message)[:200])

    def handle_ohlcv(self, client, message):
        klines = self.venue.parse_klines(message)
        if klines is None:
            self.skipped_frames += 1
            log.warning("ws_frame_skipped", reason="no kline in the frame",
                        frame=str(message)[:200])
            return
        fallback = False
        for kline in klines:  # Binance: one per frame; Bybit may batch several
            if self._on_kline(kline, message) is False:
                fallback = True
        if not fallback:
            return
        try:
            return super().handle_ohlcv(client, message)
        except Exception as exc:  # noqa: BLE001
            self.skipped_frames += 1
            log.warning("ws_frame_skipped", reason=repr(exc), frame=str(message)[:200])

    def _on_kline(self, kline, message) -> bool | None:  # noqa: ANN001 - hot path
        """Record a closed kline and hand its bar to the stream's feed. True: handled (the
        fast path), False: no feed sink yet (ccxt's own handler must see the frame), None:
        skipped (logged)."""
        market_id, interval = kline.market_id, kline.interval
        route = None
        if type(market_id) is str and type(interval) is str:
            route = self._routes.get((market_id, interval))
        if route is None:
            route = self._route(market_id, interval)
            if route is None:
                return None  # skipped and logged
        symbol, timeframe, key, sink = route
        if sink is not None:
            try:
                bar_ts = int(kline.bar_ts)
            except (TypeError, ValueError):
                self.skipped_frames += 1
                log.warning("ws_frame_skipped", reason="kline without a valid open time",
                            frame=str(message)[:200])
                return None
        if kline.closed:
            row = kline.row
            # The adapter parsed the row (int ts, float values): the core rule directly,
            # without candle_fault's second int/float pass (~1 µs of a closing frame).
            fault = ("unparseable" if row is None else "negative ts" if row[0] < 0
                     else bar_fault(row[1], row[2], row[3], row[4], row[5]))
            if fault is None:
                self.closed_rows.setdefault(key, {})[row[0]] = row
                if self.frame_hook is not None:
                    self.frame_hook(symbol, timeframe, row[0])
            else:
                # Not trusted: the feed will fetch this bar over REST (see module doc).
                log.warning("ws_candle_invalid", symbol=symbol, ts=kline.bar_ts, fault=fault)
        if sink is not None:
            sink(bar_ts)  # the fast path: no ccxt cache, no future, no task hop
            return True
        return False

    def _route(self, market_id, interval):  # noqa: ANN001 - straight from the frame
        """``(symbol, timeframe, key, sink)`` of a kline stream, or None (logged) for an
        unknown symbol or a stream we did not subscribe. Cached per (market id, interval)
        once a feed owns the stream: the lookups below cost ~1/4 of a frame's handling."""
        market = (self.markets_by_id or {}).get(market_id) if market_id else None
        if not market:
            self.skipped_frames += 1
            log.warning("kline_unknown_symbol", market_id=market_id)
            return None
        symbol = market[0]["symbol"] if isinstance(market, list) else market["symbol"]
        timeframe = self.find_timeframe(interval)
        key = (symbol, timeframe)
        if key not in self.subscribed:
            self.skipped_frames += 1
            log.warning("kline_unsubscribed", symbol=symbol, timeframe=timeframe)
            return None
        sink = self.kline_sinks.get(key)
        route = (symbol, timeframe, key, sink)
        if sink is not None and type(market_id) is str and type(interval) is str:
            self._routes[(market_id, interval)] = route
        return route

    def add_kline_sink(self, key: tuple[str, str], sink: Callable[[int], None]) -> None:
        """Route the frames of stream ``key`` = (symbol, timeframe) to ``sink(bar_ts)``."""
        self.kline_sinks[key] = sink
        self._routes.clear()


def _guard_client(client) -> None:
    """Make a ccxt ws client skip frames it cannot decode instead of dying on them."""
    original = client.handle_text_or_binary_message

    def guarded(data):
        try:
            return original(data)
        except ValueError as exc:  # json decode errors subclass ValueError
            log.warning("ws_malformed_frame", error=str(exc)[:200], frame=str(data)[:200])

    client.handle_text_or_binary_message = guarded


_CLASS_CACHE: dict[type, type] = {}


def live_exchange_class(base: type) -> type:
    """``LiveExchangeMixin`` + a ccxt.pro exchange class (cached per base class)."""
    if base not in _CLASS_CACHE:
        _CLASS_CACHE[base] = type(f"Live{base.__name__}", (LiveExchangeMixin, base), {})
    return _CLASS_CACHE[base]


def make_live_exchange(base: type, config: dict[str, Any], rest_budget: RestBudget | None = None,
                       venue: VenueAdapter | None = None, **batching: int):
    """Instantiate the live exchange from a ccxt.pro class and a ccxt config dict;
    ``batching``: see :meth:`tandem.daemon.subscribe.BatchedKlinesMixin._batched_init`. With a
    ``rest_budget``, klines requests are paced by it instead of ccxt's throttler."""
    ex = live_exchange_class(base)(config)
    ex._live_init(rest_budget=rest_budget, venue=venue, **batching)
    if rest_budget is not None:
        ex.enableRateLimit = False
    return ex


# ---------------------------------------------------------------------------------------
# one feed per symbol
# ---------------------------------------------------------------------------------------
class CandleFeed:
    """Delivers every closed bar of one symbol exactly once, in order, to ``emit``.

    ``start(first_forming_ts) -> next_ts`` is awaited once, on the first websocket update:
    the daemon answers with the first bar it needs (warm-up start, or the bar after the
    last committed slice). Everything from there to the forming bar comes over REST.
    """

    def __init__(
        self,
        exchange,
        symbol: str,
        timeframe: str,
        tf_ms: int,
        start: Callable[[int], Awaitable[int]],
        emit: Callable[[ClosedCandle], None],
        *,
        rest_limit: int | None = None,
        rest_lag_retries: int = 10,
        stream_down_poll_s: float | None = None,
        history: Any = None,
        warm: Any = None,
    ):
        self.ex = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.tf = tf_ms
        self._grid_off = bucket_offset_ms(timeframe)  # weeks open on Monday
        self._start = start
        self._emit = emit
        # rows per klines page: the venue's (a short page means "no more rows")
        venue = getattr(exchange, "venue", None)
        self.rest_limit = (rest_limit if rest_limit is not None
                           else venue.rest_page_limit if venue is not None else 1000)
        self.rest_lag_retries = rest_lag_retries
        self.next_ts: int | None = None
        self.forming_ts: int | None = None  # every bar before it is closed
        self.updates = 0
        self.reconnects = 0
        self.backfills = 0
        self.last_update_at: float | None = None
        self.delivered = 0
        ex_key = (symbol, timeframe)
        exchange.subscribed.add(ex_key)
        self._closed = exchange.closed_rows.setdefault(ex_key, {})
        if hasattr(exchange, "add_kline_sink"):
            exchange.add_kline_sink(ex_key, self.on_ws_kline)
        self._lock = asyncio.Lock()
        self._probe_task: asyncio.Task | None = None
        self._start_task: asyncio.Task | None = None
        # Fast path -> feed task hand-over: work that needs an await is pending, and the
        # future the feed task waits on (besides its watch_ohlcv call).
        self._kicked = False
        self._kick_fut: asyncio.Future | None = None
        self._first_seen: int | None = None  # earliest bar ts seen before the start
        #: True while REST backfill is in flight: the slice assembler must not give up on
        #: this asset's older bars by grace while it is demonstrably fetching them.
        self.busy = False
        #: While the stream is down (a disconnect, until the next frame of this stream),
        #: closed bars come over REST every ``stream_down_poll_s`` seconds: ccxt's own
        #: reconnect backoff grows to 30 s, and only a failed attempt used to trigger a
        #: fetch. Default: a tenth of the bar, 1-30 s (200 feeds x 1h bars: ~7 requests/s).
        self.stream_down = False
        self.stream_down_poll_s = (min(30.0, max(1.0, tf_ms / 10_000))
                                   if stream_down_poll_s is None else float(stream_down_poll_s))
        self._down_task: asyncio.Task | None = None
        #: the local candle store (daemon.history.StoreHistory): the first backfill (warm-up
        #: or catch-up) reads what it holds and REST fetches only the rest
        self.history = history
        self._history_pending = history is not None
        self.from_store = 0
        #: a fresh start's warm-up (daemon.warmstart.WarmupSink): bars before its ``end``
        #: go there in chunks (``_warm_rows``, flushed in order) instead of to ``emit``
        self.warm = warm
        self._warm_rows: list[Row] = []
        self._warm_origin = ""

    async def run(self) -> None:
        """The feed task: subscribe (``watch_ohlcv``), do the fast path's awaited work,
        turn disconnects into reconnects — until cancelled."""
        if self.next_ts is None and (self._start_task is None or self._start_task.done()):
            # Its own handle: sharing _probe_task kept reconnect probes (and the REST poll
            # of a stream that is down) off for the start probe's first 5 s.
            self._start_task = asyncio.create_task(self._start_probe(), name=f"start:{self.symbol}")
        backoff = 0.05
        loop = asyncio.get_running_loop()
        watch: asyncio.Future | None = None
        try:
            while True:
                if self._kicked:
                    self._kicked = False  # frames arriving during the work kick again
                    try:
                        async with self._lock:
                            await self._catch_up()
                    except Exception:
                        self._kicked = True  # the restarted task (supervisor) retries it
                        raise
                    continue
                if watch is None:
                    watch = asyncio.ensure_future(self.ex.watch_ohlcv(self.symbol, self.timeframe))
                self._kick_fut = loop.create_future()
                await asyncio.wait((watch, self._kick_fut), return_when=asyncio.FIRST_COMPLETED)
                self._kick_fut = None
                if not watch.done():
                    continue
                done, watch = watch, None
                try:
                    rows = done.result()
                except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                    self.reconnects += 1
                    reconnect_log(self.ex).add(self.symbol, exc)  # one line per connection
                    self._schedule_probe()
                    self._stream_went_down()
                    await asyncio.sleep(backoff)
                    # Short and capped: ccxt already backs off genuine dial failures per URL,
                    # and a long sleep here only delays the resubscription after a forced
                    # reconnect.
                    backoff = min(backoff * 2, 0.5)
                    continue
                backoff = 0.05
                # Only without the fast path (an exchange without kline_sinks): ccxt's rows.
                # ccxt mutates returned rows later: copy before any await.
                rows = [list(r[:6]) for r in rows]
                self.updates += 1
                self.last_update_at = time.monotonic()
                self.stream_down = False
                await self.on_rows(rows)
        finally:
            self._kick_fut = None
            if watch is not None and not watch.done():
                watch.cancel()
            # The feed's helpers go with it: none may deliver into a stopped daemon.
            for helper in (self._down_task, self._probe_task, self._start_task):
                if helper is not None and not helper.done():
                    helper.cancel()
            self._down_task = None

    # ---- the fast path -----------------------------------------------------------------
    def on_ws_kline(self, ts: int) -> None:
        """One kline frame of this stream (``ts`` = its bar open), called synchronously by
        the frame handler; a valid closing frame was recorded in ``_closed`` just before.

        Delivers the bars now known closed right here when nothing is in flight; anything
        needing an ``await`` (the start, a REST backfill) goes to the feed task."""
        self.updates += 1
        self.last_update_at = time.monotonic()
        self.stream_down = False  # a frame of this stream: it is up (ends the REST poll)
        horizon = ts + self.tf if ts in self._closed else ts
        if self.forming_ts is None or horizon > self.forming_ts:
            self.forming_ts = horizon
        if self.next_ts is None:
            if self._first_seen is None or ts < self._first_seen:
                self._first_seen = ts
            self._kick()
            return
        if self._kicked or self._lock.locked():
            self._kick()  # awaited work in flight: keep the order, let it deliver
            return
        if self._closed:
            self._deliver_recorded()
        if self.next_ts < self.forming_ts:
            self._kick()  # a bar closed without a valid closing frame: REST backfill

    def _kick(self) -> None:
        self._kicked = True
        fut = self._kick_fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def _catch_up(self) -> None:
        """The fast path's awaited work (under the lock): start, then advance."""
        if self.next_ts is None:
            if self.forming_ts is None:
                return
            first = self._first_seen if self._first_seen is not None else self.forming_ts
            self.next_ts = await self._start(first)
            log.info("feed_started", symbol=self.symbol, next_ts=self.next_ts,
                     forming_ts=self.forming_ts)
        await self._advance()

    def _schedule_probe(self) -> None:
        """After a reconnect, ask REST what closed meanwhile instead of waiting for the next
        websocket update to reveal the gap (bars that closed while we were away)."""
        if self.next_ts is None or (self._probe_task is not None and not self._probe_task.done()):
            return
        self._probe_task = asyncio.create_task(self._probe(), name=f"probe:{self.symbol}")

    def _stream_went_down(self) -> None:
        self.stream_down = True
        if self._down_task is None or self._down_task.done():
            self._down_task = asyncio.create_task(self._poll_while_down(),
                                                  name=f"rest-poll:{self.symbol}")

    async def _poll_while_down(self) -> None:
        """While the stream is down, fetch what closed over REST on a timer (item 14 of
        issue 16: the lag grew 2 -> 20 bars in 10 s with only the websocket down)."""
        polls = 0
        while True:
            await asyncio.sleep(self.stream_down_poll_s)
            if not self.stream_down:
                break
            if self.next_ts is None or (self._probe_task is not None
                                        and not self._probe_task.done()):
                continue
            polls += 1
            self._probe_task = asyncio.create_task(self._probe(delay_s=0.0),
                                                   name=f"probe:{self.symbol}")
            try:
                await asyncio.shield(self._probe_task)
            except Exception as exc:  # noqa: BLE001 - the next poll tries again
                log.warning("stream_down_poll_failed", symbol=self.symbol, error=repr(exc)[:200])
        if polls:
            log.info("stream_down_rest_polls", symbol=self.symbol, polls=polls)

    async def _probe(self, delay_s: float = 0.2) -> None:
        await asyncio.sleep(delay_s)  # let the resubscription go out first
        self.busy = True
        try:
            rows = await self._fetch(self.next_ts)
        finally:
            self.busy = False
        if rows:
            newest = max(int(r[0]) for r in rows)  # REST's last row is the forming bar
            if newest > (self.forming_ts or 0):
                self.forming_ts = newest
        async with self._lock:
            await self._advance()

    async def _start_probe(self, after_s: float = 5.0) -> None:
        """No websocket update within ``after_s`` (a quiet market, a stalled stream): start
        from REST's forming row instead, so catch-up never waits for the next ws update."""
        await asyncio.sleep(after_s)
        if self.next_ts is not None:
            return
        rows = await self._fetch(None, limit=2)
        if rows and self.next_ts is None:
            log.info("feed_start_from_rest", symbol=self.symbol, forming_ts=int(rows[-1][0]))
            await self.on_rows([rows[-1]])

    async def on_rows(self, rows: list[Row]) -> None:
        """Account for a batch of websocket rows and deliver whatever is now closed."""
        for r in rows:
            try:
                ts = int(r[0])
            except (TypeError, ValueError):
                continue
            closed = ts in self._closed
            horizon = ts + self.tf if closed else ts
            if self.forming_ts is None or horizon > self.forming_ts:
                self.forming_ts = horizon
        # x-frames recorded since the last call may carry a newer close too
        if self._closed:
            newest = max(self._closed) + self.tf
            if self.forming_ts is None or newest > self.forming_ts:
                self.forming_ts = newest
        if self.forming_ts is None:
            return
        async with self._lock:
            if self.next_ts is None:
                # The earliest bar of the first update is the first bar seen forming; taking
                # the minimum keeps this independent of how many frames were queued.
                seen = [int(r[0]) for r in rows if r and r[0] is not None]
                first = min(seen) if seen else self.forming_ts
                self.next_ts = await self._start(first)
                log.info("feed_started", symbol=self.symbol, next_ts=self.next_ts,
                         forming_ts=self.forming_ts)
            await self._advance()

    async def _advance(self) -> None:
        while True:
            self._deliver_recorded()
            if self.next_ts < self.forming_ts:
                await self._backfill()
                continue
            return

    def _deliver_recorded(self) -> None:
        """Deliver the recorded closing frames that continue ``next_ts`` (no await)."""
        closed = self._closed
        while (row := closed.pop(self.next_ts, None)) is not None:
            self._deliver(row, "ws")
        if closed:  # what is left before next_ts: duplicates / late frames of delivered bars
            for stale in [t for t in closed if t < self.next_ts]:
                del closed[stale]

    def _deliver(self, row: Row, origin: str) -> None:
        ts = int(row[0])
        warm = self.warm
        if warm is not None:
            if warm.takes(ts):
                if origin != self._warm_origin:
                    self._flush_warm()
                    self._warm_origin = origin
                self._warm_rows.append(row)
                self.delivered += 1
                self.next_ts = ts + self.tf
                return
            self._flush_warm()  # the warm-up's bars before any later one
        self._emit(ClosedCandle(self.symbol, ts, float(row[1]), float(row[2]), float(row[3]),
                                float(row[4]), float(row[5]), origin=origin))
        self.delivered += 1
        self.next_ts = ts + self.tf

    def _flush_warm(self) -> None:
        """Hand the warm-up bars collected since the last flush to the warm-up sink."""
        rows = self._warm_rows
        if not rows:
            return
        self._warm_rows = []
        ts = np.array([int(r[0]) for r in rows], dtype=np.int64)
        values = np.array([r[1:6] for r in rows], dtype=np.float64)
        self.warm.bars(self.symbol, ts, values, self._warm_origin)

    async def _backfill(self) -> None:
        """Fetch closed bars ``[next_ts, forming_ts)`` (and any newer closed ones) over REST."""
        self.busy = True
        try:
            await self._backfill_inner()
        finally:
            self._flush_warm()  # delivered bars (next_ts moved past them) never stay behind
            self.busy = False

    async def _from_store(self) -> None:
        """Deliver the stored bars that continue ``next_ts`` without a gap (first backfill):
        checked as arrays (the grid, no gap, :func:`tandem.core.candles.bar_fault_codes` — the
        per-row rule's array face); warm-up bars go to the warm-up sink in one chunk."""
        self._history_pending = False
        ts, values = await asyncio.to_thread(self.history.read_arrays, self.symbol,
                                             self.next_ts, self.forming_ts)
        start = self.next_ts
        k = len(ts)
        ok = ((ts == start + np.arange(k, dtype=np.int64) * self.tf) & (ts < self.forming_ts)
              & ((ts - self._grid_off) % self.tf == 0) & (bar_fault_codes(values) == 0))
        n = k if ok.all() else int(np.argmin(ok))  # a gap or a bad row: REST from there
        warm = self.warm
        m = 0 if warm is None or warm.end is None else int(np.searchsorted(ts[:n], warm.end))
        if m:
            self._flush_warm()
            await warm.bars_in_thread(self.symbol, ts[:m], values[:m], "store")
            self.delivered += m
            self.next_ts = int(ts[m - 1]) + self.tf
        for i in range(m, n):  # after the warm-up (a catch-up): bar by bar, as ever
            self._closed.pop(int(ts[i]), None)
            self._deliver([int(ts[i]), *values[i].tolist()], "store")
            if (i - m + 1) % 200 == 0:
                await asyncio.sleep(0)  # each delivery may step a slice
        self.from_store += n
        if n:
            log.info("warmup_from_store", symbol=self.symbol, rows=n, next_ts=self.next_ts)

    def _deliver_warm_page(self, rows: list[Row]) -> int:
        """Deliver a REST page's leading warm-up bars in one chunk when every one of them is
        valid and on the grid — the per-row rule's array face, as :meth:`_from_store` checks
        the store (row by row was ~1/5 of the README replay's CPU: 120k warm-up bars).
        ``rows``: sorted by ts, all at or after ``next_ts``. Returns how many it delivered;
        0 leaves the page to the row-by-row path, which drops and logs what fails."""
        warm = self.warm
        if warm is None or not rows or not warm.takes(int(rows[0][0])):
            return 0
        try:
            ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            values = np.array([r[1:6] for r in rows], dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            return 0  # a row that does not parse
        if values.shape != (len(rows), 5):
            return 0
        m = int(np.searchsorted(ts, warm.end))
        ts, values = ts[:m], values[:m]
        if ((ts - self._grid_off) % self.tf != 0).any() or bar_fault_codes(values).any():
            return 0
        self._flush_warm()  # what was collected before goes first
        warm.bars(self.symbol, ts, values, "rest")
        if self._closed:  # REST supersedes recorded closing frames of these bars
            for t in ts.tolist():
                self._closed.pop(t, None)
        self.delivered += m
        self.next_ts = int(ts[-1]) + self.tf
        return m

    async def _backfill_inner(self) -> None:
        if self._history_pending:
            await self._from_store()
            saving: list | None = []  # REST rows of this first backfill go to the store
        else:
            saving = None
        start = self.next_ts
        self.backfills += 1
        lag_tries = 0
        got = 0
        rejected, first_bad = 0, None
        while self.next_ts < self.forming_ts:
            rows = await self._fetch(self.next_ts)
            fresh = [r for r in rows if r and r[0] is not None and int(r[0]) >= self.next_ts]
            by_ts = {int(r[0]): r for r in fresh}
            if len(by_ts) < len(fresh):  # a page repeating a bar: its first valid copy
                by_ts = first_valid_rows(fresh, self.tf, self._grid_off)
            rows = [by_ts[t] for t in sorted(by_ts)]
            newest = int(rows[-1][0]) if rows else None
            full_page = len(rows) >= self.rest_limit
            if not full_page and (newest is None or newest < self.forming_ts):
                # REST has not caught up with the websocket (its newest row should be the
                # forming bar): retry a few times before accepting what it has as final.
                # Not after a full page: that is just one page of many (this retried the
                # first page of every warm-up 10 times, 2.75 s of sleeps per feed).
                if lag_tries < self.rest_lag_retries:
                    lag_tries += 1
                    await asyncio.sleep(0.05 * lag_tries)
                    continue
            k = len(rows)
            if k and int(rows[-1][0]) >= self.forming_ts:
                k -= 1  # the forming row (or one we cannot prove closed yet): not delivered
            m = self._deliver_warm_page(rows[:k])
            if m and saving is not None:
                saving.extend(rows[:m])
            got += m
            for r in rows[m:k]:
                ts = int(r[0])
                fault = candle_fault(r, self.tf, self._grid_off)
                if fault is not None:
                    # Dropped: a missing bar (the one rule, core.candles); logged once below.
                    rejected += 1
                    if first_bad is None:
                        first_bad = (ts, fault)
                    if (ts - self._grid_off) % self.tf == 0:
                        self.next_ts = ts + self.tf
                    continue
                # REST is the authority here (same values as stored history); a closing
                # frame for this bar that was also recorded is simply superseded.
                self._closed.pop(ts, None)
                self._deliver(r, "rest")
                if saving is not None:
                    saving.append(r)
                got += 1
                if got % 200 == 0:
                    # Each delivery may step a slice: let sockets and timers breathe.
                    await asyncio.sleep(0)
            if not full_page:
                # Bars between next_ts and forming_ts that REST does not have are gaps at
                # the exchange: skip them (the slice assembler sees this feed move on).
                if self.next_ts < self.forming_ts and (newest is None or newest >= self.forming_ts
                                                       or lag_tries >= self.rest_lag_retries):
                    log.warning("exchange_gap", symbol=self.symbol, from_ts=self.next_ts,
                                to_ts=self.forming_ts)
                    self.next_ts = self.forming_ts
                break
        if rejected:
            log.warning("rest_candles_rejected", symbol=self.symbol, count=rejected,
                        first_ts=first_bad[0], fault=first_bad[1], action="dropped (missing bar)")
        log.info("backfill", symbol=self.symbol, from_ts=start, to_ts=self.next_ts, rows=got)
        if saving:
            # In a worker thread (a Parquet read-merge-write); the next start reads them.
            self._save_task = asyncio.ensure_future(
                asyncio.to_thread(self.history.save, self.symbol, saving))

    async def _fetch(self, since: int | None, limit: int | None = None) -> list[Row]:
        backoff = 0.05
        while True:
            try:
                rows = await self.ex.fetch_ohlcv(self.symbol, self.timeframe, since=since,
                                                 limit=limit or self.rest_limit)
                return [list(r[:6]) for r in rows]
            except asyncio.CancelledError:
                raise
            except (ccxt.NetworkError, ccxt.ExchangeError) as exc:
                log.warning("rest_retry", symbol=self.symbol, since=since,
                            error=str(exc)[:200], backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)


class ReconnectLog:
    """One ``feed_reconnect`` line per connection event, not per feed.

    The feeds share websocket connections: one drop rejects every stream on it with the
    same error at once (20 lines for the shipped profiles). Reports arriving within
    ``window_s`` with the same error text are one event: logged once with the symbols."""

    def __init__(self, window_s: float = 0.1):
        self.window_s = window_s
        self._pending: dict[str, list[str]] = {}

    def add(self, symbol: str, exc: BaseException) -> None:
        error = str(exc)[:200]
        batch = self._pending.get(error)
        if batch is None:
            batch = self._pending[error] = []
            asyncio.get_running_loop().call_later(self.window_s, self._flush, error)
        batch.append(symbol)

    def _flush(self, error: str) -> None:
        symbols = self._pending.pop(error, [])
        if symbols:
            log.warning("feed_reconnect", error=error, feeds=len(symbols),
                        symbols=symbols[:20])


def reconnect_log(exchange: Any) -> ReconnectLog:
    """The exchange's (= its connections') :class:`ReconnectLog`."""
    rl = getattr(exchange, "_tandem_reconnect_log", None)
    if rl is None:
        rl = ReconnectLog()
        exchange._tandem_reconnect_log = rl
    return rl


# ---------------------------------------------------------------------------------------
# supervisor + watchdog
# ---------------------------------------------------------------------------------------
class FeedSupervisor:
    """Runs every feed as a task, restarts one that died, and watches the connections."""

    def __init__(self, exchange, feeds: Sequence[CandleFeed], *, watchdog_s: float = 60.0,
                 check_every_s: float = 0.5):
        self.ex = exchange
        self.feeds = list(feeds)
        self.by_symbol = {f.symbol: f for f in self.feeds}
        self.watchdog_s = watchdog_s
        self.check_every_s = check_every_s
        self.tasks: dict[str, asyncio.Task] = {}
        self.restarts = 0
        self.watchdog_fires = 0
        self._runner: asyncio.Task | None = None

    def start(self) -> None:
        for f in self.feeds:
            self._spawn(f)
        self._runner = asyncio.create_task(self._loop(), name="feed-supervisor")

    def _spawn(self, feed: CandleFeed) -> None:
        self.tasks[feed.symbol] = asyncio.create_task(feed.run(), name=f"feed:{feed.symbol}")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            self.check()

    def check(self) -> None:
        """One supervision pass: restart dead feed tasks, fire the watchdog."""
        for f in self.feeds:
            task = self.tasks.get(f.symbol)
            if task is not None and task.done() and not task.cancelled():
                exc = task.exception()
                self.restarts += 1
                log.error("feed_restarted", symbol=f.symbol, error=repr(exc))
                self._spawn(f)
        if self.watchdog_s <= 0:
            return
        now = time.monotonic()
        for url, client in list((self.ex.clients or {}).items()):
            if client.closed() or not client.futures:
                continue
            last = self.ex.last_data_at.get(url)
            opened = getattr(client, "_tandem_seen_at", None)
            if opened is None:
                client._tandem_seen_at = opened = now
            ref = max(last or 0.0, opened)
            if now - ref > self.watchdog_s:
                self.watchdog_fires += 1
                log.warning("watchdog_reconnect", url=url, silent_s=round(now - ref, 3))
                client.on_error(ccxt.NetworkError(f"watchdog: no data frame for {now - ref:.1f}s"))

    async def stop(self) -> None:
        tasks = [t for t in [self._runner, *self.tasks.values()] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
