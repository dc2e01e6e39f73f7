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
fetched over REST (``daemon.feeds.CandleFeed``), so a missing flag costs one REST request,
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
    row: list | None  # [ts, o, h, l, c, v] when closed and parseable, else None


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
    #: True: subscribe many streams per message ourselves (daemon.subscribe, Binance's
    #: protocol); False: ccxt.pro's own watch_ohlcv subscribes, one stream per message
    batched_subscribe: ClassVar[bool] = False
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
        does not parse is None (the row then fails ``daemon.feeds.candle_fault``)."""
        raise NotImplementedError

    def point_at(self, exchange: Any, rest_url: str | None, ws_url: str | None) -> None:
        """Point a ccxt exchange at other endpoints (testnet, emulator)."""
        raise NotImplementedError

    def stream_name(self, market: dict, interval: str) -> str:
        raise NotImplementedError

    def subscribe_message(self, streams: list[str], request_id: Any) -> dict:
        raise NotImplementedError

    def klines_request(self, market: dict, interval: str, since: int | None,
                       limit: int | None) -> dict:
        raise NotImplementedError

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
    klines_weight = 2  # GET /api/v3/klines with limit 101..1000
    rest_page_limit = 1000
    rest_klines_method = "publicGetKlines"  # GET /api/v3/klines
    batched_subscribe = True
    tested_against = ("daemon.emulator (Binance protocol: REST klines, SUBSCRIBE batching, "
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

    def point_at(self, exchange: Any, rest_url: str | None, ws_url: str | None) -> None:
        from core.exchange import rest_api_base

        # ccxt merges urls deeply only for known keys; set them explicitly to be sure.
        api = exchange.urls.setdefault("api", {})
        if rest_url:
            api["public"] = rest_api_base(rest_url)  # same normalisation as the core's config
        if ws_url:
            ws = api.get("ws") if isinstance(api.get("ws"), dict) else {}
            ws["spot"] = ws_url.rstrip("/")
            api["ws"] = ws

    def stream_name(self, market: dict, interval: str) -> str:
        return market["lowercaseId"] + "@kline_" + interval

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

    Tested through the real ccxt.pro ``bybit`` client against :mod:`daemon.emulator.bybit`
    (Bybit's v5 wire protocol) with replay == backtest parity, and its decoding and paging
    against Bybit's documented payloads. Subscriptions are ccxt.pro's own (one topic per
    ``subscribe`` message, ``batched_subscribe`` False)."""

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
    # Bybit documents no per-connection topic cap for public spot, only "args" of at most
    # 10 topics per subscribe request; 200 per connection keeps a reconnect's resubscription
    # at 20 messages.
    max_streams_per_connection = 500
    default_streams_per_connection = 200
    subscribe_msgs_per_s = 3
    streams_per_message = 10
    # HTTP: 600 requests per 5 s per IP (= 7,200/min), every request weighs 1
    rest_weight_per_min = 7200
    klines_weight = 1
    rest_page_limit = 1000
    rest_klines_method = "publicGetV5MarketKline"  # GET /v5/market/kline
    tested_against = ("daemon.emulator.bybit (Bybit v5 protocol: instruments-info, kline "
                      "REST, subscribe/ack, kline frames with confirm, op ping/pong) via "
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

    def point_at(self, exchange: Any, rest_url: str | None, ws_url: str | None) -> None:
        api = exchange.urls.setdefault("api", {})
        if rest_url:
            api["public"] = rest_url.rstrip("/")
        if ws_url:
            ws = api.get("ws") if isinstance(api.get("ws"), dict) else {}
            public = ws.get("public") if isinstance(ws.get("public"), dict) else {}
            public["spot"] = ws_url.rstrip("/")
            ws["public"] = public
            api["ws"] = ws


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
ADAPTERS: dict[str, VenueAdapter] = {a.id: a for a in (BinanceAdapter(), BybitAdapter())}


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
