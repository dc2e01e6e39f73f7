"""Batched kline subscriptions on ccxt.pro's own connections, inside Binance's limits.

ccxt.pro sends one ``SUBSCRIBE`` per stream on one shared connection (DESIGN.md, "What we
know about ccxt.pro"): 500 streams were 500 messages at ~4/s, and with the PONG to the
server's PING that broke Binance's 5-incoming-messages-per-second rule (close 1008) again
and again. Here the client stays ccxt.pro's — its connection, ping/pong, frame decoding,
futures and reconnect-by-``watch`` — only the subscribe step changes:

* a stream gets a fixed connection for the session (:class:`ConnectionPlan`, at most
  ``streams_per_connection`` each, 1,024 at most by Binance's rule): connection ``k`` is
  ccxt's URL ``<ws>/<k>``, so a reconnect of one connection resubscribes only its streams;
* the streams waiting on one connection go out together, many per ``SUBSCRIBE``
  (:class:`SubscribeBatcher`), at most ``msgs_per_s`` messages in any second on that
  connection (3 by default: headroom for the PONGs under Binance's 5).

The same batching serves every venue whose adapter sets ``batched_subscribe`` (Binance,
Bybit at 10 topics a message, OKX): the adapter names the streams, builds the subscribe
message, gives each connection's URL and ccxt's message hash (tandem.daemon.venues).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import deque
from typing import Any

from tandem.daemon.logconfig import get_logger

log = get_logger("subscribe")

#: Binance: "A single connection can listen to a maximum of 1024 streams."
BINANCE_MAX_STREAMS = 1024
#: Binance: 5 incoming messages per second per connection; 3 leaves room for PONGs.
DEFAULT_MSGS_PER_S = 3


class ConnectionPlan:
    """Stream -> connection index, filled in order, at most ``cap`` streams each; stable
    for the life of the exchange object. ``max_cap``: the venue's hard limit."""

    def __init__(self, cap: int, max_cap: int = BINANCE_MAX_STREAMS):
        if not 1 <= cap <= max_cap:
            raise ValueError(f"streams per connection must be 1..{max_cap}, got {cap}")
        self.cap = cap
        self._of: dict[Any, int] = {}
        self._count: list[int] = []

    def index(self, key: Any) -> int:
        k = self._of.get(key)
        if k is None:
            k = next((i for i, n in enumerate(self._count) if n < self.cap), len(self._count))
            if k == len(self._count):
                self._count.append(0)
            self._count[k] += 1
            self._of[key] = k
        return k

    def connections(self) -> int:
        return len(self._count)


class SubscribeBatcher:
    """The subscriptions waiting to go out on one ccxt ws client (= one connection)."""

    def __init__(self, exchange: Any, client: Any, per_message: int, msgs_per_s: int):
        self.ex = exchange
        self.client = client
        self.per_message = per_message
        self.msgs_per_s = msgs_per_s
        self.pending: list[tuple[str, dict]] = []  # (raw stream name, its subscription dict)
        self.sent_at: deque[float] = deque()  # monotonic times of this connection's messages
        self.messages = 0
        self._task: asyncio.Task | None = None

    def add(self, raw: str, subscription: dict, connected: Any) -> None:
        self.pending.append((raw, subscription))
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run(connected))

    async def _run(self, connected: Any) -> None:
        try:
            await connected
        except Exception:  # noqa: BLE001 - the dial failed: ccxt rejected the futures and
            return         # the feeds' next watch call builds a new client (and batcher)
        # Let every feed that subscribes in this same moment join the first message.
        await asyncio.sleep(0)
        while self.pending:
            await self._gate()
            if self.client.closed():
                return
            batch, self.pending = self.pending[: self.per_message], self.pending[self.per_message:]
            # binance numbers requests per URL; bybit and okx per exchange
            rid = (self.ex.request_id(self.client.url)
                   if inspect.signature(self.ex.request_id).parameters else self.ex.request_id())
            for _, sub in batch:
                sub["id"] = rid
            message = self.ex.venue.subscribe_message([raw for raw, _ in batch], rid)
            self.sent_at.append(time.monotonic())
            self.messages += 1
            try:
                await self.client.send(message)
            except Exception as exc:  # noqa: BLE001 - as ccxt's own watch does
                self.client.on_error(exc)
                return
            log.debug("subscribed", url=self.client.url, streams=len(batch), id=rid)

    async def _gate(self) -> None:
        """Wait until one more message keeps this connection at ``msgs_per_s`` in any 1 s."""
        while True:
            now = time.monotonic()
            while self.sent_at and now - self.sent_at[0] >= 1.0:
                self.sent_at.popleft()
            if len(self.sent_at) < self.msgs_per_s:
                return
            await asyncio.sleep(1.0 - (now - self.sent_at[0]) + 0.001)


class BatchedKlinesMixin:
    """``watch_ohlcv`` of a ccxt.pro exchange, subscribing in batches through the venue's
    adapter (its stream names, subscribe message, connection URLs).

    Same contract as ccxt's: returns the candles of the next update of (symbol, timeframe)
    (never, on the fast path of :mod:`tandem.daemon.feeds`), raises ``NetworkError`` when its
    connection drops; calling it again resubscribes the stream on a new connection."""

    def _batched_init(self, streams_per_connection: int = 200, per_message: int = 200,
                      msgs_per_s: int = DEFAULT_MSGS_PER_S) -> None:
        self.conn_plan = ConnectionPlan(streams_per_connection,
                                        self.venue.max_streams_per_connection)
        self.subscribe_per_message = min(per_message, streams_per_connection)
        self.subscribe_msgs_per_s = msgs_per_s
        self.batched_subscribe = self.venue.batched_subscribe

    def batcher_of(self, client: Any) -> SubscribeBatcher:
        b = getattr(client, "_tandem_batcher", None)
        if b is None:
            b = SubscribeBatcher(self, client, self.subscribe_per_message,
                                 self.subscribe_msgs_per_s)
            client._tandem_batcher = b
        return b

    async def watch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        # A fresh dict per call, never a shared default: ccxt.pro binance and bybit write
        # ``params["callerMethodName"]`` into the dict they get, and a mutated default made
        # every later call of every venue in the process take ccxt's one-stream-per-message
        # path on one connection (Binance closed it with 1008).
        params = {} if params is None else dict(params)
        if not getattr(self, "batched_subscribe", False) or params:
            return await super().watch_ohlcv(symbol, timeframe, since, limit, params)
        if self.markets is None:
            await self.load_markets()
        market = self.market(symbol)
        if market.get("type") != "spot":
            return await super().watch_ohlcv(symbol, timeframe, since, limit, params)
        sym = market["symbol"]
        interval = self.safe_string(self.timeframes, timeframe, timeframe)
        raw = self.venue.stream_name(market, interval)
        message_hash = self.venue.ohlcv_hash(sym, market, interval, timeframe)
        url = self.venue.ws_url(self, self.conn_plan.index((sym, timeframe)))
        self.open()
        backoff_delay = self.ws_dial_delay(url)
        client = self.client(url)
        future = client.future(message_hash)
        if message_hash not in client.subscriptions:
            sub: dict = {}
            client.subscriptions[message_hash] = sub
            connected = (client.connected if client.connected.done()
                         else asyncio.ensure_future(client.connect(self.session, backoff_delay)))
            self.batcher_of(client).add(raw, sub, connected)
        _, _, candles = await future
        lim = candles.getLimit(sym, limit) if self.newUpdates else limit
        return self.filter_by_since_limit(candles, since, lim, 0, True)
