"""Exchange emulator: Binance spot wire format (raw HTTP/websocket) and the real ccxt.pro client.

Expected values come from the played candles themselves (the source data) and from
Binance's documented wire layout, checked through a raw aiohttp client and through ccxt.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.daemon.emulator import Emulator, MarketData, kline_event, kline_event_json, partial_bar
from tandem.daemon.emulator.market import Bar

from tests.emulator_fixtures import sample_market

M = 60_000  # 1m


async def get_json(url: str, **params: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url, params=params) as r:
        return r.status, await r.json()


async def recv_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0) -> Any:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


# ----------------------------------------------------------------------- REST wire format


async def test_rest_klines_wire_format_and_visibility(emulator: Emulator) -> None:
    md = emulator.market
    now = md.first_ts + 20 * M + 15_000  # 20 bars closed, bar 20 is 25% formed
    await emulator.advance_to(now)
    status, rows = await get_json(emulator.rest_url + "/klines", symbol="BTCUSDT", interval="1m")
    assert status == 200 and len(rows) == 21
    ref = md.frame("BTC/USDT")
    for i, row in enumerate(rows):
        assert len(row) == 12
        assert isinstance(row[0], int) and isinstance(row[6], int) and isinstance(row[8], int)
        assert all(isinstance(x, str) for x in row[1:6] + row[7:8] + row[9:12])
        assert row[0] == ref["ts"].iloc[i] and row[6] == row[0] + M - 1
    closed = np.array([[float(x) for x in r[1:6]] for r in rows[:-1]])
    np.testing.assert_array_equal(closed, ref.iloc[:20, 1:6].to_numpy())  # bit-exact round trip
    o, h, low, c, v = (float(x) for x in rows[-1][1:6])
    src = ref.iloc[20]
    assert o == src["open"] and low >= src["low"] and h <= src["high"] and v < src["volume"]
    assert rows[-1][0] <= now < rows[-1][0] + M


async def test_rest_klines_paging_params_like_binance(emulator: Emulator) -> None:
    md = emulator.market
    await emulator.advance_to(md.first_ts + 300 * M)
    ts = md.ts["ETH/USDT"]
    url = emulator.rest_url + "/klines"
    _, rows = await get_json(url, symbol="ETHUSDT", interval="1m", startTime=int(ts[10]) + 1, limit=5)
    assert [r[0] for r in rows] == ts[11:16].tolist()  # startTime: first bars at/after it
    _, rows = await get_json(url, symbol="ETHUSDT", interval="1m", endTime=int(ts[50]), limit=3)
    assert [r[0] for r in rows] == ts[48:51].tolist()  # endTime only: the last `limit` up to it
    _, rows = await get_json(url, symbol="ETHUSDT", interval="1m")
    # default limit 500: all 300 closed bars plus bar 300, which just opened (p = 0)
    assert len(rows) == 301 and rows[-1][0] == ts[300]
    assert rows[-1][1] == rows[-1][2] == rows[-1][3] == rows[-1][4] and float(rows[-1][5]) == 0
    _, rows = await get_json(url, symbol="ETHUSDT", interval="1m", startTime=int(ts[0]), limit=1000)
    assert len(rows) == 301  # never beyond the virtual clock
    for params, code in [
        ({"symbol": "DOGEUSDT", "interval": "1m"}, -1121),
        ({"symbol": "ETHUSDT", "interval": "7m"}, -1120),
        ({"symbol": "ETHUSDT", "interval": "1m", "limit": 1001}, -1130),
        ({"interval": "1m"}, -1102),
    ]:
        status, body = await get_json(url, **params)
        assert status == 400 and body["code"] == code


async def test_rest_time_ping_exchange_info(emulator: Emulator) -> None:
    await emulator.advance_to(emulator.now + 123_456)
    assert await get_json(emulator.rest_url + "/time") == (200, {"serverTime": emulator.now})
    assert await get_json(emulator.rest_url + "/ping") == (200, {})
    status, info = await get_json(emulator.rest_url + "/exchangeInfo")
    assert status == 200
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert all(s["status"] == "TRADING" and s["isSpotTradingAllowed"] for s in info["symbols"])


# ----------------------------------------------------------------------- websocket wire format


async def test_ws_subscribe_events_and_closing_update() -> None:
    md = sample_market(("BTC/USDT", "ETH/USDT"), n_bars=50)
    async with Emulator(md, updates_per_bar=2) as emu, aiohttp.ClientSession() as s:
        async with s.ws_connect(emu.ws_url + "/0") as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 7}))
            assert await recv_json(ws) == {"result": None, "id": 7}
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
            assert await recv_json(ws) == {"result": ["btcusdt@kline_1m"], "id": 8}
            await ws.send_str("{not json")
            assert (await recv_json(ws))["error"]["code"] == 3
            frames_out: list[tuple] = []
            emu.on_frame = lambda *a: frames_out.append(a)
            sent = await emu.advance(2)
            assert [(f[0], f[2]) for f in frames_out].count(("BTC/USDT", True)) == 2
            # per bar: ticks at 0, 1/3, 2/3 of the period and the closing update; bar 0's
            # open tick is at the start (already past), bar 2's is exactly at the new now.
            events = [await recv_json(ws) for _ in range(sent)]
            assert sent == 8
            ks = [e["k"] for e in events]
            assert all(e["e"] == "kline" and e["s"] == "BTCUSDT" for e in events)
            assert [(k["t"], k["x"]) for k in ks] == [
                (md.ts["BTC/USDT"][0], False), (md.ts["BTC/USDT"][0], False), (md.ts["BTC/USDT"][0], True),
                (md.ts["BTC/USDT"][1], False), (md.ts["BTC/USDT"][1], False), (md.ts["BTC/USDT"][1], False),
                (md.ts["BTC/USDT"][1], True), (md.ts["BTC/USDT"][2], False),
            ]
            assert [e["E"] for e in events] == sorted(e["E"] for e in events)
            ref = md.frame("BTC/USDT")
            for k, i in ((ks[2], 0), (ks[6], 1)):
                got = [float(k[f]) for f in "ohlcv"]
                assert got == ref.iloc[i][["open", "high", "low", "close", "volume"]].tolist()
                assert k["T"] == k["t"] + M - 1 and k["i"] == "1m"
            await ws.send_str(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": 9}))
            assert await recv_json(ws) == {"result": None, "id": 9}
            assert await emu.advance(1) == 0


async def test_ws_combined_stream_and_raw_stream_paths() -> None:
    md = sample_market(("BTC/USDT", "ETH/USDT"), n_bars=20)
    async with Emulator(md, updates_per_bar=0) as emu, aiohttp.ClientSession() as s:
        base = f"ws://127.0.0.1:{emu.port}"
        async with s.ws_connect(base + "/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m") as comb, \
                s.ws_connect(base + "/ws/ethusdt@kline_1m") as raw:
            await emu.advance(1)
            got = [await recv_json(comb) for _ in range(2)]
            assert [g["stream"] for g in got] == ["btcusdt@kline_1m", "ethusdt@kline_1m"]
            assert all(g["data"]["k"]["x"] for g in got)
            assert (await recv_json(raw))["s"] == "ETHUSDT"


async def test_ws_server_pings() -> None:
    async with Emulator(sample_market(n_bars=5), ping_interval=0.2) as emu, aiohttp.ClientSession() as s:
        async with s.ws_connect(emu.ws_url, autoping=False) as ws:
            msg = await ws.receive(timeout=2)
            assert msg.type == aiohttp.WSMsgType.PING
            await ws.pong(msg.data)


@settings(max_examples=60, deadline=None)
@given(
    o=st.floats(1, 1000), up=st.floats(0, 50), dn=st.floats(0, 50), frac=st.floats(0, 1),
    v=st.floats(0, 1e6), ps=st.lists(st.floats(0, 0.999), min_size=2, max_size=6),
)
def test_partial_bar_stays_inside_the_closed_bar(o, up, dn, frac, v, ps) -> None:
    lo, hi = o - dn, o + up
    c = lo + (hi - lo) * frac
    prev = None
    for p in sorted(ps):
        po, ph, pl, pc, pv = partial_bar(o, hi, lo, c, v, p)
        assert po == o and lo <= pl <= min(po, pc) and max(po, pc) <= ph <= hi and 0 <= pv <= v
        if prev is not None:  # extremes only widen as the bar forms
            assert ph >= prev[1] and pl <= prev[2]
        prev = (po, ph, pl)


# ----------------------------------------------------------------------- the real ccxt.pro client


async def test_ccxt_load_markets_fetch_ohlcv_fetch_time(emulator: Emulator, pro_exchange_factory) -> None:
    ex = pro_exchange_factory(emulator)
    md = emulator.market
    await emulator.advance_to(md.first_ts + 42 * M + 30_000)
    markets = await ex.load_markets()
    assert set(markets) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    assert markets["BTC/USDT"]["id"] == "BTCUSDT" and markets["BTC/USDT"]["spot"]
    assert await ex.fetch_time() == emulator.now
    rows = await ex.fetch_ohlcv("SOL/USDT", "1m", since=md.first_ts, limit=1000)
    assert len(rows) == 43
    assert emulator.closed_candles("SOL/USDT")["ts"].tolist() == [r[0] for r in rows[:-1]]
    np.testing.assert_array_equal(np.array(rows[:-1], dtype=float), md.frame("SOL/USDT").iloc[:42].to_numpy())
    assert rows[-1][0] == md.ts["SOL/USDT"][42]  # the forming bar is the last row
    assert all(path.startswith("/api/v3/") for path, _ in emulator.rest_log)


async def test_listed_markets_without_candles(pro_exchange_factory) -> None:
    """A venue's whole market list (``listed``): ccxt loads every market; only the played
    ones have candles, the others answer klines with Binance's invalid-symbol error."""
    import ccxt

    md = sample_market()
    async with Emulator(md, listed=["BTC/USDT", "AAA/USDT", "BBB/BTC", "AAA/USDT"]) as emu:
        ex = pro_exchange_factory(emu)
        markets = await ex.load_markets()
        assert set(markets) == {"BTC/USDT", "ETH/USDT", "SOL/USDT", "AAA/USDT", "BBB/BTC"}
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_ohlcv("AAA/USDT", "1m", limit=5)


async def test_ccxt_pro_watch_ohlcv_sees_every_closed_bar(emulator: Emulator, pro_exchange_factory) -> None:
    """One watch task per symbol copying rows; a bar is closed once a newer ts arrives."""
    ex = pro_exchange_factory(emulator)
    md = emulator.market
    seen: dict[str, dict[int, list[float]]] = {s: {} for s in md.symbols}

    async def watch(symbol: str) -> None:
        while True:
            for row in await ex.watch_ohlcv(symbol, "1m"):
                seen[symbol][row[0]] = list(row)  # copy: ccxt mutates rows later

    tasks = [asyncio.create_task(watch(s)) for s in md.symbols]
    try:
        for _ in range(100):
            if len(emulator.subscriptions()) == 3:
                break
            await asyncio.sleep(0.02)
        assert emulator.subscriptions() == {"btcusdt@kline_1m", "ethusdt@kline_1m", "solusdt@kline_1m"}
        n = 30
        for _ in range(n):
            await emulator.advance(1)
            await asyncio.sleep(0)  # let the reader run between bars, like real time would
        await asyncio.sleep(0.2)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for sym in md.symbols:
        ref = md.frame(sym).iloc[:n].to_numpy()
        got = np.array([seen[sym][int(t)] for t in ref[:, 0]])
        np.testing.assert_array_equal(got, ref)


async def test_realtime_play(emulator_factory, pro_exchange_factory) -> None:
    emu = await emulator_factory(sample_market(n_bars=30))
    emu.start_realtime(speed=600.0, tick_s=0.01)  # 1 virtual minute per 0.1 s
    await asyncio.sleep(0.35)
    assert emu.market.first_ts + 2 * M <= emu.now <= emu.market.first_ts + 6 * M
    ex = pro_exchange_factory(emu)
    rows = await ex.fetch_ohlcv("BTC/USDT", "1m", since=emu.market.first_ts)
    assert rows[-1][0] <= emu.now
    await emu.stop_realtime()
    stopped = emu.now
    await asyncio.sleep(0.1)
    assert emu.now == stopped
    with pytest.raises(ValueError, match="back"):
        await emu.advance_to(stopped - 1)


def test_market_from_aligned_and_from_store_roundtrip(tmp_path) -> None:
    from tandem.core.store import CandleStore, align

    md = sample_market(n_bars=10)
    aligned = align({s: md.frame(s) for s in md.symbols}, list(md.symbols))
    again = MarketData.from_aligned(aligned, "1m")
    store = CandleStore(tmp_path, timeframe="1m")
    for s in md.symbols:
        store.append(s, md.frame(s).iloc[::2])  # every other bar: gaps must stay gaps
    stored = MarketData.from_source(store, None, "1m")
    for s in md.symbols:
        np.testing.assert_array_equal(again.frame(s).to_numpy(), md.frame(s).to_numpy())
        np.testing.assert_array_equal(stored.frame(s).to_numpy(), md.frame(s).iloc[::2].to_numpy())


def test_command_line_prints_urls_and_serves(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.daemon.emulator", "--generate", "30", "--symbols", "BTC/USDT",
         "--timeframe", "1m", "--speed", "0", "--start", "1700000600000"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        rest = proc.stdout.readline().split()[1]
        ws = proc.stdout.readline().split()[1]
        assert rest.startswith("http://127.0.0.1:") and rest.endswith("/api/v3")
        assert ws.startswith("ws://127.0.0.1:") and ws.endswith("/ws")
        with urllib.request.urlopen(rest + "/klines?symbol=BTCUSDT&interval=1m&limit=1000", timeout=5) as r:
            rows = json.loads(r.read())
        assert len(rows) == 11  # clock frozen 10 bars after the first (speed 0): 10 closed + forming
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@settings(max_examples=60, deadline=None)
@given(
    px=st.lists(st.floats(1e-8, 1e7), min_size=5, max_size=5), closed=st.booleans(),
    t=st.integers(0, 2**41), interval=st.sampled_from(["1m", "1h", "1d"]),
)
def test_serialized_kline_event_equals_the_dict_form(px, closed, t, interval) -> None:
    bar = Bar(t, *px, closed)
    text = kline_event_json("ETH/BTC", interval, bar, 60_000, t + 5)
    assert json.loads(text) == kline_event("ETH/BTC", interval, bar, 60_000, t + 5)
    assert [float(json.loads(text)["k"][f]) for f in "ohlcv"] == px  # exact round trip


def test_exchange_factory_config_and_sync_flavor() -> None:
    from tandem.core.exchange import create_exchange, exchange_config

    from tests.emulator_fixtures import emulator_in_thread, run_in

    cfg = exchange_config("binance", rest_url="http://127.0.0.1:9/", ws_url="ws://127.0.0.1:9/ws/")
    assert cfg["urls"]["api"]["public"] == "http://127.0.0.1:9/api/v3"  # bare host: /api/v3 added
    assert cfg["urls"]["api"]["ws"]["spot"] == "ws://127.0.0.1:9/ws"
    assert cfg["options"]["fetchMarkets"]["types"] == ["spot"] and cfg["enableRateLimit"]
    ex = create_exchange("binance", flavor="sync", rest_url="http://127.0.0.1:9/api/v3")
    assert ex.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert ex.urls["api"]["sapi"].startswith("https://")  # the other hosts are kept, not wiped
    with pytest.raises(ValueError, match="only defined for binance"):
        exchange_config("kraken", rest_url="http://x")
    with pytest.raises(ValueError, match="no exchange"):
        create_exchange("nope", flavor="sync")
    md = sample_market(n_bars=20)
    with emulator_in_thread(md) as emu:
        run_in(emu, emu.advance(5))
        sync = create_exchange("binance", flavor="sync", rest_url=emu.base_url)
        rows = sync.fetch_ohlcv("BTC/USDT", "1m", since=md.first_ts)
    assert [r[0] for r in rows] == md.ts["BTC/USDT"][:6].tolist()
