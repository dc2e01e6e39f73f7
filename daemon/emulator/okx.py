"""The emulator speaking OKX v5 (public REST market endpoints + the business websocket).

Same market, virtual clock, forming/closing updates and fault plan as the Binance emulator
(:class:`tandem.daemon.emulator.server.Emulator`); only the wire differs, as OKX documents it and
as ccxt / ccxt.pro ``okx`` use it:

* ``GET /api/v5/public/instruments?instType=SPOT`` (what ccxt's load_markets reads) and
  ``GET /api/v5/public/time``;
* ``GET /api/v5/market/candles?instId&bar&after&before&limit`` — only the newest 1,440
  bars, ``limit`` <= 300 (default 100); ``GET /api/v5/market/history-candles`` — all bars,
  ``limit`` <= 300 (older docs: 100). Both list the newest ``limit`` rows with ``before <
  ts < after`` (and ``ts <= now``: the forming bar included), newest first, each ``[ts, o,
  h, l, c, vol, volCcy, volCcyQuote, confirm]`` as strings (``confirm`` "1" = complete;
  for SPOT ``vol`` is in base currency, ``volCcy`` and ``volCcyQuote`` in quote). Errors are
  ``{"code": "51000"/"51001", "msg", "data": []}``;
* per-IP rate limits (``rate_limits``; None turns them off): candles 40 requests / 2 s,
  history-candles 20 / 2 s; beyond them HTTP 429 ``{"code": "50011", "msg": "Too Many
  Requests"}``;
* websocket ``/ws/v5/business``: the text frame ``ping`` answered ``pong`` (OKX has no
  protocol-level ping); ``{"op": "subscribe", "args": [{"channel": "candle1m", "instId":
  "BTC-USDT"}, ...], "id"?}`` acknowledged once per channel with ``{"event": "subscribe",
  "arg", "connId"}``; errors ``{"event": "error", "code", "msg", "connId"}`` (60012 a bad
  request or args over 64 KB, 60018 an unknown channel or instrument, 60014 past 480
  subscribe requests an hour on one connection); candle frames ``{"arg", "data": [[...,
  confirm]]}``.

Not emulated: OKX closing a connection that carried no data for 30 s (the client's
``ping`` every 18 s keeps it) and its 3 connection requests per second per IP.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from aiohttp import web
from tandem.daemon.emulator.market import fmt
from tandem.daemon.emulator.server import Connection, Emulator

#: ccxt timeframe -> OKX bar (UTC-aligned variants from 6h up, as the daemon asks)
OKX_BARS = {"1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1H",
            "2h": "2H", "4h": "4H", "6h": "6Hutc", "12h": "12Hutc", "1d": "1Dutc",
            "1w": "1Wutc", "1M": "1Mutc"}
_TF_OF = {v: k for k, v in OKX_BARS.items()}
RECENT_BARS = 1440  # /market/candles serves this many newest bars
MAX_ARGS_BYTES = 64 * 1024
SUBSCRIBES_PER_HOUR = 480
#: path -> (requests, window s): OKX's per-IP limits on the candle endpoints
RATE_LIMITS = {"/api/v5/market/candles": (40, 2.0),
               "/api/v5/market/history-candles": (20, 2.0)}


def inst_id(symbol: str) -> str:
    return symbol.replace("/", "-")


def _ok(data: Any) -> web.Response:
    return web.json_response({"code": "0", "msg": "", "data": data})


def _fail(code: str, msg: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": msg, "data": []}, status=status)


class OkxEmulator(Emulator):
    """:class:`Emulator` with OKX's wire protocol (module docstring)."""

    rest_prefix = "/api/v5/"
    klines_path = "/api/v5/market/"  # REST faults hit candles and history-candles

    def __init__(self, market, *, rate_limits: dict[str, tuple[int, float]] | None = None,
                 **kw: Any):
        kw.setdefault("rest_weight_per_min", None)  # Binance's rule; OKX's are rate_limits
        kw.setdefault("max_msgs_per_s", None)
        kw.setdefault("ping_interval", None)  # OKX: the client sends "ping" text frames
        super().__init__(market, **kw)
        self.rate_limits = dict(RATE_LIMITS) if rate_limits is None else rate_limits
        self._rest_times: dict[str, deque] = {}
        self.rest_429 = 0
        #: most requests any limited path saw within its window
        self.peak_rest_rate: dict[str, int] = {}
        self._subs_sent: dict[int, deque] = {}  # id(conn) -> times of subscribe requests

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v5/public/time", self._okx_time)
        app.router.add_get("/api/v5/public/instruments", self._instruments)
        app.router.add_get("/api/v5/market/candles", self._candles)
        app.router.add_get("/api/v5/market/history-candles", self._history_candles)
        app.router.add_get("/ws/v5/business", self._ws_handler)

    @property
    def rest_url(self) -> str:
        """Value for ccxt okx ``urls.api.rest`` (it appends ``/api/v5/<path>``)."""
        return self.base_url

    @property
    def ws_url(self) -> str:
        """Value for ccxt.pro okx ``urls.api.ws`` (it appends ``/business``)."""
        return f"ws://{self.host}:{self.port}/ws/v5"

    # ------------------------------------------------------------------ rate limits
    def _spend_weight(self, path: str) -> web.Response | None:
        limit = self.rate_limits.get(path)
        if limit is None:
            return None
        n, window = limit
        now = time.monotonic()
        times = self._rest_times.setdefault(path, deque())
        while times and now - times[0] >= window:
            times.popleft()
        if len(times) >= n:
            self.rest_429 += 1
            return _fail("50011", "Too Many Requests", status=429)
        times.append(now)
        self.peak_rest_rate[path] = max(self.peak_rest_rate.get(path, 0), len(times))
        return None

    # ------------------------------------------------------------------ websocket
    @staticmethod
    def _parse_stream(name: str) -> tuple[str, str] | None:
        channel, _, iid = name.partition(":")
        tf = _TF_OF.get(channel[len("candle"):]) if channel.startswith("candle") else None
        if tf is None or iid.count("-") != 1:
            return None
        return iid.replace("-", ""), tf

    @staticmethod
    def _event_json(symbol: str, interval: str, bar: Any, tf: int, t: int) -> str:
        return (
            f'{{"arg":{{"channel":"candle{OKX_BARS[interval]}","instId":"{inst_id(symbol)}"}},'
            f'"data":[["{bar.ts}","{fmt(bar.open)}","{fmt(bar.high)}","{fmt(bar.low)}",'
            f'"{fmt(bar.close)}","{fmt(bar.volume)}","{fmt(bar.volume * bar.close)}",'
            f'"{fmt(bar.volume * bar.close)}","{"1" if bar.closed else "0"}"]]}}'
        )

    async def _on_client_text(self, conn: Connection, text: str) -> None:
        if text == "ping":
            await self._send(conn, "pong")  # answered even on a silenced socket, as pongs are
            return
        conn_id = f"{id(conn) & 0xFFFFFFFF:08x}"
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            replies = [self._error("60012", f"Illegal request: {text[:200]}", conn_id)]
        else:
            replies = self._on_request(conn, req, text, conn_id)
        if not conn.silent:
            for reply in replies:
                await self._send(conn, json.dumps(reply))

    @staticmethod
    def _error(code: str, msg: str, conn_id: str, rid: Any = None) -> dict:
        reply = {"event": "error", "code": code, "msg": msg, "connId": conn_id}
        if rid is not None:
            reply["id"] = rid
        return reply

    def _on_request(self, conn: Connection, req: dict, text: str, conn_id: str) -> list[dict]:
        op, args, rid = req.get("op"), req.get("args"), req.get("id")
        if op not in ("subscribe", "unsubscribe"):
            return [self._error("60019", f"Invalid op: {op}", conn_id, rid)]
        sent = self._subs_sent.setdefault(id(conn), deque())
        now = time.monotonic()
        while sent and now - sent[0] >= 3600.0:
            sent.popleft()
        if len(sent) >= SUBSCRIBES_PER_HOUR:
            self.refused_subscribes += 1
            return [self._error("60014", "Requests too frequent.", conn_id, rid)]
        sent.append(now)
        if (not isinstance(args, list) or not args
                or not all(isinstance(a, dict) and isinstance(a.get("channel"), str)
                           and isinstance(a.get("instId"), str) for a in args)):
            return [self._error("60012", f"Illegal request: {text[:200]}", conn_id, rid)]
        if len(json.dumps(args)) > MAX_ARGS_BYTES:
            self.refused_subscribes += 1
            return [self._error("60012", "Illegal request: args over 64 KB", conn_id, rid)]
        names = [f"{a['channel']}:{a['instId']}" for a in args]
        for a, name in zip(args, names, strict=True):
            parsed = self._parse_stream(name)
            if parsed is None or self.market.symbol_of(parsed[0]) is None:
                return [self._error(
                    "60018", f"Wrong URL or channel:{a['channel']},instId:{a['instId']} "
                    "doesn't exist. Please use the correct URL, channel and parameters "
                    "referring to API document.", conn_id, rid)]
        if op == "subscribe":
            self._subscribe(conn, names)
            self.subscribe_log.append((conn.path, names))
        else:
            conn.subs = [s for s in conn.subs if s not in names]
        ack = {"event": op, "connId": conn_id}
        if rid is not None:
            ack["id"] = rid
        return [{**ack, "arg": {"channel": a["channel"], "instId": a["instId"]}} for a in args]

    # ------------------------------------------------------------------ REST
    async def _okx_time(self, request: web.Request) -> web.Response:
        return _ok([{"ts": str(self._now)}])

    async def _instruments(self, request: web.Request) -> web.Response:
        if request.query.get("instType") != "SPOT":
            return _fail("51000", "Parameter instType error (this emulator lists SPOT only)")
        items = []
        for s in self.market.symbols:
            base, quote = s.split("/")
            items.append({
                "alias": "", "baseCcy": base, "category": "1", "ctMult": "", "ctType": "",
                "ctVal": "", "ctValCcy": "", "expTime": "", "instFamily": "",
                "instId": inst_id(s), "instType": "SPOT", "lever": "", "listTime": "0",
                "lotSz": "0.00000001", "maxIcebergSz": "9999999999", "maxLmtAmt": "20000000",
                "maxLmtSz": "9999999999", "maxMktAmt": "1000000", "maxMktSz": "",
                "maxStopSz": "", "maxTriggerSz": "9999999999", "maxTwapSz": "9999999999",
                "minSz": "0.00001", "optType": "", "quoteCcy": quote, "settleCcy": "",
                "state": "live", "stk": "", "tickSz": "0.01", "uly": "", "ruleType": "normal",
            })
        return _ok(items)

    async def _candles(self, request: web.Request) -> web.Response:
        return self._candle_rows(request.query, max_limit=300, recent_only=True)

    async def _history_candles(self, request: web.Request) -> web.Response:
        # 300 like candles: OKX's current docs ("The maximum is 300. The default is 100.",
        # https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks-history)
        # and ccxt okx, which sends limit=300 here by default; older copies of the docs said
        # 100, so the daemon's pages stay at 100 (daemon.venues.OkxAdapter.rest_page_limit).
        return self._candle_rows(request.query, max_limit=300, recent_only=False)

    def _candle_rows(self, q: Any, max_limit: int, recent_only: bool) -> web.Response:
        symbol = self.market.symbol_of((q.get("instId") or "").replace("-", "")) \
            if (q.get("instId") or "").count("-") == 1 else None
        if symbol is None:
            return _fail("51001", "Instrument ID does not exist")
        tf_name = _TF_OF.get(q.get("bar", "1m"))
        if tf_name is None:
            return _fail("51000", "Parameter bar error")
        if tf_name != self.market.timeframe:
            return _fail("51000", f"Parameter bar error (emulator serves {self.market.timeframe})")
        try:
            limit = int(q.get("limit", 100))
            after = int(q["after"]) if "after" in q else None
            before = int(q["before"]) if "before" in q else None
        except ValueError:
            return _fail("51000", "Parameter after/before/limit error")
        if not 1 <= limit <= max_limit:
            return _fail("51000", "Parameter limit error")
        now, tf = self._now, self.market.tf_ms
        hi = now if after is None else min(after - 1, now)
        lo = -(2**62) if before is None else before + 1
        if recent_only:  # the newest 1,440 bars (the forming one counts)
            lo = max(lo, (now // tf - RECENT_BARS + 1) * tf)
        idx = self.market.index_range(symbol, lo, hi)
        rows = []
        for i in reversed(range(max(idx.start, idx.stop - limit), idx.stop)):  # newest first
            bar = self.market.bar(symbol, i, now)
            quote = fmt(bar.volume * bar.close)  # SPOT: volCcy is in quote currency too
            rows.append([str(bar.ts), fmt(bar.open), fmt(bar.high), fmt(bar.low),
                         fmt(bar.close), fmt(bar.volume), quote, quote,
                         "1" if bar.closed else "0"])
        return _ok(rows)
