"""An asyncio exchange emulator that speaks Binance spot's REST and websocket wire format.

Start it on 127.0.0.1 (an OS-chosen port by default), point a real ccxt / ccxt.pro client at
``rest_url`` / ``ws_url`` (see :func:`tandem.core.exchange.create_exchange`), and move its
**virtual clock** explicitly::

    async with Emulator(MarketData.generate(["BTC/USDT"], "1m", n_bars=300)) as emu:
        await emu.advance(5)            # five bars close; subscribers get kline events
        await emu.advance_to(ts)        # or jump to an exact ms time

or let it run in (accelerated) real time with :meth:`Emulator.start_realtime`.

What is served at virtual time ``now``:

* REST ``/api/v3/klines`` lists bars with ``ts <= now``: closed bars as stored, the bar
  containing ``now`` as the *forming* last row (like Binance). ``/api/v3/time``,
  ``/api/v3/ping`` and ``/api/v3/exchangeInfo`` (the played symbols, status TRADING).
* Websocket ``/ws``, ``/ws/<anything>`` (ccxt.pro connects to ``<urls.api.ws.spot>/<n>``),
  raw streams ``/ws/<stream>`` and combined ``/stream?streams=a/b`` (events wrapped as
  ``{"stream", "data"}``). JSON-RPC ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS``
  with ``{"result": ..., "id": ...}`` replies. Only ``<symbol>@kline_<base timeframe>``
  streams produce data (others are accepted silently, like Binance with an unknown symbol).
* While the clock moves from ``t0`` to ``t1`` each subscribed stream gets, in time order:
  in-progress updates (``x: false``) at ``ts + k·tf/(updates_per_bar+1)`` for ``k = 0 ..
  updates_per_bar`` (``k = 0`` is the open tick of a new bar) and the closing update
  (``x: true``, ``E`` = close time) of every bar closing in ``(t0, t1]``. Events at equal
  times: closing updates first, then by stream subscription order.
* Server pings every ``ping_interval`` s (aiohttp heartbeat; no pong in time -> closed).

Binance's limits, enforced as the exchange does (each can be turned off with None):

* ``max_msgs_per_s`` (5): a connection that sends more incoming messages than that within
  one second (text, PING and PONG frames all count) is closed with code 1008;
* ``max_streams`` (1,024 per connection): a ``SUBSCRIBE`` that would pass it is refused
  with an error reply (nothing of it is subscribed);
* ``lifetime_s`` (24 h at Binance; off by default, short in tests): every connection is
  closed after it, with a ``serverShutdown`` event ``shutdown_notice_s`` before if given;
* ``rest_weight_per_min`` (6,000 per ``rest_window_s``): request weight beyond it answers
  429 with ``Retry-After``; a request during that back-off answers 418 (a ban of ``ban_s``).

Fault injection: :meth:`inject_message_fault` (duplicate / out-of-order / late / malformed /
dropped events), :meth:`fail_rest`, :meth:`stall_rest`, :meth:`refuse_handshakes`,
:meth:`close_connections` (close frame), :meth:`abort_connections` (TCP abort),
:meth:`silence_connections` (no data, pongs still answered), :meth:`send_raw`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from tandem.daemon.emulator.faults import (
    FaultPlan,
    HandshakeFault,
    MessageFault,
    MessageFaultKind,
    RestFault,
)
from tandem.daemon.emulator.market import (
    BINANCE_INTERVALS,
    MarketData,
    closed_rows_json,
    kline_event_json,
    kline_row,
    market_id,
)

log = structlog.get_logger(__name__)

#: Binance spot request weights (GET); anything else weighs 1
_REST_WEIGHT = {"/api/v3/klines": 2, "/api/v3/exchangeInfo": 20}

_INTERNAL_ERROR = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}


def _err(status: int, code: int, msg: str) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status)


@dataclass(eq=False)
class Connection:
    """One accepted websocket and what it subscribed to."""

    ws: web.WebSocketResponse
    transport: Any
    path: str
    combined: bool
    subs: list[str] = field(default_factory=list)  # stream names, subscription order
    silent: bool = False
    held_next: list[str] = field(default_factory=list)  # OUT_OF_ORDER: after the next event
    held_late: list[tuple[int, str]] = field(default_factory=list)  # LATE: (release ms, text)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sent: int = 0
    msg_times: deque = field(default_factory=deque)  # arrival times of incoming messages
    received: int = 0


@dataclass
class _Event:
    time: int
    order: int  # 0 = closing update, 1 = in-progress (closing first at equal times)
    stream_rank: int
    stream: str
    symbol: str
    closed: bool
    text: str  # the raw-stream JSON frame
    payload_ts: int  # the kline's bar open time


class Emulator:
    """Binance-spot-speaking server replaying :class:`MarketData` on a virtual clock."""

    def __init__(
        self,
        market: MarketData,
        *,
        start: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        updates_per_bar: int = 1,
        ping_interval: float | None = 20.0,
        ws_compress: bool = False,
        send_timeout: float = 5.0,
        max_msgs_per_s: int | None = 5,
        max_streams: int | None = 1024,
        lifetime_s: float | None = None,
        shutdown_notice_s: float | None = None,
        rest_weight_per_min: int | None = 6000,
        rest_window_s: float = 60.0,
        ban_s: float | None = None,
        listed: Sequence[str] = (),
    ):
        self.market = market
        #: symbols exchangeInfo lists besides the played ones (no candles): a venue's
        #: full market list, e.g. Binance's ~3,000 spot markets for a memory benchmark
        played = set(market.symbols)
        self.listed = [s for s in dict.fromkeys(listed) if s not in played]
        self.host = host
        self.port = port
        self.updates_per_bar = max(0, int(updates_per_bar))
        self.ping_interval = ping_interval
        # permessage-deflate costs ~as much CPU as building the frame; off unless asked for.
        self.ws_compress = ws_compress
        self.send_timeout = send_timeout
        self.max_msgs_per_s = max_msgs_per_s
        self.max_streams = max_streams
        self.lifetime_s = lifetime_s
        self.shutdown_notice_s = shutdown_notice_s
        self.rest_weight_per_min = rest_weight_per_min
        self.rest_window_s = float(rest_window_s)
        self.ban_s = 2.0 * self.rest_window_s if ban_s is None else float(ban_s)
        # what the limits saw (tests assert on these)
        self.rate_closes = 0  # connections closed 1008 for their message rate
        self.peak_msgs_per_s = 0  # most incoming messages any connection sent within 1 s
        self.refused_subscribes = 0
        #: (connection path, streams) of every accepted SUBSCRIBE, in arrival order
        self.subscribe_log: list[tuple[str, list[str]]] = []
        self.lifetime_closes = 0
        self.shutdown_notices = 0
        self.rest_429 = 0
        self.rest_418 = 0
        self.peak_weight = 0  # most REST weight used within one window
        self._window_start = time.monotonic()
        self._window_weight = 0
        self._retry_until = 0.0  # after a 429: requests before this are banned (418)
        self._banned_until = 0.0
        # Optional hook ``(symbol, bar_ts, closed, perf_counter)`` called right after each
        # kline frame was written (for latency benchmarks: "frame left the emulator").
        self.on_frame: Callable[[str, int, bool, float], None] | None = None
        self._now = int(market.first_ts if start is None else start)
        self.faults = FaultPlan()
        self.connections: list[Connection] = []
        self.rest_log: list[tuple[str, dict[str, str]]] = []  # (path, query) of every request
        self.handshakes = 0  # accepted websocket handshakes
        self._stream_rank: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._clock_lock = asyncio.Lock()
        self._rt_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> Emulator:
        """Bind and serve; ``port`` becomes the real port when 0 was asked."""
        app = web.Application(middlewares=[self._rest_middleware])
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("emulator_started", rest_url=self.rest_url, ws_url=self.ws_url, now=self._now)
        return self

    #: REST paths under this prefix are logged, rate-limited and fault-injected
    rest_prefix = "/api/"
    #: the klines endpoint (the default target of REST faults)
    klines_path = "/api/v3/klines"

    def _add_routes(self, app: web.Application) -> None:
        """The venue's endpoints (Binance spot here; see tandem.daemon.emulator.bybit)."""
        app.router.add_get("/api/v3/ping", self._ping)
        app.router.add_get("/api/v3/time", self._time)
        app.router.add_get("/api/v3/exchangeInfo", self._exchange_info)
        app.router.add_get("/api/v3/klines", self._klines)
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/ws/{tail:.*}", self._ws_handler)
        app.router.add_get("/stream", self._ws_handler)

    @staticmethod
    def _parse_stream(name: str) -> tuple[str, str] | None:
        return _parse_stream(name)

    @staticmethod
    def _event_json(symbol: str, interval: str, bar: Any, tf: int, t: int) -> str:
        return kline_event_json(symbol, interval, bar, tf, t)

    async def stop(self) -> None:
        """Stop real-time play, close every socket (going away) and the listener."""
        await self.stop_realtime()
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1001, message=b"server shutdown"), 1.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Value for ccxt ``urls.api.public`` (Binance spot REST base)."""
        return f"{self.base_url}/api/v3"

    @property
    def ws_url(self) -> str:
        """Value for ccxt.pro ``urls.api.ws.spot``."""
        return f"ws://{self.host}:{self.port}/ws"

    # ------------------------------------------------------------------ clock
    @property
    def now(self) -> int:
        """Virtual time, ms since the epoch."""
        return self._now

    async def advance_to(self, ts: int) -> int:
        """Move the clock forward to ``ts`` and send every event due; returns events sent.

        Returns after the frames were written to the sockets (not necessarily read by the
        client). Moving backwards is an error: the exchange's history is immutable.
        """
        ts = int(ts)
        async with self._clock_lock:
            if ts < self._now:
                raise ValueError(f"virtual clock cannot go back ({ts} < {self._now})")
            t0, self._now = self._now, ts
            events = self._events_between(t0, ts)
            sent = 0
            for ev in events:
                sent += await self._broadcast(ev)
            await self._release_late()
            return sent

    async def advance(self, n_bars: int = 1) -> int:
        """Advance to the ``n_bars``-th next base-timeframe boundary (closes ``n_bars`` bars)."""
        tf = self.market.tf_ms
        return await self.advance_to((self._now // tf + n_bars) * tf)

    def start_realtime(self, speed: float = 1.0, tick_s: float = 0.05, stop_at: int | None = None) -> None:
        """Play in wall time × ``speed`` until ``stop_at`` (default: the last bar's close)."""
        if self._rt_task is not None:
            raise RuntimeError("real-time play already running")
        end = self.market.end_ts if stop_at is None else int(stop_at)
        self._rt_task = asyncio.create_task(self._realtime(speed, tick_s, end))

    async def stop_realtime(self) -> None:
        task, self._rt_task = self._rt_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_realtime(self) -> None:
        """Wait until real-time play reached its end."""
        if self._rt_task is not None:
            await asyncio.shield(self._rt_task)

    async def _realtime(self, speed: float, tick_s: float, end: int) -> None:
        loop = asyncio.get_running_loop()
        v0, w0 = self._now, loop.time()
        while self._now < end:
            await asyncio.sleep(tick_s)
            target = min(end, v0 + int((loop.time() - w0) * 1000.0 * speed))
            if target > self._now:
                await self.advance_to(target)

    def _events_between(self, t0: int, t1: int) -> list[_Event]:
        """Every stream event with time in ``(t0, t1]`` (see the module docstring)."""
        market, tf = self.market, self.market.tf_ms
        streams = {s for c in self.connections if not c.ws.closed for s in c.subs}
        events: list[_Event] = []
        for stream in streams:
            parsed = self._parse_stream(stream)
            if parsed is None:
                continue
            mid, interval = parsed
            symbol = market.symbol_of(mid)
            if symbol is None or interval != market.timeframe:
                continue
            rank = self._stream_rank.get(stream, 0)
            ticks = [tf * k // (self.updates_per_bar + 1) for k in range(self.updates_per_bar + 1)]
            for i in market.index_range(symbol, t0 - tf + 1, t1):
                bar_ts = int(market.ts[symbol][i])
                for off in ticks:
                    t = bar_ts + off
                    if t0 < t <= t1:
                        bar = market.bar(symbol, i, t)
                        events.append(_Event(t, 1, rank, stream, symbol, False,
                                             self._event_json(symbol, interval, bar, tf, t), bar_ts))
                t = bar_ts + tf
                if t0 < t <= t1:
                    bar = market.bar(symbol, i)
                    events.append(_Event(t, 0, rank, stream, symbol, True,
                                         self._event_json(symbol, interval, bar, tf, t), bar_ts))
        events.sort(key=lambda e: (e.time, e.order, e.stream_rank))
        return events

    # ------------------------------------------------------------------ websocket
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        refusal = self.faults.take_handshake()
        if refusal is not None:
            log.info("emulator_handshake_refused", status=refusal.status)
            return web.json_response(_INTERNAL_ERROR, status=refusal.status)
        # autoping off: PING and PONG frames reach the loop below, where they count toward
        # the message rate like on Binance (answered here).
        ws = web.WebSocketResponse(heartbeat=self.ping_interval, autoping=False, compress=self.ws_compress)
        await ws.prepare(request)
        self.handshakes += 1
        combined = request.path == "/stream"
        conn = Connection(ws=ws, transport=request.transport, path=request.path, combined=combined)
        # Raw streams in the URL: /ws/btcusdt@kline_1m, /stream?streams=a/b (ccxt's /ws/0: none).
        initial = request.query.get("streams", "") if combined else request.match_info.get("tail", "")
        for name in filter(None, initial.split("/")):
            if _parse_stream(name) is not None:
                self._subscribe(conn, [name])
        self.connections.append(conn)
        lifetime = (asyncio.create_task(self._lifetime(conn))
                    if self.lifetime_s is not None else None)
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                    if not await self._count_message(conn):
                        break
                if msg.type == WSMsgType.TEXT:
                    await self._on_client_text(conn, msg.data)
                elif msg.type == WSMsgType.PING:
                    with contextlib.suppress(Exception):
                        await ws.pong(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if lifetime is not None:
                lifetime.cancel()
            if conn in self.connections:
                self.connections.remove(conn)
        return ws

    async def _count_message(self, conn: Connection) -> bool:
        """Count one incoming message; over ``max_msgs_per_s`` in a second: close 1008."""
        now = time.monotonic()
        conn.received += 1
        times = conn.msg_times
        times.append(now)
        while times and now - times[0] >= 1.0:
            times.popleft()
        self.peak_msgs_per_s = max(self.peak_msgs_per_s, len(times))
        if self.max_msgs_per_s is None or len(times) <= self.max_msgs_per_s:
            return True
        self.rate_closes += 1
        log.info("emulator_rate_close", path=conn.path, msgs_in_1s=len(times))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.ws.close(code=1008, message=b"Too many requests"), 2.0)
        return False

    async def _lifetime(self, conn: Connection) -> None:
        """End ``conn`` after ``lifetime_s`` (Binance: 24 h), announcing it first if asked."""
        assert self.lifetime_s is not None
        notice = self.shutdown_notice_s
        if notice is not None and 0 <= notice < self.lifetime_s:
            await asyncio.sleep(self.lifetime_s - notice)
            self.shutdown_notices += 1
            await self._send(conn, json.dumps({"e": "serverShutdown", "E": self._now}))
            await asyncio.sleep(notice)
        else:
            await asyncio.sleep(self.lifetime_s)
        if not conn.ws.closed:
            self.lifetime_closes += 1
            log.info("emulator_lifetime_close", path=conn.path)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=1000, message=b"connection lifetime"), 2.0)

    async def _on_client_text(self, conn: Connection, text: str) -> None:
        try:
            req = json.loads(text)
        except ValueError:
            await self._send(conn, json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        if not isinstance(req, dict):
            await self._send(conn, json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        rid, method, params = req.get("id"), req.get("method"), req.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                reply = {"error": {"code": 2, "msg": "Invalid request: params"}, "id": rid}
            else:
                new = {p.lower() if "@" in p else p for p in params} - set(conn.subs)
                if (method == "SUBSCRIBE" and self.max_streams is not None
                        and len(conn.subs) + len(new) > self.max_streams):
                    self.refused_subscribes += 1
                    reply = {"error": {"code": 2, "msg": "Invalid request: too many streams "
                                       f"(max {self.max_streams} per connection)"}, "id": rid}
                elif method == "SUBSCRIBE":
                    self._subscribe(conn, params)
                    self.subscribe_log.append((conn.path, list(params)))
                    reply = {"result": None, "id": rid}
                else:
                    conn.subs = [s for s in conn.subs if s not in params]
                    reply = {"result": None, "id": rid}
        elif method == "LIST_SUBSCRIPTIONS":
            reply = {"result": list(conn.subs), "id": rid}
        else:
            reply = {"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid}
        if not conn.silent:
            await self._send(conn, json.dumps(reply))

    def _subscribe(self, conn: Connection, streams: list[str]) -> None:
        for s in streams:
            s = s.lower() if "@" in s else s
            if s not in conn.subs:
                conn.subs.append(s)
            self._stream_rank.setdefault(s, len(self._stream_rank))

    async def _send(self, conn: Connection, text: str) -> None:
        async with conn.lock:
            if conn.ws.closed:
                return
            try:
                # send_str waits when the socket buffer is full; a client that stopped reading
                # must not stall the clock forever: drop it, as Binance drops slow consumers.
                async with asyncio.timeout(self.send_timeout):  # no extra task, unlike wait_for
                    await conn.ws.send_str(text)
                conn.sent += 1
            except TimeoutError:
                log.warning("emulator_slow_consumer_dropped", path=conn.path)
                if conn.transport is not None:
                    conn.transport.abort()
            except (ConnectionError, RuntimeError):
                pass  # the peer went away mid-send; its handler cleans up

    @staticmethod
    def _frame(conn: Connection, stream: str, text: str) -> str:
        return f'{{"stream":"{stream}","data":{text}}}' if conn.combined else text

    async def _broadcast(self, ev: _Event) -> int:
        n = 0
        for conn in list(self.connections):
            if ev.stream in conn.subs and not conn.silent and not conn.ws.closed:
                await self._deliver(conn, ev, self._frame(conn, ev.stream, ev.text))
                n += 1
        return n

    async def _deliver(self, conn: Connection, ev: _Event, text: str) -> None:
        fault = self.faults.take_message(ev.symbol, ev.closed)
        kind = fault.kind if fault is not None else None
        if kind is not None:
            log.info("emulator_message_fault", kind=str(kind), symbol=ev.symbol, time=ev.time)
        if kind == MessageFaultKind.DROP:
            return
        if kind == MessageFaultKind.OUT_OF_ORDER:
            conn.held_next.append(text)
            return
        if kind == MessageFaultKind.LATE:
            assert fault is not None
            conn.held_late.append((ev.time + fault.delay_ms, text))
            return
        if kind == MessageFaultKind.MALFORMED:
            await self._send(conn, text[: len(text) // 2])  # a truncated, unparsable frame
        await self._send(conn, text)
        if self.on_frame is not None:  # benchmarks: when this kline frame left the emulator
            self.on_frame(ev.symbol, ev.payload_ts, ev.closed, time.perf_counter())
        if kind == MessageFaultKind.DUPLICATE:
            await self._send(conn, text)
        held, conn.held_next = conn.held_next, []
        for old in held:
            await self._send(conn, old)

    async def _release_late(self) -> None:
        for conn in list(self.connections):
            due = [t for t in conn.held_late if t[0] <= self._now]
            if due:
                conn.held_late = [t for t in conn.held_late if t[0] > self._now]
                for _, text in due:
                    await self._send(conn, text)

    # ------------------------------------------------------------------ faults
    def inject_message_fault(
        self,
        kind: MessageFaultKind | str,
        count: int = 1,
        *,
        symbol: str | None = None,
        closing_only: bool = True,
        delay_ms: int = 0,
    ) -> MessageFault:
        """Disturb the next ``count`` matching kline events (see :class:`MessageFaultKind`)."""
        fault = MessageFault(MessageFaultKind(kind), count, symbol, closing_only, int(delay_ms))
        self.faults.messages.append(fault)
        return fault

    def fail_rest(self, count: int = 1, status: int = 503, path_prefix: str | None = None) -> RestFault:
        """The next ``count`` REST requests under ``path_prefix`` (default: the venue's
        klines path) answer HTTP ``status``."""
        fault = RestFault(count=count, status=status, path_prefix=path_prefix or self.klines_path)
        self.faults.rest.append(fault)
        return fault

    def stall_rest(self, count: int = 1, seconds: float = 30.0, path_prefix: str | None = None) -> RestFault:
        """The next ``count`` REST requests stall ``seconds`` before answering (timeouts)."""
        fault = RestFault(count=count, status=200, delay_s=seconds,
                          path_prefix=path_prefix or self.klines_path)
        self.faults.rest.append(fault)
        return fault

    def refuse_handshakes(self, count: int = 1, status: int = 503) -> HandshakeFault:
        """The next ``count`` websocket handshakes are answered with HTTP ``status``."""
        fault = HandshakeFault(count=count, status=status)
        self.faults.handshakes.append(fault)
        return fault

    async def close_connections(self, code: int = 1000, message: str = "") -> int:
        """Send a close frame on every open websocket; returns how many."""
        conns = [c for c in self.connections if not c.ws.closed]
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(code=code, message=message.encode()), 2.0)
        log.info("emulator_closed_connections", count=len(conns), code=code)
        return len(conns)

    def abort_connections(self) -> int:
        """Abort every websocket's TCP connection (no close frame); returns how many."""
        conns = [c for c in self.connections if not c.ws.closed]
        for conn in conns:
            if conn.transport is not None:
                conn.transport.abort()
        log.info("emulator_aborted_connections", count=len(conns))
        return len(conns)

    def silence_connections(self, silent: bool = True) -> int:
        """Stop (or resume) all data on the *current* sockets; pings/pongs keep flowing."""
        for conn in self.connections:
            conn.silent = silent
        return len(self.connections)

    async def send_raw(self, message: str | dict | list, stream: str | None = None) -> int:
        """Send one frame as-is to every socket (subscribed to ``stream`` if given)."""
        text = message if isinstance(message, str) else json.dumps(message)
        n = 0
        for conn in list(self.connections):
            if stream is None or stream in conn.subs:
                await self._send(conn, text)
                n += 1
        return n

    def closed_candles(self, symbol: str) -> Any:
        """Ground truth for tests: ``symbol``'s bars closed by the virtual clock (a DataFrame)."""
        frame = self.market.frame(symbol)
        return frame[frame["ts"] + self.market.tf_ms <= self._now].reset_index(drop=True)

    def subscriptions(self) -> set[str]:
        """Streams subscribed on any open socket."""
        return {s for c in self.connections if not c.ws.closed for s in c.subs}

    # ------------------------------------------------------------------ REST
    @web.middleware
    async def _rest_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(self.rest_prefix):
            self.rest_log.append((request.path, dict(request.query)))
            limited = self._spend_weight(request.path)
            if limited is not None:
                return limited
            fault = self.faults.take_rest(request.path)
            if fault is not None:
                log.info("emulator_rest_fault", path=request.path, status=fault.status, delay_s=fault.delay_s)
                if fault.delay_s > 0:
                    await asyncio.sleep(fault.delay_s)
                if fault.status >= 400:
                    return web.json_response(_INTERNAL_ERROR, status=fault.status)
        response = await handler(request)
        response.headers["x-mbx-used-weight-1m"] = str(self._window_weight)
        return response

    def _spend_weight(self, path: str) -> web.Response | None:
        """Binance's request-weight rule: None (go on) or the 429/418 answer."""
        if self.rest_weight_per_min is None:
            return None
        now = time.monotonic()
        if now < self._banned_until:
            self.rest_418 += 1
            return self._limited(418, -1003, self._banned_until - now, "IP banned")
        if now < self._retry_until:
            # Kept sending after a 429: Binance bans the IP (418).
            self._banned_until = now + self.ban_s
            self.rest_418 += 1
            log.info("emulator_rest_ban", seconds=self.ban_s)
            return self._limited(418, -1003, self.ban_s, "IP banned")
        if now - self._window_start >= self.rest_window_s:
            elapsed = now - self._window_start
            self._window_start += (elapsed // self.rest_window_s) * self.rest_window_s
            self._window_weight = 0
        weight = _REST_WEIGHT.get(path, 1)
        if self._window_weight + weight > self.rest_weight_per_min:
            retry = self._window_start + self.rest_window_s - now
            self._retry_until = now + retry
            self.rest_429 += 1
            return self._limited(429, -1003, retry, "Too many requests")
        self._window_weight += weight
        self.peak_weight = max(self.peak_weight, self._window_weight)
        return None

    def _limited(self, status: int, code: int, retry_s: float, what: str) -> web.Response:
        resp = _err(status, code, f"{what}; current limit is {self.rest_weight_per_min} "
                                  "request weight per 1 MINUTE.")
        resp.headers["Retry-After"] = str(max(1, int(retry_s + 0.999)))
        resp.headers["x-mbx-used-weight-1m"] = str(self._window_weight)
        return resp

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self._now})

    async def _exchange_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "timezone": "UTC",
                "serverTime": self._now,
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
                ],
                "exchangeFilters": [],
                "symbols": [_symbol_info(s) for s in (*self.market.symbols, *self.listed)],
            }
        )

    async def _klines(self, request: web.Request) -> web.Response:
        q = request.query
        mid, interval = q.get("symbol"), q.get("interval")
        if not mid:
            return _err(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        if not interval:
            return _err(400, -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.")
        symbol = self.market.symbol_of(mid)
        if symbol is None:
            return _err(400, -1121, "Invalid symbol.")
        if interval not in BINANCE_INTERVALS:
            return _err(400, -1120, "Invalid interval.")
        if interval != self.market.timeframe:
            return _err(400, -1120, f"Invalid interval. (emulator serves {self.market.timeframe} only)")
        try:
            limit = int(q.get("limit", 500))
            start = int(q["startTime"]) if "startTime" in q else None
            end = int(q["endTime"]) if "endTime" in q else None
        except ValueError:
            return _err(400, -1100, "Illegal characters found in a parameter.")
        if not 1 <= limit <= 1000:
            return _err(400, -1130, "Data sent for parameter 'limit' is not valid.")
        ts = self.market.ts[symbol]
        now = self._now
        visible = self.market.index_range(symbol, ts[0] if len(ts) else 0, now) if len(ts) else range(0)
        lo, hi = visible.start, visible.stop
        if end is not None:
            hi = min(hi, self.market.index_range(symbol, -(2**62), end).stop)
        if start is not None:
            lo = max(lo, self.market.index_range(symbol, start, 2**62).start)
            idx = range(lo, min(hi, lo + limit))
        else:
            idx = range(max(lo, hi - limit), hi)
        tf = self.market.tf_ms
        # Closed rows in one pass (closed_rows_json); the forming row, if listed, as before.
        n_closed = self.market.index_range(symbol, -(2**62), now - tf).stop  # ts + tf <= now
        closed_hi = min(idx.stop, max(idx.start, n_closed))
        texts = closed_rows_json(self.market, symbol, idx.start, closed_hi)
        texts += [json.dumps(kline_row(self.market.bar(symbol, i, now), tf))
                  for i in range(closed_hi, idx.stop)]
        return web.Response(text="[" + ", ".join(texts) + "]", content_type="application/json")


def _parse_stream(name: str) -> tuple[str, str] | None:
    """``btcusdt@kline_1m`` -> (``btcusdt``, ``1m``); None for anything else."""
    mid, sep, rest = name.partition("@kline_")
    if not sep or not mid or not rest:
        return None
    return mid, rest


def _symbol_info(symbol: str) -> dict:
    base, quote = symbol.split("/")
    return {
        "symbol": market_id(symbol),
        "status": "TRADING",
        "baseAsset": base,
        "baseAssetPrecision": 8,
        "quoteAsset": quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000.00000000",
             "tickSize": "0.00000001"},
            {"filterType": "LOT_SIZE", "minQty": "0.00000001", "maxQty": "9000000.00000000",
             "stepSize": "0.00000001"},
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }
