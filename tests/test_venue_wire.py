"""The emulators' wire against the venues' published formats, and the adapters against
ccxt's own parsers: the emulator is only a witness if it speaks what the exchange speaks.

Sources (checked 2026-12): Bybit's docs repository (bybit-exchange/docs, docs/v5/market/kline.mdx,
docs/v5/websocket/public/kline.mdx, docs/v5/websocket/wss-authentication.mdx = /v5/ws/connect),
Binance's (binance/binance-spot-api-docs, rest-api.md, web-socket-streams.md), OKX's v5 docs
(https://www.okx.com/docs-v5/en/) and ccxt 4.5's bybit / okx / binance parsers."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import pytest
from tandem.daemon.emulator.bybit import BybitEmulator
from tandem.daemon.emulator.market import MarketData
from tandem.daemon.emulator.okx import OkxEmulator
from tandem.daemon.emulator.server import Emulator
from tandem.daemon.venues import BinanceAdapter, BybitAdapter, OkxAdapter

from tests.test_daemon_support import TF_MS, sample_market


async def _recv(ws, n=1):
    return [json.loads((await asyncio.wait_for(ws.receive(), 5)).data) for _ in range(n)]


async def test_okx_spot_volccy_is_the_quote_volume():
    """OKX, SPOT: ``vol`` is base currency, ``volCcy`` *and* ``volCcyQuote`` quote currency
    (docs-v5 "Get candlesticks" response parameters). The adapter and ccxt read ``vol``."""
    market = sample_market()
    now = market.first_ts + 50 * TF_MS
    async with OkxEmulator(market, start=now) as emu, aiohttp.ClientSession() as http:
        async with http.get(f"{emu.rest_url}/api/v5/market/candles",
                            params={"instId": "BTC-USDT", "bar": "1m", "limit": "3"}) as r:
            rows = (await r.json())["data"]
        for row in rows:
            vol, vol_ccy, vol_quote, close = (float(row[i]) for i in (5, 6, 7, 4))
            assert vol_ccy == vol_quote == vol * close
        closed = rows[1]
        bar = market.bar("BTC/USDT", int((int(closed[0]) - market.first_ts) // TF_MS))
        assert OkxAdapter().rest_rows({"data": [closed]})[0][5] == bar.volume
        async with http.ws_connect(emu.ws_url + "/business") as ws:
            await ws.send_str(json.dumps({"op": "subscribe", "args": [
                {"channel": "candle1m", "instId": "BTC-USDT"}]}))
            await _recv(ws)
            await emu.advance(1)
            frames = await _recv(ws, 3)
        for f in frames:
            d = f["data"][0]
            assert float(d[6]) == float(d[7]) == float(d[5]) * float(d[4])


async def test_okx_history_candles_serves_300_rows():
    """history-candles: "The maximum is 300" in OKX's current docs, and ccxt okx asks for
    300 there by default; the emulator refused anything over 100."""
    market = MarketData.generate(["BTC/USDT"], "1m", n_bars=2000)
    now = market.first_ts + 1900 * TF_MS
    async with OkxEmulator(market, start=now) as emu, aiohttp.ClientSession() as http:
        since = market.first_ts
        params = {"instId": "BTC-USDT", "bar": "1m", "limit": "300",
                  "before": str(since - 1), "after": str(since + 300 * TF_MS)}
        async with http.get(f"{emu.rest_url}/api/v5/market/history-candles",
                            params=params) as r:
            body = await r.json()
        assert body["code"] == "0"
        assert [int(x[0]) for x in body["data"]] == [since + k * TF_MS
                                                     for k in range(299, -1, -1)]


async def test_bybit_kline_start_inside_a_bar_lists_that_bar():
    """Bybit's /v5/market/kline returns the candle that *contains* ``start`` (ccxt bybit
    aligns ``since`` up for this reason, issue 26736; issue 20646 shows a mid-minute
    ``start`` answered with the current minute): the emulator dropped it."""
    market = sample_market()
    now = market.first_ts + 50 * TF_MS
    bar_ts = market.first_ts + 10 * TF_MS
    async with BybitEmulator(market, start=now) as emu, aiohttp.ClientSession() as http:
        async def kline(**q):
            async with http.get(f"{emu.rest_url}/v5/market/kline",
                                params={"category": "spot", "symbol": "BTCUSDT",
                                        "interval": "1", **q}) as r:
                return [int(x[0]) for x in (await r.json())["result"]["list"]]

        assert (await kline(start=str(bar_ts + 30_000), end=str(bar_ts + 2 * TF_MS)))[::-1] == [
            bar_ts, bar_ts + TF_MS, bar_ts + 2 * TF_MS]
        # what the adapter sends: an aligned start, end = the last ms of the page's last bar
        req = BybitAdapter().klines_request({"id": "BTCUSDT"}, "1", bar_ts, 5)
        assert (await kline(start=str(req["start"]), end=str(req["end"]), limit=str(req["limit"]))
                )[::-1] == [bar_ts + k * TF_MS for k in range(5)]
        # the newest `limit` of the range, not the oldest (end defaults to now)
        assert (await kline(start=str(bar_ts), limit="2")) == [now, now - TF_MS]


async def test_bybit_spot_subscribe_ack_and_pong_are_the_documented_ones():
    """Public spot (Bybit /v5/ws/connect): the subscribe ack's ret_msg is "subscribe"; the
    pong is {"success", "ret_msg": "pong", "conn_id", "op": "ping"}, no req_id."""
    market = sample_market()
    async with BybitEmulator(market, start=market.first_ts) as emu, \
            aiohttp.ClientSession() as http, http.ws_connect(emu.ws_url) as ws:
        await ws.send_str(json.dumps({"req_id": "100001", "op": "ping"}))
        (pong,) = await _recv(ws)
        assert set(pong) == {"success", "ret_msg", "conn_id", "op"}
        assert pong["ret_msg"] == "pong" and pong["op"] == "ping" and pong["success"] is True
        await ws.send_str(json.dumps({"req_id": "10001", "op": "subscribe",
                                      "args": ["kline.1.BTCUSDT"]}))
        (ack,) = await _recv(ws)
        assert set(ack) == {"success", "ret_msg", "conn_id", "req_id", "op"}
        assert ack["ret_msg"] == "subscribe" and ack["req_id"] == "10001" and ack["success"]


def _bar(market, i, closed=True):
    return market.bar("BTC/USDT", i) if closed else market.bar(
        "BTC/USDT", i, int(market.ts["BTC/USDT"][i]) + TF_MS // 2)


async def test_adapters_read_the_emulators_frames_as_ccxt_does():
    """Each venue's kline frame as the emulator builds it, decoded by our adapter and by
    ccxt's own parser: same open time (the bar's open, ms), same OHLCV; closed only when the
    venue's flag says so (Binance ``x``, Bybit ``confirm`` true, OKX ``confirm`` "1")."""
    market = sample_market()
    tf = market.tf_ms
    bybit, okx = ccxtpro.bybit(), ccxtpro.okx()
    for closed in (True, False):
        bar = _bar(market, 7, closed)
        t = bar.ts + (tf if closed else tf // 2)
        b = json.loads(Emulator._event_json("BTC/USDT", "1m", bar, tf, t))
        (k,) = BinanceAdapter().parse_klines(b)
        assert (k.market_id, k.interval, k.bar_ts, k.closed) == ("BTCUSDT", "1m", bar.ts, closed)
        ours = [k.bar_ts, *(float(b["k"][f]) for f in "ohlcv")]
        assert ours == [bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume]
        y = json.loads(BybitEmulator._event_json("BTC/USDT", "1m", bar, tf, t))
        (k,) = BybitAdapter().parse_klines(y)
        assert y["topic"] == "kline.1.BTCUSDT" and y["data"][0]["confirm"] is closed
        assert (k.market_id, k.interval, k.bar_ts, k.closed) == ("BTCUSDT", "1", bar.ts, closed)
        theirs = bybit.parse_ws_ohlcv(y["data"][0], {"inverse": False})
        assert theirs == ours
        if closed:
            assert k.row == theirs
        o = json.loads(OkxEmulator._event_json("BTC/USDT", "1m", bar, tf, t))
        (k,) = OkxAdapter().parse_klines(o)
        assert o["arg"] == {"channel": "candle1m", "instId": "BTC-USDT"}
        assert (k.market_id, k.interval, k.bar_ts, k.closed) == ("BTC-USDT", "1m", str(bar.ts),
                                                                  closed)
        theirs = okx.parse_ohlcv(o["data"][0], {"type": "spot"})
        assert theirs == ours
        if closed:
            assert k.row == theirs
    await bybit.close()
    await okx.close()


async def test_adapters_read_the_emulators_rest_pages_as_ccxt_does():
    """REST klines: Binance oldest first, Bybit and OKX newest first; the adapters turn
    each into oldest-first ``[open ts, o, h, l, c, base volume]`` rows equal to ccxt's
    parse (ccxt sorts by time), the forming bar last."""
    market = sample_market()
    now = market.first_ts + 50 * TF_MS + TF_MS // 3
    async with aiohttp.ClientSession() as http:
        async with Emulator(market, start=now) as emu:
            async with http.get(f"{emu.rest_url}/klines",
                                params={"symbol": "BTCUSDT", "interval": "1m",
                                        "limit": "5"}) as r:
                raw = await r.json()
            ours = BinanceAdapter().rest_rows(raw)
            assert ours == [ccxt.binance().parse_ohlcv(x) for x in raw]
        async with BybitEmulator(market, start=now) as emu:
            async with http.get(f"{emu.rest_url}/v5/market/kline",
                                params={"category": "spot", "symbol": "BTCUSDT",
                                        "interval": "1", "limit": "5"}) as r:
                raw = await r.json()
            by = BybitAdapter().rest_rows(raw)
            theirs = ccxt.bybit().parse_ohlcvs(raw["result"]["list"], {"inverse": False})
            assert by == theirs
        async with OkxEmulator(market, start=now) as emu:
            async with http.get(f"{emu.rest_url}/api/v5/market/candles",
                                params={"instId": "BTC-USDT", "bar": "1m",
                                        "limit": "5"}) as r:
                raw = await r.json()
            ok = OkxAdapter().rest_rows(raw)
            assert ok == ccxt.okx().parse_ohlcvs(raw["data"], {"type": "spot"})
            assert raw["data"][0][8] == "0" and all(x[8] == "1" for x in raw["data"][1:])
    forming = market.first_ts + 50 * TF_MS
    for rows in (ours, by, ok):
        assert [r[0] for r in rows] == [forming - k * TF_MS for k in range(4, -1, -1)]
        assert rows[:-1] == [[b.ts, b.open, b.high, b.low, b.close, b.volume]
                             for b in (market.bar("BTC/USDT", 46 + k) for k in range(4))]


class _BatchedBybit(BybitEmulator):
    """Bybit's ``data`` is a list (docs/v5/websocket/public/kline.mdx; ccxt bybit loops over
    it): here a bar's closing update and the next bar's first update, due at the same
    moment, travel in ONE frame ``data: [closed, forming]``."""

    def _events_between(self, t0, t1):
        merged: dict = {}
        for ev in super()._events_between(t0, t1):
            key = (ev.time, ev.stream)
            first = merged.get(key)
            if first is None:
                merged[key] = ev
                continue
            frame = json.loads(first.text)
            frame["data"] += json.loads(ev.text)["data"]
            first.text = json.dumps(frame)
            self.batched = getattr(self, "batched", 0) + 1
        return list(merged.values())


async def test_bybit_frames_carrying_two_klines_give_the_same_fills(tmp_path):
    from tests.test_venue_bybit import _replay_bybit

    daemon, emu, _ = await _replay_bybit(tmp_path, _BatchedBybit)
    assert daemon.live and daemon.late == 0 and emu.batched > 100


async def test_bybit_connection_args_stop_at_21000_characters():
    """Bybit public: a connection's "args" may not pass 21,000 characters (/v5/ws/connect,
    "Args limits"); the adapter's per-connection cap of 500 kline topics stays under it for
    symbols of up to 28 characters."""
    symbols = [f"S{k:04d}/USDT" for k in range(1100)]  # topics of 16 characters
    market = MarketData.generate(symbols, "1m", n_bars=3)
    topics = [f"kline.1.{s.replace('/', '')}" for s in symbols]
    async with BybitEmulator(market, start=market.first_ts) as emu, \
            aiohttp.ClientSession() as http, http.ws_connect(emu.ws_url) as ws:
        acks = []
        for k in range(0, len(topics), 10):
            await ws.send_str(json.dumps({"op": "subscribe", "args": topics[k:k + 10],
                                          "req_id": str(k)}))
            acks += await _recv(ws)
    n = 10 * sum(a["success"] for a in acks)  # topics subscribed
    assert n > 900 and len(json.dumps(topics[:n])) <= 21_000 < len(json.dumps(topics[:n + 10]))
    assert emu.refused_subscribes == len(acks) - n // 10
    longest = "kline.720." + "X" * 28
    assert len(json.dumps([longest] * BybitAdapter.max_streams_per_connection)) <= 21_000


@pytest.mark.parametrize("venue", ["okx", "bybit"])
async def test_a_silent_socket_is_seen_through_the_venues_pongs(venue):
    """OKX ("ping" -> "pong" text) and Bybit ({"op": "ping"} -> {"ret_msg": "pong"}) answer
    ccxt's keep-alive pings with *messages*, not websocket pong frames (Binance's), every
    18 s — under the daemon's 60-s watchdog. Counted as data, they kept a socket that had
    stopped sending klines looking alive forever."""
    import contextlib

    from tandem.daemon.client import build_exchange
    from tandem.daemon.feeds import FeedSupervisor
    from tandem.daemon.replay import emulator_class, wait_subscribed

    market = MarketData.generate(["BTC/USDT"], "1m", n_bars=20)
    async with emulator_class(venue)(market, start=market.first_ts) as emu:
        ex = build_exchange(venue, emu.rest_url, emu.ws_url)
        ex.streaming["keepAlive"] = 100  # ms: pings (and pongs) far inside the watchdog
        watch = asyncio.ensure_future(ex.watch_ohlcv("BTC/USDT", "1m"))
        try:
            await wait_subscribed(emu, 1, timeout_s=20)
            await emu.advance(1)  # a kline: the socket is alive
            await asyncio.sleep(0.3)
            emu.silence_connections(True)  # no more data; pings still answered
            clients = list(ex.clients.values())
            pongs_before = max(c.lastPong or 0 for c in clients)
            supervisor = FeedSupervisor(ex, [], watchdog_s=1.0)
            for _ in range(30):
                await asyncio.sleep(0.1)
                supervisor.check()
                if supervisor.watchdog_fires:
                    break
            pongs_after = max(c.lastPong or 0 for c in clients)
        finally:
            watch.cancel()
            with contextlib.suppress(BaseException):
                await watch
            await ex.close()
    assert pongs_after > pongs_before  # the venue kept answering pings meanwhile
    assert supervisor.watchdog_fires == 1
