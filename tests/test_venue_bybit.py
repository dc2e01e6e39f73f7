"""Bybit through the real ccxt.pro ``bybit`` client against the emulator speaking Bybit's
v5 wire protocol (tandem.daemon.emulator.bybit): REST instruments and klines, the websocket
subscribe/ack and op ping/pong, kline frames with ``confirm``, and replay == backtest bit
for bit — also when the closed flag is missing from every frame."""

from __future__ import annotations

import json
import re

import aiohttp
from tandem.daemon.emulator.bybit import BybitEmulator
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


async def _replay_bybit(tmp_path, emulator_cls=BybitEmulator):
    profile = small_profile("discrete", exchange="bybit")
    market = sample_market()
    db = tmp_path / "d.sqlite"
    t0, end = replay_window(market, profile.warmup)
    daemon = make_daemon(profile, db, exchange_id="bybit")
    seen: dict = {}
    await run_replay(daemon, market, t0, end, bar_timeout_s=2.0, emulator_cls=emulator_cls,
                     on_emulator=lambda emu: seen.setdefault("emu", emu))
    with StateStore(db) as st:
        paper = st.fills_frame()
        assert st.t0 == t0 and st.last_ts == end - TF_MS
    batch = batch_fills(profile, market, t0, end)
    assert len(batch) > 0, "the sample must trade, or parity proves nothing"
    assert_journal_equal(paper, batch)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    return daemon, seen["emu"], profile


async def test_bybit_replay_fills_equal_batch(tmp_path):
    daemon, emu, profile = await _replay_bybit(tmp_path)
    # Bybit's wire was used: v5 REST paths and kline.<interval>.<SYMBOL> topics
    assert emu.rest_log and all(p.startswith("/v5/market/") for p, _ in emu.rest_log)
    assert any(p == "/v5/market/kline" for p, _ in emu.rest_log)
    assert {s for _, subs in emu.subscribe_log for s in subs} == {
        f"kline.1.{s.replace('/', '')}" for s in profile.assets}
    assert daemon.live and daemon.late == 0


class _NoConfirm(BybitEmulator):
    """Every kline frame without its ``confirm`` field."""

    @staticmethod
    def _event_json(symbol, interval, bar, tf, t):
        text = BybitEmulator._event_json(symbol, interval, bar, tf, t)
        return re.sub(r'"confirm":(true|false),', "", text)


async def test_bybit_without_the_closed_flag_still_equals_batch(tmp_path):
    """No ``confirm``: no frame is taken as closed; each bar is proven closed by the next
    bar's first frame and fetched over REST — same fills, one REST request per bar more."""
    _, emu, profile = await _replay_bybit(tmp_path, _NoConfirm)
    klines = [q for p, q in emu.rest_log if p == "/v5/market/kline"]
    assert len(klines) > 100  # the bars came over REST, not from frames


async def test_bybit_emulator_wire_ping_subscribe_limits():
    market = sample_market()
    async with BybitEmulator(market, start=market.first_ts) as emu, \
            aiohttp.ClientSession() as http, http.ws_connect(emu.ws_url) as ws:
        await ws.send_str(json.dumps({"op": "ping", "req_id": "p1"}))
        pong = json.loads((await ws.receive()).data)
        assert pong["op"] == "ping" and pong["ret_msg"] == "pong" and pong["success"] is True
        args = [f"kline.1.{s.replace('/', '')}" for s in market.symbols]
        await ws.send_str(json.dumps({"op": "subscribe", "args": args * 11, "req_id": "s1"}))
        refused = json.loads((await ws.receive()).data)
        assert refused["success"] is False and refused["req_id"] == "s1"
        await ws.send_str(json.dumps({"op": "subscribe", "args": args[:1], "req_id": "s2"}))
        ack = json.loads((await ws.receive()).data)
        assert ack == {**ack, "success": True, "op": "subscribe", "req_id": "s2"}
        await emu.advance(1)
        frame = json.loads((await ws.receive()).data)
        assert frame["topic"] == args[0] and frame["type"] == "snapshot"
        (k,) = frame["data"]
        assert set(k) == {"start", "end", "interval", "open", "close", "high", "low", "volume",
                          "turnover", "confirm", "timestamp"}
        async with http.get(f"{emu.rest_url}/v5/market/kline",
                            params={"category": "spot", "symbol": "BTCUSDT",
                                    "interval": "1", "limit": "3"}) as r:
            body = await r.json()
        rows = body["result"]["list"]
        assert body["retCode"] == 0 and len(rows) == 2  # the closed bar + the forming one
        assert int(rows[0][0]) > int(rows[1][0])  # newest first
        async with http.get(f"{emu.rest_url}/v5/market/kline",
                            params={"category": "spot", "symbol": "NOPEUSDT",
                                    "interval": "1"}) as r:
            assert r.status == 200 and (await r.json())["retCode"] != 0


def test_tandem_daemon_replay_on_bybit(tmp_path):
    """``tandem-daemon replay`` of a Bybit profile: the emulator speaks Bybit, the daemon
    trades through ccxt.pro bybit, the summary is printed (exit 0)."""
    from tests.test_hostile_daemon import _daemon
    from tests.test_venues import _manifest

    proc = _daemon("replay", "--manifest", str(_manifest(tmp_path, exchange="bybit")),
                   "--profile", "tst", "--bars", "60", "--log-level", "warning",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "replay of tst: 160 slices" in proc.stdout and "fills by reason" in proc.stdout


def test_emulator_command_speaks_bybit_when_asked(tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.daemon.emulator", "--protocol", "bybit", "--generate", "10",
         "--symbols", "BTC/USDT", "--timeframe", "1m", "--speed", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        urls = {}
        for line in proc.stdout:
            if line.startswith("TANDEM_EXCHANGE_"):
                k, v = line.strip().split("=", 1)
                urls[k] = v
            if len(urls) == 2:
                break
        assert urls["TANDEM_EXCHANGE_WS_URL"].endswith("/v5/public/spot")
        q = "/v5/market/kline?category=spot&symbol=BTCUSDT&interval=1&limit=2"
        with urllib.request.urlopen(urls["TANDEM_EXCHANGE_REST_URL"] + q, timeout=10) as r:
            body = json.loads(r.read())
        assert body["retCode"] == 0 and body["result"]["symbol"] == "BTCUSDT"
    finally:
        proc.kill()
        proc.wait(10)


async def test_bybit_survives_every_fault_with_the_same_fills(tmp_path):
    """The emulator's whole fault plan (closes, aborts, a silent socket for the watchdog,
    refused handshakes, REST 5xx and stalls, duplicate/out-of-order/late/malformed/dropped
    frames) on Bybit's wire: every candle exactly once, fills == backtest."""
    from tests.test_daemon_faults import _mix
    from tests.test_daemon_support import replay

    profile = small_profile(exchange="bybit")
    market = sample_market(n_tradable=75)
    db = tmp_path / "d.sqlite"
    daemon = await replay(profile, market, db, on_bar=_mix, exchange_id="bybit")
    t0, end = replay_window(market)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    with StateStore(db) as st:
        paper = st.fills_frame()
        assert st.last_ts == end - TF_MS
    assert_journal_equal(paper, batch_fills(profile, market, t0, end))
    assert daemon.supervisor.watchdog_fires > 0
    assert sum(f.reconnects for f in daemon.supervisor.feeds) > 0


async def test_bybit_subscribes_in_batches_of_ten_through_ccxt_pro():
    """ccxt.pro bybit sends one topic per ``subscribe``; the adapter batches them, at most
    10 a message (Bybit's cap on ``args``, which the emulator enforces: over it, refused)."""
    from tests.test_venues import _subscribed

    names = [f"Q{chr(65 + i // 26)}{chr(65 + i % 26)}/USDT" for i in range(25)]
    sizes, _ = await _subscribed("bybit", names)
    assert sizes == [5, 10, 10]


async def _bybit_fetches(emu, n: int, venue=None) -> tuple[int, int]:
    """``n`` klines pages fetched concurrently through the daemon's exchange (its REST
    budget); returns (answered, rate-limited)."""
    import asyncio

    import ccxt
    from tandem.daemon.client import build_exchange

    ex = build_exchange("bybit", emu.rest_url, emu.ws_url, venue=venue)
    since = emu.market.first_ts

    async def one() -> int:
        try:
            await ex.fetch_ohlcv("BTC/USDT", "1m", since=since, limit=10)
            return 0
        except ccxt.RateLimitExceeded:
            return 1

    try:
        limited = sum(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await ex.close()
    return n - limited, limited


async def test_bybit_rest_budget_stays_inside_the_ip_limit():
    """Bybit bans an IP that sends more than 600 requests in 5 s (HTTP 403, 10+ minutes):
    800 pages at once through the daemon's budget never pass 600 in any 5-s window."""
    market = sample_market()
    async with BybitEmulator(market, start=market.first_ts + 50 * TF_MS) as emu:
        answered, limited = await _bybit_fetches(emu, 800)
    assert (answered, limited, emu.rest_403) == (800, 0, 0)
    assert 400 < emu.peak_ip_requests <= 600


async def test_bybit_403_pauses_every_request_for_the_ban():
    """Past the limit the emulator answers 403 for ``ban_s``; the daemon's budget then
    holds every request for the venue's pause (Bybit sends no Retry-After), and the next
    request, after the ban, is answered."""
    import asyncio
    import time

    import ccxt
    from tandem.daemon.client import build_exchange
    from tandem.daemon.venues import BybitAdapter

    venue = BybitAdapter()
    venue.rate_limit_pause_s = 1.5  # Bybit's: 600 s (the ban is 10+ minutes)
    market = sample_market()
    async with BybitEmulator(market, start=market.first_ts + 50 * TF_MS,
                             ip_limit=(5, 1.0), ban_s=1.0) as emu:
        ex = build_exchange("bybit", emu.rest_url, emu.ws_url, venue=venue)
        try:
            fetch = ex.fetch_ohlcv("BTC/USDT", "1m", since=market.first_ts, limit=10)
            results = await asyncio.gather(*(ex.fetch_ohlcv(
                "BTC/USDT", "1m", since=market.first_ts, limit=10) for _ in range(8)),
                return_exceptions=True)
            fetch.close()
            limited = [r for r in results if isinstance(r, ccxt.RateLimitExceeded)]
            assert limited and emu.rest_403 == len(limited)
            assert ex.rest_budget.penalties > 0
            t = time.monotonic()
            rows = await ex.fetch_ohlcv("BTC/USDT", "1m", since=market.first_ts, limit=10)
            waited = time.monotonic() - t
        finally:
            await ex.close()
    assert len(rows) == 10 and 1.0 < waited < 3.0  # held by the pause, then answered
