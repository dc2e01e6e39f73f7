"""The emulator speaking Bybit v5 public spot (REST market endpoints + public websocket).

Same market, virtual clock, forming/closing updates and fault plan as the Binance emulator
(:class:`tandem.daemon.emulator.server.Emulator`); only the wire differs, as documented by Bybit:

* ``GET /v5/market/instruments-info?category=spot`` — the instruments (what ccxt reads);
* ``GET /v5/market/kline?category=spot&symbol&interval&start&end&limit`` — the NEWEST
  ``limit`` (<= 1000, default 200) bars from the one containing ``start`` to the one
  containing ``end`` (end defaults to now), newest first, each
  ``[start, open, high, low, close, volume, turnover]`` as strings, the forming bar
  included; errors are HTTP 200 with ``retCode != 0``;
* ``GET /v5/market/time``;
* websocket ``/v5/public/spot``: ``{"op": "subscribe", "args": [...], "req_id"}`` (at most
  10 args, 21,000 characters of args per connection) answered ``{"success", "ret_msg":
  "subscribe", "conn_id", "req_id", "op"}``; ``{"op": "ping"}`` answered ``{"success",
  "ret_msg": "pong", "conn_id", "op": "ping"}``; kline frames
  ``{"topic": "kline.<interval>.<SYMBOL>", "data": [{..., "confirm": bool}], "ts", "type"}``.

Bybit's HTTP IP limit (``ip_limit``, None turns it off): at most 600 requests in any 5-s
window; past it HTTP 403 "access too frequent" and the IP stays banned ``ban_s`` (Bybit:
"wait at least 10 minutes"; short in tests), every request meanwhile answered 403.
Binance's ``rest_weight_per_min`` is off here. Not emulated: the websocket connection-rate
rules (500 connections per 5 minutes per IP).
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from aiohttp import web
from tandem.daemon.emulator.market import fmt, market_id
from tandem.daemon.emulator.server import Connection, Emulator, log

#: ccxt timeframe -> Bybit interval code (the websocket topic and REST ``interval``)
BYBIT_INTERVALS = {"1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1h": "60",
                   "2h": "120", "4h": "240", "6h": "360", "12h": "720", "1d": "D",
                   "1w": "W", "1M": "M"}
_TF_OF = {v: k for k, v in BYBIT_INTERVALS.items()}
MAX_ARGS_PER_SUBSCRIBE = 10
#: "for one public connection, you cannot have length of "args" array over 21,000
#: characters" (https://bybit-exchange.github.io/docs/v5/ws/connect, "Args limits"); counted
#: here as the JSON text of all the connection's topics (Bybit does not say how it counts)
MAX_ARGS_CHARS_PER_CONNECTION = 21_000
IP_LIMIT = (600, 5.0)  # requests, seconds


class BybitEmulator(Emulator):
    """:class:`Emulator` with Bybit's wire protocol (module docstring)."""

    rest_prefix = "/v5/market/"
    klines_path = "/v5/market/kline"

    def __init__(self, market, *, ip_limit: tuple[int, float] | None = IP_LIMIT,
                 ban_s: float = 600.0, **kw: Any):
        kw.setdefault("rest_weight_per_min", None)
        kw.setdefault("max_msgs_per_s", None)
        kw.setdefault("ping_interval", None)  # Bybit: the client pings with {"op": "ping"}
        super().__init__(market, ban_s=ban_s, **kw)
        self.ip_limit = ip_limit
        self._ip_times: deque = deque()
        self.rest_403 = 0
        self.peak_ip_requests = 0  # most requests within one ip_limit window

    def _ok(self, result: Any) -> web.Response:
        # "time": the server's clock in ms, which ccxt bybit's fetch_time reads (it was 0,
        # so a download took 1970 for "now" and fetched nothing, exit 0)
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result,
                                  "retExtInfo": {}, "time": self._now})

    def _fail(self, code: int, msg: str) -> web.Response:
        # Bybit reports request errors with HTTP 200 and a retCode
        return web.json_response({"retCode": code, "retMsg": msg, "result": {},
                                  "retExtInfo": {}, "time": self._now})

    def _spend_weight(self, path: str) -> web.Response | None:
        """Bybit's HTTP IP limit (module docstring): None (go on) or the 403."""
        if self.ip_limit is None:
            return None
        n, window = self.ip_limit
        now = time.monotonic()
        if now < self._banned_until:
            self.rest_403 += 1
            return web.Response(status=403, text="access too frequent")
        times = self._ip_times
        while times and now - times[0] >= window:
            times.popleft()
        if len(times) >= n:
            self._banned_until = now + self.ban_s
            self.rest_403 += 1
            log.info("emulator_rest_ban", seconds=self.ban_s)
            return web.Response(status=403, text="access too frequent")
        times.append(now)
        self.peak_ip_requests = max(self.peak_ip_requests, len(times))
        return None

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/v5/market/time", self._bybit_time)
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_get("/v5/market/kline", self._bybit_klines)
        app.router.add_get("/v5/public/spot", self._ws_handler)

    @property
    def rest_url(self) -> str:
        """Value for ccxt bybit ``urls.api.public``."""
        return self.base_url

    @property
    def ws_url(self) -> str:
        """Value for ccxt.pro bybit ``urls.api.ws.public.spot``."""
        return f"ws://{self.host}:{self.port}/v5/public/spot"

    # ------------------------------------------------------------------ websocket
    @staticmethod
    def _parse_stream(name: str) -> tuple[str, str] | None:
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != "kline" or parts[1] not in _TF_OF:
            return None
        return parts[2], _TF_OF[parts[1]]

    @staticmethod
    def _event_json(symbol: str, interval: str, bar: Any, tf: int, t: int) -> str:
        mid, code = market_id(symbol), BYBIT_INTERVALS[interval]
        return (
            f'{{"topic":"kline.{code}.{mid}","data":[{{"start":{bar.ts},'
            f'"end":{bar.ts + tf - 1},"interval":"{code}","open":"{fmt(bar.open)}",'
            f'"close":"{fmt(bar.close)}","high":"{fmt(bar.high)}","low":"{fmt(bar.low)}",'
            f'"volume":"{fmt(bar.volume)}","turnover":"{fmt(bar.volume * bar.close)}",'
            f'"confirm":{"true" if bar.closed else "false"},"timestamp":{int(t)}}}],'
            f'"ts":{int(t)},"type":"snapshot"}}'
        )

    async def _on_client_text(self, conn: Connection, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            reply = {"success": False, "ret_msg": "Invalid JSON", "conn_id": conn.path, "op": ""}
        else:
            op, rid, args = req.get("op"), req.get("req_id"), req.get("args", [])
            base = {"conn_id": str(id(conn)), "req_id": rid, "op": op}
            if op == "ping":
                # public spot's pong carries no req_id (Bybit's docs, "How to Send the
                # Heartbeat Packet": https://bybit-exchange.github.io/docs/v5/ws/connect)
                reply = {"success": True, "ret_msg": "pong", "conn_id": base["conn_id"],
                         "op": "ping"}
            elif op in ("subscribe", "unsubscribe"):
                bad = (not isinstance(args, list) or not args
                       or not all(isinstance(a, str) for a in args))
                if bad or len(args) > MAX_ARGS_PER_SUBSCRIBE:
                    self.refused_subscribes += 1
                    why = "args must be 1..10 topics" if not bad else "Invalid request"
                    reply = {"success": False, "ret_msg": f"error:{why}", **base}
                else:
                    unknown = [a for a in args if self._parse_stream(a) is None
                               or self.market.symbol_of(a.split(".")[2]) is None]
                    if unknown:
                        reply = {"success": False,
                                 "ret_msg": f"error:handler not found,topic:{unknown[0]}", **base}
                    elif op == "subscribe" and len(json.dumps(
                            list(dict.fromkeys([*conn.subs, *args])))) \
                            > MAX_ARGS_CHARS_PER_CONNECTION:
                        self.refused_subscribes += 1
                        reply = {"success": False, "ret_msg": "error:args over 21000 "
                                 "characters on this connection", **base}
                    elif op == "subscribe":
                        self._subscribe(conn, args)
                        self.subscribe_log.append((conn.path, list(args)))
                        # public spot acks with ret_msg "subscribe" (linear/inverse: ""):
                        # https://bybit-exchange.github.io/docs/v5/ws/connect
                        reply = {"success": True, "ret_msg": "subscribe", **base}
                    else:
                        conn.subs = [s for s in conn.subs if s not in args]
                        reply = {"success": True, "ret_msg": "", **base}
            else:
                reply = {"success": False, "ret_msg": f"error:unknown op {op!r}", **base}
        # a silenced socket still answers pings, as the Binance and OKX emulators do (its
        # data stopped, the connection did not)
        if not conn.silent or reply.get("ret_msg") == "pong":
            await self._send(conn, json.dumps(reply))

    # ------------------------------------------------------------------ REST
    async def _bybit_time(self, request: web.Request) -> web.Response:
        return self._ok({"timeSecond": str(self._now // 1000), "timeNano": str(self._now * 10**6)})

    async def _instruments(self, request: web.Request) -> web.Response:
        if request.query.get("category") != "spot":
            return self._fail(10001, "params error: category only support spot in this emulator")
        items = []
        for s in self.market.symbols:
            base, quote = s.split("/")
            items.append({
                "symbol": market_id(s), "baseCoin": base, "quoteCoin": quote,
                "innovation": "0", "status": "Trading", "marginTrading": "none",
                "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001",
                                  "minOrderQty": "0.000048", "maxOrderQty": "71.73956243",
                                  "minOrderAmt": "1", "maxOrderAmt": "2000000"},
                "priceFilter": {"tickSize": "0.01"},
            })
        return self._ok({"category": "spot", "list": items, "nextPageCursor": ""})

    async def _bybit_klines(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("category", "spot") != "spot":
            return self._fail(10001, "params error: category")
        symbol = self.market.symbol_of(q.get("symbol", "") or "")
        if symbol is None:
            return self._fail(10001, "params error: symbol invalid")
        tf_name = _TF_OF.get(q.get("interval", ""))
        if tf_name is None:
            return self._fail(10001, "params error: interval invalid")
        if tf_name != self.market.timeframe:
            return self._fail(10001, f"params error: emulator serves {self.market.timeframe} only")
        try:
            limit = int(q.get("limit", 200))
            start = int(q["start"]) if "start" in q else None
            end = int(q["end"]) if "end" in q else None
        except ValueError:
            return self._fail(10001, "params error")
        if not 1 <= limit <= 1000:
            return self._fail(10001, "params error: limit")
        now, tf = self._now, self.market.tf_ms
        hi_ts = now if end is None else min(end, now)
        # Bybit lists the bar that *contains* ``start`` (its open may be before ``start``),
        # as ccxt bybit's fetch_ohlcv notes (ccxt issues 20646, 26736): bars with
        # ts + tf > start, ts <= end.
        lo_ts = -(2**62) if start is None else start - tf + 1
        idx = self.market.index_range(symbol, lo_ts, hi_ts)
        idx = range(max(idx.start, idx.stop - limit), idx.stop)  # the newest `limit`
        rows = []
        for i in reversed(idx):  # newest first
            bar = self.market.bar(symbol, i, now)
            if bar.ts > now:
                continue
            rows.append([str(bar.ts), fmt(bar.open), fmt(bar.high), fmt(bar.low),
                         fmt(bar.close), fmt(bar.volume), fmt(bar.volume * bar.close)])
        return self._ok({"category": "spot", "symbol": market_id(symbol), "list": rows})
