"""Venue adapters: the one place the daemon knows an exchange's wire format and limits.

The feeds, slices, state and core are one code path for every venue (issue 20). What
differs between exchanges sits behind :class:`VenueAdapter`, at the edge:

* how a websocket frame becomes a kline update and, when the venue marks it closed, a
  closed ``[ts, o, h, l, c, v]`` row (:meth:`VenueAdapter.parse_kline`);
* how streams are named and subscriptions batched (:meth:`stream_name`,
  :meth:`subscribe_message`, the per-connection caps);
* the venue's limits (streams per connection, messages per second, REST weight);
* REST paging (:meth:`klines_request`, :attr:`rest_page_limit`, :attr:`klines_weight`).

A venue is *supported* only when it is registered in :data:`ADAPTERS` — which means its
adapter went through the real ccxt.pro client against the emulator speaking its protocol,
and replay == backtest parity holds for it. Anything else is refused at start
(:func:`check_venue`, exit 2 in the CLI) instead of running a daemon that never trades.

When a venue's closed flag is missing from a frame the frame is treated as *not closed*
(never guessed closed): the bar is then proven closed by the first frame of a newer bar and
fetched over REST (``tandem.daemon.feeds.CandleFeed``), so a missing flag costs one REST request,
never a wrong bar.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, NamedTuple


class VenueError(ValueError):
    """The profile asks for something the venue (or the daemon) does not offer: exit 2."""


class Kline(NamedTuple):
    """One kline update decoded from a frame."""

    market_id: Any  # the venue's symbol id as sent (validated by the caller)
    interval: Any  # the venue's interval code as sent
    bar_ts: Any  # open time of the bar (ms), as sent
    closed: bool  # the venue's closed flag was present and true
    row: list | None  # [ts, o, h, l, c, v] (int, floats) when closed and parseable, else None


class VenueAdapter:
    """The venue-specific part of the live path (see the module docstring)."""

    #: the profile's ``exchange`` value (= the ccxt id)
    id: ClassVar[str]
    #: kline timeframes the venue streams over its websocket (ccxt's names)
    ws_timeframes: ClassVar[tuple[str, ...]]
    #: hard per-connection stream cap, and our default (headroom under it)
    max_streams_per_connection: ClassVar[int]
    default_streams_per_connection: ClassVar[int]
    #: subscribe messages we send per second per connection (under the venue's limit)
    subscribe_msgs_per_s: ClassVar[int]
    #: streams in one subscribe message
    streams_per_message: ClassVar[int]
    #: REST weight per minute, one klines request's weight, rows per klines page
    rest_weight_per_min: ClassVar[int]
    klines_weight: ClassVar[int]
    rest_page_limit: ClassVar[int]
    #: ccxt's implicit-API method for the klines request (its signing, errors, timeouts)
    rest_klines_method: ClassVar[str]
    #: True: subscribe many streams per message ourselves (daemon.subscribe); False:
    #: ccxt.pro's own watch_ohlcv subscribes, one stream per message
    batched_subscribe: ClassVar[bool] = False
    #: REST burst (weight) for daemon.restbudget; None: its default (a quarter of the
    #: budget, for a venue that counts per minute). A venue counting per few seconds
    #: needs a small one.
    rest_burst: ClassVar[float | None] = None
    #: pause of every REST request after the venue's rate-limit answer when it sends no
    #: Retry-After (Bybit's 403 bans the IP for 10+ minutes)
    rate_limit_pause_s: float = 1.0
    #: what this adapter was tested against (README's venue table)
    tested_against: ClassVar[str]

    def is_kline_frame(self, message: Any) -> bool:
        raise NotImplementedError

    def parse_klines(self, message: Any) -> list[Kline] | None:
        """The kline updates in a kline frame (a venue may batch several), or None when it
        carries none (the caller logs it as a skipped frame)."""
        raise NotImplementedError

    def rest_rows(self, response: Any) -> list[list]:
        """``[ts, o, h, l, c, v]`` rows, oldest first, of a klines REST answer. A field that
        does not parse is None (the row then fails ``tandem.daemon.feeds.candle_fault``)."""
        raise NotImplementedError

    def point_at(self, exchange: Any, rest_url: str | None, ws_url: str | None) -> None:
        """Point a ccxt exchange at other endpoints (testnet, emulator): the venue's URL
        layout is the core's (:func:`tandem.core.exchange.url_overrides`), which the
        backtest's downloader uses too."""
        from tandem.core.exchange import point_at

        point_at(exchange, rest_url or None, ws_url or None)

    def stream_name(self, market: dict, interval: str) -> str:
        raise NotImplementedError

    def subscribe_message(self, streams: list[str], request_id: Any) -> dict:
        raise NotImplementedError

    def klines_request(self, market: dict, interval: str, since: int | None,
                       limit: int | None) -> dict:
        raise NotImplementedError

    def klines_call(self, market: dict, interval: str, since: int | None, limit: int | None,
                    now_ms: int | None = None) -> tuple[str, dict]:
        """(ccxt implicit-API method, request) of one klines page; ``now_ms``: the venue's
        clock as the client knows it (a venue with a recent-only endpoint needs it)."""
        return self.rest_klines_method, self.klines_request(market, interval, since, limit)

    def ws_url(self, exchange: Any, index: int) -> str:
        """The URL of kline connection ``index`` (batched subscriptions, tandem.daemon.subscribe).
        ccxt keys its connections by URL, so each index needs its own string."""
        raise NotImplementedError

    def ohlcv_hash(self, symbol: str, market: dict, interval: str, timeframe: str) -> str:
        """The message hash ccxt.pro's own ``handle_ohlcv`` resolves for this stream."""
        return "ohlcv::" + symbol + "::" + timeframe

    def is_control_text(self, message: Any) -> bool:
        """A non-JSON frame the venue's protocol uses (OKX answers ``ping`` with ``pong``)."""
        return False

    def is_pong(self, message: Any) -> bool:
        """The venue's answer to ccxt's keep-alive ping when it is a *message* (Bybit, OKX),
        not a websocket pong frame (Binance): proof the connection lives, not that its data
        flows, so the daemon's silent-socket watchdog must not count it."""
        return False

    def check_symbol(self, symbol: str) -> str | None:
        """Why the venue cannot stream ``symbol`` (by its form), or None. Whether the venue
        *lists* it is checked against its markets when the daemon starts."""
        base, sep, quote = symbol.partition("/")
        if not sep or not base or not quote or ":" in quote:
            return "not a spot symbol BASE/QUOTE"
        return None


class BinanceAdapter(VenueAdapter):
    """Binance spot: raw ``<symbol>@kline_<interval>`` streams, ``x`` = closed."""

    id = "binance"
    # https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (1s aside:
    # the daemon's timeframes start at 1m)
    ws_timeframes = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                     "1d", "3d", "1w", "1M")
    max_streams_per_connection = 1024  # "A single connection can listen to 1024 streams"
    default_streams_per_connection = 200
    subscribe_msgs_per_s = 3  # Binance: 5 incoming messages/s per connection, PONGs count
    streams_per_message = 200
    rest_weight_per_min = 6000  # REQUEST_WEIGHT on spot
    klines_weight = 2  # GET /api/v3/klines: 2 at any limit (Binance's rest-api.md)
    rest_page_limit = 1000
    rest_klines_method = "publicGetKlines"  # GET /api/v3/klines
    batched_subscribe = True
    tested_against = ("tandem.daemon.emulator (Binance protocol: REST klines, SUBSCRIBE batching, "
                      "kline frames, ping/pong, limits) via ccxt.pro binance; replay parity")

    def is_kline_frame(self, message: Any) -> bool:
        return type(message) is dict and message.get("e") == "kline"

    def parse_klines(self, message: Any) -> list[Kline] | None:
        k = message.get("k") if isinstance(message, dict) else None
        if not isinstance(k, dict):
            return None
        closed = k.get("x") is True  # missing or not a bool: not closed (module docstring)
        row = None
        if closed:
            try:
                row = [int(k["t"]), float(k["o"]), float(k["h"]), float(k["l"]),
                       float(k["c"]), float(k["v"])]
            except (KeyError, TypeError, ValueError):
                row = None
        return [Kline(k.get("s"), k.get("i"), k.get("t"), closed, row)]

    def rest_rows(self, response: Any) -> list[list]:
        # GET /api/v3/klines: [[open time, "o", "h", "l", "c", "v", close time, ...], ...],
        # oldest first. Parsed here: ccxt's generic parse_ohlcv was ~1/4 of replay's CPU.
        return [_row(r, 0, 1) for r in response]

    def stream_name(self, market: dict, interval: str) -> str:
        return market["lowercaseId"] + "@kline_" + interval

    def ws_url(self, exchange: Any, index: int) -> str:
        # ccxt.pro binance connects to <urls.api.ws.spot>/<n>; Binance ignores the tail
        base = exchange.get_ws_url("spot", exchange.get_future_ws_category("kline"))
        return f"{base}/{index}"

    def subscribe_message(self, streams: list[str], request_id: Any) -> dict:
        return {"method": "SUBSCRIBE", "params": list(streams), "id": request_id}

    def klines_request(self, market: dict, interval: str, since: int | None,
                       limit: int | None) -> dict:
        request: dict[str, Any] = {"symbol": market["id"], "interval": interval}
        if since is not None:
            request["startTime"] = int(since)
        if limit is not None:
            request["limit"] = min(int(limit), self.rest_page_limit)
        return request


class BybitAdapter(VenueAdapter):
    """Bybit v5 public spot: ``kline.<interval>.<symbol>`` topics, ``confirm`` = closed.

    Tested through the real ccxt.pro ``bybit`` client against :mod:`tandem.daemon.emulator.bybit`
    (Bybit's v5 wire protocol) with replay == backtest parity, and its decoding and paging
    against Bybit's documented payloads. Subscriptions are batched here (ccxt.pro sends one
    topic per ``subscribe``): up to 10 topics a message, Bybit's cap on ``args``."""

    id = "bybit"
    # https://bybit-exchange.github.io/docs/v5/websocket/public/kline : 1 3 5 15 30 60 120
    # 240 360 720 D W M (no 8h, no 3d)
    INTERVALS: ClassVar[dict[str, str]] = {
        "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60", "2h": "120",
        "4h": "240", "6h": "360", "12h": "720", "1d": "D", "1w": "W", "1M": "M"}
    INTERVAL_MS: ClassVar[dict[str, int]] = {
        "1": 60_000, "3": 180_000, "5": 300_000, "15": 900_000, "30": 1_800_000,
        "60": 3_600_000, "120": 7_200_000, "240": 14_400_000, "360": 21_600_000,
        "720": 43_200_000, "D": 86_400_000, "W": 604_800_000}
    ws_timeframes = tuple(INTERVALS)
    # Bybit caps public spot at 10 topics per subscribe request and a public connection's
    # "args" at 21,000 characters in all (https://bybit-exchange.github.io/docs/v5/ws/connect,
    # "Public channel - Args limits"): 500 topics of "kline.720.<symbol>" stay under it for
    # symbols up to ~28 characters. 200 per connection keeps a reconnect's resubscription at
    # 20 messages.
    max_streams_per_connection = 500
    default_streams_per_connection = 200
    subscribe_msgs_per_s = 10  # Bybit documents no subscribe rate; 200 topics in 2 s
    streams_per_message = 10
    # HTTP: 600 requests in any 5-s window per IP, every request weighs 1; past it a 403
    # and a ban of 10+ minutes. 6,000/min at the budget's 80 % share with a burst of 100:
    # at most 100 + 5 x 78 = 491 requests in any 5 s.
    rest_weight_per_min = 6000
    rest_burst = 100.0
    rate_limit_pause_s = 600.0
    klines_weight = 1
    rest_page_limit = 1000
    rest_klines_method = "publicGetV5MarketKline"  # GET /v5/market/kline
    batched_subscribe = True
    tested_against = ("tandem.daemon.emulator.bybit (Bybit v5 protocol: instruments-info, kline "
                      "REST, subscribe/ack with the 10-topic cap, kline frames with "
                      "confirm, op ping/pong, the 600 requests / 5 s IP limit with 403) via "
                      "ccxt.pro bybit; replay parity")

    def is_kline_frame(self, message: Any) -> bool:
        return (type(message) is dict and type(message.get("topic")) is str
                and message["topic"].startswith("kline."))

    def parse_klines(self, message: Any) -> list[Kline] | None:
        parts = message.get("topic", "").split(".") if isinstance(message, dict) else []
        data = message.get("data") if isinstance(message, dict) else None
        if len(parts) != 3 or not isinstance(data, list):
            return None
        _, interval, market_id = parts
        out = []
        for d in data:
            if not isinstance(d, dict):
                continue
            closed = d.get("confirm") is True  # missing: not closed (module docstring)
            row = None
            if closed:
                try:
                    row = [int(d["start"]), float(d["open"]), float(d["high"]), float(d["low"]),
                           float(d["close"]), float(d["volume"])]
                except (KeyError, TypeError, ValueError):
                    row = None
            out.append(Kline(market_id, interval, d.get("start"), closed, row))
        return out or None

    def stream_name(self, market: dict, interval: str) -> str:
        return f"kline.{interval}.{market['id']}"

    def is_pong(self, message: Any) -> bool:
        # public: {"success": true, "ret_msg": "pong", "conn_id", "op": "ping"}; private and
        # option: {"op": "pong", "args": [...]} (https://bybit-exchange.github.io/docs/v5/ws/connect)
        return type(message) is dict and (message.get("ret_msg") == "pong"
                                          or message.get("op") == "pong")

    def ws_url(self, exchange: Any, index: int) -> str:
        return _indexed(exchange.implode_hostname(exchange.urls["api"]["ws"]["public"]["spot"]),
                        index)

    def subscribe_message(self, streams: list[str], request_id: Any) -> dict:
        return {"op": "subscribe", "args": list(streams), "req_id": str(request_id)}

    def klines_request(self, market: dict, interval: str, since: int | None,
                       limit: int | None) -> dict:
        # Bybit answers the NEWEST ``limit`` bars of [start, end] (end defaults to now), so
        # paging forward from ``since`` needs ``end`` = the last bar of this page.
        n = min(int(limit), self.rest_page_limit) if limit is not None else self.rest_page_limit
        request: dict[str, Any] = {"category": "spot", "symbol": market["id"],
                                   "interval": interval, "limit": n}
        if since is not None:
            request["start"] = int(since)
            step = self.INTERVAL_MS.get(interval)
            if step is not None:
                request["end"] = int(since) + n * step - 1
        return request

    def rest_rows(self, response: Any) -> list[list]:
        # {"retCode": 0, "result": {"list": [[start, o, h, l, c, volume, turnover], ...]}},
        # newest first
        rows = ((response or {}).get("result") or {}).get("list") or []
        return [_row(r, 0, 1) for r in reversed(rows)]


class OkxAdapter(VenueAdapter):
    """OKX v5 spot: ``candle<bar>`` channels on the *business* websocket, ``confirm`` = closed.

    Frames ``{"arg": {"channel": "candle1m", "instId": "BTC-USDT"}, "data": [[ts, o, h, l,
    c, vol, volCcy, volCcyQuote, confirm]]}``; ``confirm`` "1" = the bar is complete. A row
    without it (fewer than 9 fields) or with anything but "1" is not closed (module
    docstring). Bars of 6h and more are subscribed and fetched in their ``utc`` variants
    (``candle1Dutc``, ``bar=1Dutc``): OKX's plain ``1D`` opens at 16:00 UTC (Hong Kong
    midnight), not on the backtest's UTC grid — ccxt.pro's own watch_ohlcv would subscribe
    that one. Subscriptions are batched here, many channels per ``subscribe``.

    REST: ``GET /api/v5/market/candles`` serves the newest 1,440 bars (limit <= 300,
    40 requests / 2 s per IP), ``GET /api/v5/market/history-candles`` everything older
    (limit <= 100, 20 requests / 2 s); both answer newest first, rows strictly between
    ``before`` and ``after``. Pages are 100 rows on both (one page size for the feeds'
    full-page rule), one klines request weighs 2 against 1,000 per minute with a burst of
    4 requests: at most ~17 requests in any 2 s, under history-candles' 20."""

    id = "okx"
    INTERVALS: ClassVar[dict[str, str]] = {
        "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H",
        "2h": "2H", "4h": "4H", "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc",
        "1w": "1Wutc", "1M": "1Mutc"}
    INTERVAL_MS: ClassVar[dict[str, int]] = {
        "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
        "1H": 3_600_000, "2H": 7_200_000, "4H": 14_400_000, "6Hutc": 21_600_000,
        "12Hutc": 43_200_000, "1Dutc": 86_400_000, "1Wutc": 604_800_000}
    #: bars the recent-candles endpoint keeps; older ones are in history-candles. The
    #: margin covers the client's estimate of the venue's clock.
    RECENT_BARS = 1440
    RECENT_MARGIN_BARS = 100
    ws_timeframes = tuple(INTERVALS)
    # OKX documents no channel cap per public connection; one subscribe's args may hold up
    # to 64 KB (~1,400 candle channels) and a connection 480 subscribe requests an hour:
    # 200 channels per message and per connection keeps a resubscription to one message.
    max_streams_per_connection = 1000
    default_streams_per_connection = 200
    subscribe_msgs_per_s = 3  # OKX: 3 requests per second per IP for connecting/subscribing
    streams_per_message = 200
    rest_weight_per_min = 1000
    rest_burst = 8.0
    rate_limit_pause_s = 2.0  # OKX's 429 has no Retry-After; its windows are 2 s
    klines_weight = 2
    rest_page_limit = 100
    rest_klines_method = "publicGetMarketCandles"  # GET /api/v5/market/candles
    rest_history_method = "publicGetMarketHistoryCandles"  # GET /api/v5/market/history-candles
    batched_subscribe = True
    tested_against = ("tandem.daemon.emulator.okx (OKX v5 protocol: public instruments, candles "
                      "and history-candles REST with their limits, business websocket "
                      "subscribe/ack, text ping/pong, candle frames with confirm) via "
                      "ccxt.pro okx; replay parity")

    def is_kline_frame(self, message: Any) -> bool:
        if type(message) is not dict or "data" not in message:
            return False
        arg = message.get("arg")
        return (type(arg) is dict and type(arg.get("channel")) is str
                and arg["channel"].startswith("candle"))

    def parse_klines(self, message: Any) -> list[Kline] | None:
        arg, data = message.get("arg"), message.get("data")
        if not isinstance(arg, dict) or not isinstance(data, list):
            return None
        # the ccxt timeframe code: "1Dutc" -> "1D" (ccxt's okx timeframes carry no suffix)
        interval = arg.get("channel", "")[len("candle"):].removesuffix("utc")
        market_id = arg.get("instId")
        out = []
        for d in data:
            if not isinstance(d, list) or not d:
                continue
            closed = len(d) > 8 and d[8] == "1"  # missing: not closed (module docstring)
            row = _row(d, 0, 1) if closed else None
            if row is not None and None in row:
                row = None
            out.append(Kline(market_id, interval, d[0], closed, row))
        return out or None

    def stream_name(self, market: dict, interval: str) -> str:
        return f"candle{self._bar(interval)}:{market['id']}"

    def subscribe_message(self, streams: list[str], request_id: Any) -> dict:
        args = []
        for s in streams:
            channel, _, inst_id = s.partition(":")
            args.append({"channel": channel, "instId": inst_id})
        return {"id": str(request_id), "op": "subscribe", "args": args}

    def ohlcv_hash(self, symbol: str, market: dict, interval: str, timeframe: str) -> str:
        return f"candle{self._bar(interval)}:{market['id']}"  # ccxt okx handle_ohlcv's hash

    def ws_url(self, exchange: Any, index: int) -> str:
        return _indexed(exchange.urls["api"]["ws"].rstrip("/") + "/business", index)

    def is_control_text(self, message: Any) -> bool:
        return message == "pong"

    def is_pong(self, message: Any) -> bool:
        return message == "pong"  # OKX's answer to the text frame "ping"

    def klines_call(self, market: dict, interval: str, since: int | None, limit: int | None,
                    now_ms: int | None = None) -> tuple[str, dict]:
        bar = self._bar(interval)
        n = min(int(limit), self.rest_page_limit) if limit is not None else self.rest_page_limit
        request: dict[str, Any] = {"instId": market["id"], "bar": bar, "limit": n}
        method = self.rest_klines_method
        step = self.INTERVAL_MS.get(bar)
        if since is not None:
            since = int(since)
            # rows strictly between: (since - 1, since + n bars) = n bars from since
            request["before"] = since - 1
            if step is not None:
                request["after"] = since + n * step
                recent = self.RECENT_BARS - self.RECENT_MARGIN_BARS
                if now_ms is None or since < now_ms - recent * step:
                    method = self.rest_history_method
        return method, request

    def klines_request(self, market: dict, interval: str, since: int | None,
                       limit: int | None) -> dict:
        return self.klines_call(market, interval, since, limit)[1]

    def rest_rows(self, response: Any) -> list[list]:
        # {"code": "0", "msg": "", "data": [[ts, o, h, l, c, vol, volCcy, volCcyQuote,
        # confirm], ...]}, newest first
        rows = (response or {}).get("data") or []
        return [_row(r, 0, 1) for r in reversed(rows)]

    def point_at(self, exchange: Any, rest_url: str | None, ws_url: str | None) -> None:
        super().point_at(exchange, rest_url, ws_url)
        # load_markets then reads GET /api/v5/public/time: klines_call's "now" is the
        # venue's clock (the emulator's virtual one in replay), not this machine's
        exchange.options["adjustForTimeDifference"] = True

    #: ccxt's okx timeframe codes of 6h and more -> OKX's UTC-aligned bars
    UTC_BARS: ClassVar[dict[str, str]] = {"6H": "6Hutc", "12H": "12Hutc", "1D": "1Dutc",
                                          "1W": "1Wutc", "1M": "1Mutc"}

    def _bar(self, interval: str) -> str:
        return self.UTC_BARS.get(interval, interval)


def _indexed(url: str, index: int) -> str:
    """Connection ``index``'s URL: the venue's own for the first; a query tag for the next
    ones (ccxt keys connections by URL; the venue ignores the tag)."""
    return url if index == 0 else f"{url}{'&' if '?' in url else '?'}conn={index}"


def _num(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _row(r: Any, ts_at: int, first: int) -> list:
    """``[ts, o, h, l, c, v]`` of one REST klines row; unparseable fields are None."""
    try:
        return [int(r[ts_at]), float(r[first]), float(r[first + 1]), float(r[first + 2]),
                float(r[first + 3]), float(r[first + 4])]
    except (TypeError, ValueError, IndexError):
        if not isinstance(r, list | tuple) or len(r) < first + 5:
            return [None] * 6
        try:
            ts = int(r[ts_at])
        except (TypeError, ValueError):
            ts = None
        return [ts, *(_num(x) for x in r[first:first + 5])]


#: The venues the daemon supports: exchange id -> adapter. Register a venue here only once
#: it passes the live (emulator, real ccxt.pro client) and replay-parity tests.
ADAPTERS: dict[str, VenueAdapter] = {
    a.id: a for a in (BinanceAdapter(), BybitAdapter(), OkxAdapter())}


def supported_venues() -> list[str]:
    return sorted(ADAPTERS)


def adapter_for(exchange_id: str) -> VenueAdapter:
    """The adapter of ``exchange_id``; :class:`VenueError` naming the supported ones."""
    adapter = ADAPTERS.get(exchange_id)
    if adapter is None:
        raise VenueError(f"exchange {exchange_id!r} is not supported by the daemon "
                         f"(supported: {', '.join(supported_venues())}); the backtest "
                         f"can still use it")
    return adapter


def check_venue(exchange_id: str, base_timeframe: str, symbols: Iterable[str]) -> VenueAdapter:
    """Refuse, before anything starts, a venue the daemon does not support, a base
    timeframe it does not stream, or symbols it cannot stream (one message naming them)."""
    adapter = adapter_for(exchange_id)
    if base_timeframe not in adapter.ws_timeframes:
        raise VenueError(f"exchange {exchange_id!r} does not stream {base_timeframe!r} klines "
                         f"(base_timeframe); it streams {', '.join(adapter.ws_timeframes)}")
    bad = [(s, why) for s in symbols if (why := adapter.check_symbol(s)) is not None]
    if bad:
        shown = ", ".join(f"{s!r} ({why})" for s, why in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise VenueError(f"exchange {exchange_id!r} cannot stream {shown}{more}")
    return adapter
