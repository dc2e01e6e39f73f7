"""Binance's connection and request limits (issue 18): the emulator enforces them the way the
exchange does, and the daemon — the real ccxt.pro client, subscribing in batches — stays
inside them, goes live with 500 streams, and loses no candle when connections rotate."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
from tandem.daemon.replay import run_replay
from tandem.daemon.state import StateStore

from tests.test_daemon_support import (
    TF_MS,
    assert_candles_exactly_once,
    assert_journal_equal,
    batch_fills,
    make_daemon,
    replay_window,
    sample_market,
    small_profile,
)


# ---- the emulator enforces the exchange's limits (wire-level checks) -------------------
async def _list(ws, i):
    await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))


async def test_emulator_closes_1008_past_five_messages_a_second(emulator_factory):
    emu = await emulator_factory()
    async with aiohttp.ClientSession() as s, s.ws_connect(emu.ws_url + "/0") as ws:
        for i in range(5):
            await _list(ws, i)
        assert [(await ws.receive_json())["id"] for _ in range(5)] == list(range(5))
        await _list(ws, 5)  # the sixth message inside one second
        msg = await ws.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1008
    assert emu.rate_closes == 1


async def test_emulator_counts_pongs_and_pings(emulator_factory):
    emu = await emulator_factory()
    async with aiohttp.ClientSession() as s, s.ws_connect(emu.ws_url + "/0", autoping=False) as ws:
        for i in range(3):
            await _list(ws, i)
        for _ in range(3):
            await ws.pong(b"x")  # PONG frames count toward the 5 (Binance)
        while True:
            msg = await ws.receive(timeout=3)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
        assert ws.close_code == 1008


async def test_emulator_five_messages_spread_over_time_are_fine(emulator_factory):
    emu = await emulator_factory()
    async with aiohttp.ClientSession() as s, s.ws_connect(emu.ws_url + "/0") as ws:
        for i in range(8):
            await _list(ws, i)
            assert (await ws.receive_json(timeout=3))["id"] == i
            await asyncio.sleep(0.26)  # < 4 per second
    assert emu.rate_closes == 0


async def test_emulator_refuses_more_than_1024_streams(emulator_factory):
    emu = await emulator_factory()
    streams = [f"s{i}usdt@kline_1m" for i in range(1024)]
    async with aiohttp.ClientSession() as s, s.ws_connect(emu.ws_url + "/0") as ws:
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        assert await ws.receive_json(timeout=3) == {"result": None, "id": 1}
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["x@kline_1m"], "id": 2}))
        reply = await ws.receive_json(timeout=3)
        assert reply["id"] == 2 and reply["error"]["code"] == 2
        await _list(ws, 3)
        assert len((await ws.receive_json(timeout=3))["result"]) == 1024
    assert emu.refused_subscribes == 1


async def test_emulator_ends_connections_after_their_lifetime(emulator_factory):
    emu = await emulator_factory(lifetime_s=0.6, shutdown_notice_s=0.3)
    async with aiohttp.ClientSession() as s, s.ws_connect(emu.ws_url + "/0") as ws:
        t = time.monotonic()
        first = await ws.receive_json(timeout=3)
        assert first["e"] == "serverShutdown" and isinstance(first["E"], int)
        msg = await ws.receive(timeout=3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert 0.45 < time.monotonic() - t < 2.0
    assert emu.shutdown_notices == 1 and emu.lifetime_closes == 1


async def test_emulator_rest_weight_429_then_418(emulator_factory):
    emu = await emulator_factory(rest_weight_per_min=6)  # klines weigh 2: three fit
    url = f"{emu.rest_url}/klines?symbol=BTCUSDT&interval=1m&limit=5"
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(url) as r:
                assert r.status == 200
        async with s.get(url) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert r.headers["x-mbx-used-weight-1m"] == "6"
        async with s.get(url) as r:  # kept going inside Retry-After: banned
            assert r.status == 418
    assert (emu.rest_429, emu.rest_418) == (1, 1)


# ---- the daemon stays inside them --------------------------------------------------------
def _symbols(n: int) -> list[str]:
    # "Q.." names: ccxt maps some real codes (XBT -> BTC), which would not round-trip.
    return [f"Q{chr(65 + (i // 26) % 26)}{chr(65 + i % 26)}{i // 676}/USDT" for i in range(n)]


async def _replay(profile, market, db, *, emu_kw=None, on_bar=None, **cfg):
    t0, end = replay_window(market, profile.warmup)
    daemon = make_daemon(profile, db, **cfg)
    seen = {}
    emu = await run_replay(daemon, market, t0, end, on_bar=on_bar, bar_timeout_s=5.0,
                           emulator_kwargs=emu_kw or {},
                           on_emulator=lambda e: seen.setdefault("emu", e))
    return daemon, emu, t0, end


async def test_500_streams_live_inside_binance_limits(tmp_path):
    syms = _symbols(500)
    profile = small_profile(symbols=tuple(syms), warmup=20, core_assets=syms[:4])
    market = sample_market(n_tradable=4, symbols=tuple(syms), warmup=20)
    db = tmp_path / "d.sqlite"
    t = time.monotonic()
    # The production watchdog (60 s), not the tests' 3 s: the replay's clock stands still
    # while 500 assets warm up, which on a loaded machine took > 3 s and set off a reconnect
    # of every connection (CI, stop 24) — silence the exchange never produces.
    daemon, emu, t0, end = await _replay(profile, market, db, startup_wait_s=30.0,
                                         watchdog_s=60.0)
    took = time.monotonic() - t
    assert daemon.live and daemon.late == 0
    assert emu.rate_closes == 0 and emu.refused_subscribes == 0 and emu.rest_429 == 0
    assert emu.peak_msgs_per_s <= 3  # SUBSCRIBEs paced at 3/s per connection
    # 500 streams in 3 connections (200 each by default), each subscribed in one message
    by_conn: dict[str, list[str]] = {}
    for path, streams in emu.subscribe_log:
        by_conn.setdefault(path, []).extend(streams)
    assert len(emu.subscribe_log) == 3 and len(by_conn) == 3
    assert sorted(len(v) for v in by_conn.values()) == [100, 200, 200]
    assert sum(len(v) for v in by_conn.values()) == len(set().union(*by_conn.values())) == 500
    assert_candles_exactly_once(db, market, syms, t0 - 20 * TF_MS, end)
    assert took < 60, took


async def test_connection_rotation_loses_no_candle(tmp_path):
    profile = small_profile()
    market = sample_market(n_tradable=40)
    db = tmp_path / "d.sqlite"

    async def slow(emu, k):
        await asyncio.sleep(0.03)  # ~1.2 s of play: the connections rotate several times

    daemon, emu, t0, end = await _replay(
        profile, market, db, on_bar=slow, streams_per_connection=2, stream_down_poll_s=0.2,
        emu_kw={"lifetime_s": 0.35, "shutdown_notice_s": 0.1})
    assert emu.shutdown_notices >= 2 and daemon.ex is not None
    assert emu.rate_closes == 0
    with StateStore(db) as st:
        paper = st.fills_frame()
    assert_journal_equal(paper, batch_fills(profile, market, t0, end))
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    assert daemon.live and daemon.late == 0


async def test_rotation_without_notice_loses_no_candle(tmp_path):
    profile = small_profile()
    market = sample_market(n_tradable=40)
    db = tmp_path / "d.sqlite"

    async def slow(emu, k):
        await asyncio.sleep(0.03)

    daemon, emu, t0, end = await _replay(profile, market, db, on_bar=slow, stream_down_poll_s=0.2,
                                         emu_kw={"lifetime_s": 0.4})
    assert emu.lifetime_closes >= 2 and emu.shutdown_notices == 0
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    assert daemon.late == 0


async def test_reconnect_resubscribes_only_that_connections_streams(tmp_path):
    syms = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT", "XRP/USDT")
    profile = small_profile(symbols=syms)
    market = sample_market(n_tradable=20, symbols=syms)
    db = tmp_path / "d.sqlite"
    closed: dict[str, list[str]] = {}

    async def drop_one(emu, k):
        if k == 5:
            conn = next(c for c in emu.connections if c.path == "/ws/1")
            closed["log_at"] = len(emu.subscribe_log)
            closed["streams"] = list(conn.subs)
            await conn.ws.close(code=1001, message=b"going away")

    daemon, emu, t0, end = await _replay(profile, market, db, on_bar=drop_one,
                                         streams_per_connection=2)
    first = emu.subscribe_log[: closed["log_at"]]
    assert sorted(p for p, _ in first) == ["/ws/0", "/ws/1", "/ws/2"]
    again = emu.subscribe_log[closed["log_at"]:]
    assert again == [("/ws/1", closed["streams"])]  # one message, only its 2 streams
    assert_candles_exactly_once(db, market, syms, t0 - profile.warmup * TF_MS, end)
    assert daemon.late == 0


async def test_warmup_backfill_pages_without_lag_retries(tmp_path):
    # 2,400 warm-up bars = 3 pages of 1,000: one request per page (+ nothing else). The REST
    # lag retry used to fire on every full page: 10 extra requests and 2.75 s per feed.
    profile = small_profile(warmup=2400)
    market = sample_market(n_tradable=3, warmup=2400)
    db = tmp_path / "d.sqlite"
    t = time.monotonic()
    daemon, emu, t0, end = await _replay(profile, market, db)
    klines = [q for p, q in emu.rest_log if p == "/api/v3/klines"]
    per_symbol = {s: sum(q["symbol"] == s.replace("/", "") for q in klines) for s in profile.assets}
    assert all(n <= 4 for n in per_symbol.values()), per_symbol
    assert_candles_exactly_once(db, market, profile.assets, t0 - 2400 * TF_MS, end)
    assert time.monotonic() - t < 30


# ---- warm-up from the candle store ------------------------------------------------------
async def test_warmup_from_store_gives_the_same_fills_as_rest(tmp_path):
    from tandem.core.store import CandleStore

    warm = 1500
    profile = small_profile(warmup=warm)
    market = sample_market(n_tradable=40, warmup=warm)
    t0, end = replay_window(market, warm)
    lo = t0 - warm * TF_MS
    store = CandleStore(tmp_path / "data", exchange="binance", timeframe="1m")
    for s in profile.assets:  # the store lacks the last 30 warm-up bars (a stale download)
        f = market.frame(s)
        store.append(s, f[(f["ts"] >= lo - 50 * TF_MS) & (f["ts"] < t0 - 30 * TF_MS)])

    rest_db, store_db = tmp_path / "rest.sqlite", tmp_path / "store.sqlite"
    d_rest, emu_rest, *_ = await _replay(profile, market, rest_db)
    d_store, emu_store, *_ = await _replay(profile, market, store_db,
                                           candle_store=tmp_path / "data")
    with StateStore(rest_db) as a, StateStore(store_db) as b:
        fills_rest, fills_store = a.fills_frame(), b.fills_frame()
    batch = batch_fills(profile, market, t0, end)
    assert len(batch) > 0
    assert_journal_equal(fills_rest, batch)
    assert_journal_equal(fills_store, batch)
    assert_candles_exactly_once(store_db, market, profile.assets, lo, end)
    feeds = d_store.supervisor.feeds
    assert all(f.from_store == warm - 30 for f in feeds)
    # REST fetched only the tail: one page per symbol instead of two
    def pages(emu):
        return sum(p == "/api/v3/klines" for p, _ in emu.rest_log)
    assert pages(emu_store) == len(profile.assets) < pages(emu_rest)
    # ... and stored it: the store now reaches the bar before t0
    await asyncio.sleep(0)
    for s in profile.assets:
        assert store.last_ts(s) >= t0 - TF_MS


# ---- the REST weight budget ---------------------------------------------------------------
async def test_rest_budget_bursts_then_refills_at_its_rate():
    from tandem.daemon.restbudget import RestBudget

    b = RestBudget(600, share=0.8, burst_share=0.25)  # 480/min: burst 120, then 6 weight/s
    t = time.monotonic()
    for _ in range(60):  # the burst: 60 klines pages of weight 2 at once
        await b.acquire(2)
    assert time.monotonic() - t < 0.2
    for _ in range(6):  # 12 more weight: ~2 s at 6 weight/s
        await b.acquire(2)
    took = time.monotonic() - t
    assert 1.6 < took < 3.5, took
    assert b.spent == 132


async def test_rest_budget_pause_stops_everyone():
    from tandem.daemon.restbudget import RestBudget

    b = RestBudget(6000)
    b.pause(0.4)  # a 429 said Retry-After
    t = time.monotonic()
    await asyncio.gather(b.acquire(2), b.acquire(2))
    assert time.monotonic() - t >= 0.39 and b.penalties == 1


async def test_warmup_from_store_missing_symbol_comes_over_rest(tmp_path):
    from tandem.core.store import CandleStore

    profile = small_profile()
    market = sample_market(n_tradable=30)
    t0, end = replay_window(market)
    lo = t0 - profile.warmup * TF_MS
    store = CandleStore(tmp_path / "data", exchange="binance", timeframe="1m")
    stored = profile.assets[:2]  # the third asset was never downloaded
    for s in stored:
        f = market.frame(s)
        store.append(s, f[(f["ts"] >= lo) & (f["ts"] < t0)])
    db = tmp_path / "d.sqlite"
    daemon, emu, *_ = await _replay(profile, market, db, candle_store=tmp_path / "data")
    by = {f.symbol: f.from_store for f in daemon.supervisor.feeds}
    assert by == {s: (profile.warmup if s in stored else 0) for s in profile.assets}
    with StateStore(db) as st:
        assert_journal_equal(st.fills_frame(), batch_fills(profile, market, t0, end))
    assert_candles_exactly_once(db, market, profile.assets, lo, end)
