"""OKX through the real ccxt.pro ``okx`` client against the emulator speaking OKX's v5
wire protocol (tandem.daemon.emulator.okx): public instruments, candles / history-candles REST
with their limits, the business websocket's subscribe/ack and text ping/pong, candle
frames with ``confirm``, and replay == backtest bit for bit — also under the whole fault
plan and when the closed flag is missing from every frame."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from tandem.daemon.emulator.okx import OkxEmulator
from tandem.daemon.replay import run_replay
from tandem.daemon.state import StateStore
from tandem.daemon.venues import OkxAdapter, VenueError, check_venue

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


async def _replay_okx(tmp_path, emulator_cls=OkxEmulator):
    profile = small_profile("discrete", exchange="okx")
    market = sample_market()
    db = tmp_path / "d.sqlite"
    t0, end = replay_window(market, profile.warmup)
    daemon = make_daemon(profile, db, exchange_id="okx")
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


async def test_okx_replay_fills_equal_batch(tmp_path):
    daemon, emu, profile = await _replay_okx(tmp_path)
    # OKX's wire was used: v5 REST paths, candle1m channels, several per subscribe message
    assert emu.rest_log and all(p.startswith("/api/v5/") for p, _ in emu.rest_log)
    # recent pages from candles (its newest 1,440 bars, by the venue's clock ccxt measured)
    assert any(p == "/api/v5/market/candles" for p, _ in emu.rest_log)
    assert any(p == "/api/v5/public/time" for p, _ in emu.rest_log)
    streams = [s for _, subs in emu.subscribe_log for s in subs]
    assert set(streams) == {f"candle1m:{s.replace('/', '-')}" for s in profile.assets}
    assert len(emu.subscribe_log) < len(streams)  # batched, not one channel per message
    assert daemon.live and daemon.late == 0
    assert emu.rest_429 == 0  # the daemon's budget stays inside OKX's per-2-s limits


class _NoConfirm(OkxEmulator):
    """Every candle frame without its ``confirm`` field (8 fields instead of 9)."""

    @staticmethod
    def _event_json(symbol, interval, bar, tf, t):
        return re.sub(r',"[01]"\]\]\}$', "]]}", OkxEmulator._event_json(symbol, interval, bar, tf, t))


async def test_okx_without_the_closed_flag_still_equals_batch(tmp_path):
    """No ``confirm``: no frame is taken as closed; each bar is proven closed by the next
    bar's first frame and fetched over REST — same fills, one REST request per bar more."""
    _, emu, _ = await _replay_okx(tmp_path, _NoConfirm)
    candles = [q for p, q in emu.rest_log if p.startswith("/api/v5/market/")]
    assert len(candles) > 100  # the bars came over REST, not from frames


async def test_okx_survives_every_fault_with_the_same_fills(tmp_path):
    """The emulator's whole fault plan on OKX's wire: every candle exactly once, fills ==
    backtest."""
    from tests.test_daemon_faults import _mix
    from tests.test_daemon_support import replay

    profile = small_profile(exchange="okx")
    market = sample_market(n_tradable=75)
    db = tmp_path / "d.sqlite"
    daemon = await replay(profile, market, db, on_bar=_mix, exchange_id="okx")
    t0, end = replay_window(market)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    with StateStore(db) as st:
        paper = st.fills_frame()
        assert st.last_ts == end - TF_MS
    assert_journal_equal(paper, batch_fills(profile, market, t0, end))
    assert daemon.supervisor.watchdog_fires > 0
    assert sum(f.reconnects for f in daemon.supervisor.feeds) > 0


async def _recv(ws, n=1):
    return [json.loads((await asyncio.wait_for(ws.receive(), 5)).data) for _ in range(n)]


async def test_okx_emulator_wire_ping_subscribe_frames():
    market = sample_market()
    async with OkxEmulator(market, start=market.first_ts + 100 * TF_MS) as emu, \
            aiohttp.ClientSession() as http, http.ws_connect(emu.ws_url + "/business") as ws:
        await ws.send_str("ping")
        assert (await asyncio.wait_for(ws.receive(), 5)).data == "pong"
        await ws.send_str(json.dumps({"op": "subscribe", "args": [
            {"channel": "candle1m", "instId": "NOPE-USDT"}]}))
        (err,) = await _recv(ws)
        assert err["event"] == "error" and err["code"] == "60018"
        args = [{"channel": "candle1m", "instId": s.replace("/", "-")} for s in market.symbols]
        await ws.send_str(json.dumps({"id": "7", "op": "subscribe", "args": args}))
        acks = await _recv(ws, len(args))
        assert [a["arg"] for a in acks] == args
        assert all(a["event"] == "subscribe" and a["id"] == "7" for a in acks)
        await emu.advance(1)
        # per channel: the forming update, the closing one (confirm "1"), the next bar's open
        frames = await _recv(ws, 3 * len(args))
        closing = [f for f in frames if f["data"][0][8] == "1"]
        assert len(closing) == len(args) and all(len(f["data"][0]) == 9 for f in frames)
        assert {f["arg"]["channel"] for f in frames} == {"candle1m"}


async def test_okx_emulator_candles_paging_and_rate_limit():
    from tandem.daemon.emulator.market import MarketData

    market = MarketData.generate(["BTC/USDT"], "1m", n_bars=1700)
    now = market.first_ts + 1600 * TF_MS
    async with OkxEmulator(market, start=now) as emu, aiohttp.ClientSession() as http:
        base = f"{emu.rest_url}/api/v5/market"

        async def get(path, **params):
            async with http.get(f"{base}/{path}", params={"instId": "BTC-USDT", "bar": "1m",
                                                         **params}) as r:
                return r.status, await r.json()

        _, body = await get("candles", limit="3")
        rows = body["data"]
        assert [int(x[0]) for x in rows] == [now, now - TF_MS, now - 2 * TF_MS]  # newest first
        assert [x[8] for x in rows] == ["0", "1", "1"]  # the forming bar, then closed ones
        since = market.first_ts + 10 * TF_MS
        page = {"before": str(since - 1), "after": str(since + 100 * TF_MS), "limit": "100"}
        _, body = await get("candles", **page)
        assert body["data"] == []  # older than the newest 1,440 bars: history-candles only
        _, body = await get("history-candles", **page)
        assert [int(x[0]) for x in body["data"]] == [since + k * TF_MS for k in range(99, -1, -1)]
        _, body = await get("history-candles", **{**page, "limit": "301"})
        assert body["code"] == "51000"  # history-candles: 300 rows at most (OKX's docs)
        _, body = await get("candles", limit="300")
        assert len(body["data"]) == 300  # candles: 300
        got = [await get("history-candles", **page) for _ in range(25)]
        assert [st for st, _ in got].count(429) >= 5
        assert got[-1] == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})


def test_okx_adapter_paging_and_utc_bars():
    okx = OkxAdapter()
    market = {"id": "BTC-USDT"}
    now = 1_700_000_000_000
    name, req = okx.klines_call(market, "1m", now - 50 * 60_000, 500, now)
    assert name == "publicGetMarketCandles" and req["limit"] == 100
    assert req["before"] == now - 50 * 60_000 - 1 and req["after"] == now + 50 * 60_000
    name, _ = okx.klines_call(market, "1m", now - 2000 * 60_000, 100, now)
    assert name == "publicGetMarketHistoryCandles"
    assert okx.stream_name(market, "1D") == "candle1Dutc:BTC-USDT"  # not Hong Kong's 1D
    assert okx.klines_call(market, "1D", None, None)[1]["bar"] == "1Dutc"
    frame = {"arg": {"channel": "candle1Dutc", "instId": "BTC-USDT"},
             "data": [["1700006400000", "1", "2", "0.5", "1.5", "10", "10", "15", "1"],
                      ["1700092800000", "1", "2", "0.5", "1.5", "10", "10", "15"]]}
    closed, missing = okx.parse_klines(frame)
    assert closed.closed and closed.row == [1700006400000, 1.0, 2.0, 0.5, 1.5, 10.0]
    assert closed.interval == "1D" and not missing.closed and missing.row is None
    assert okx.rest_rows({"code": "0", "data": [["2", "1", "1", "1", "1", "1", "1", "1", "0"],
                                                ["1", "1", "1", "1", "1", "1", "1", "1", "1"]]}
                         )[0][0] == 1  # oldest first
    with pytest.raises(VenueError, match="1s"):
        check_venue("okx", "1s", ["BTC/USDT"])


def test_tandem_daemon_replay_on_okx(tmp_path):
    """``tandem-daemon replay`` of an OKX profile: the emulator speaks OKX, the daemon
    trades through ccxt.pro okx, the summary is printed (exit 0)."""
    from tests.test_hostile_daemon import _daemon
    from tests.test_venues import _manifest

    proc = _daemon("replay", "--manifest", str(_manifest(tmp_path, exchange="okx")),
                   "--profile", "tst", "--bars", "60", "--log-level", "warning",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "replay of tst: 160 slices" in proc.stdout and "fills by reason" in proc.stdout


def test_emulator_command_speaks_okx_when_asked(tmp_path):
    import os
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tandem.daemon.emulator", "--protocol", "okx", "--generate", "10",
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
        assert urls["TANDEM_EXCHANGE_WS_URL"].endswith("/ws/v5")
        q = "/api/v5/market/candles?instId=BTC-USDT&bar=1m&limit=2"
        with urllib.request.urlopen(urls["TANDEM_EXCHANGE_REST_URL"] + q, timeout=10) as r:
            body = json.loads(r.read())
        assert body["code"] == "0" and len(body["data"]) == 1  # the forming bar at the start
    finally:
        proc.kill()
        proc.wait(10)
