"""The dashboard (issue 18) over a real socket on 127.0.0.1: login form -> HttpOnly cookie,
read-only routes, the static files from the package, server-sent events (first snapshot,
pushes on committed slices, coalescing, heartbeats, clean shutdown), and the numbers it
shows checked against independent truth: the engine's own stop fills (levels), a brute-force
drawdown, RATINGS.md's label thresholds written out here, and the SQLite journal of a replay
through the emulator."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
from pydantic import SecretStr
from tandem.core.engine import Engine, EngineConfig
from tandem.daemon.app import Daemon, DaemonConfig
from tandem.daemon.ops import Health, Metrics, Ops, OpsConfig, OpsServer
from tandem.daemon.ops.dashboard import SESSION_COOKIE, DashboardHub, _EquityTrack
from tandem.daemon.ops.provider import SqliteStateProvider
from tandem.daemon.replay import run_replay
from tandem.daemon.strategy import stepper_factory

from tests.test_daemon_support import TF_MS, replay_window, sample_market, small_profile

TOKEN = "dashboard-test-token-5b0e1f7a"


async def read_events(resp: aiohttp.ClientResponse, n: int, timeout: float = 10.0):
    """The next ``n`` SSE events as (event, data) from a streaming response."""
    out: list[tuple[str, dict]] = []
    event, data = None, []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        line = await asyncio.wait_for(resp.content.readline(), deadline - time.monotonic())
        if not line:
            break
        text = line.decode().rstrip("\n")
        if text.startswith("event:"):
            event = text[6:].strip()
        elif text.startswith("data:"):
            data.append(text[5:].strip())
        elif text == "" and event is not None:
            out.append((event, json.loads("\n".join(data))))
            event, data = None, []
    return out


@pytest.fixture
async def server():
    made = []

    async def _make(token=TOKEN, provider=None, **hub_kw):
        health = Health()
        health.set_phase("live")
        metrics = Metrics()
        hub = DashboardHub(health=health, metrics=metrics, provider=lambda: provider,
                           token=SecretStr(token) if token else None, **hub_kw)
        srv = OpsServer(metrics=metrics, health=health, provider=provider, host="127.0.0.1",
                        port=0, token=token, dashboard=hub)
        await srv.start()
        made.append(srv)
        return srv, hub

    yield _make
    for srv in made:
        await srv.stop()


def session() -> aiohttp.ClientSession:
    # unsafe=True: accept cookies from an IP host (127.0.0.1), as a browser does
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def login(session: aiohttp.ClientSession, url: str, token: str = TOKEN):
    return await session.post(url + "/login", data={"token": token}, allow_redirects=False)


# --- auth ------------------------------------------------------------------------------------
async def test_login_form_sets_httponly_strict_cookie_and_unlocks_reads(server):
    srv, _ = await server()
    async with session() as s:
        r = await s.get(srv.url + "/")
        page = await r.text()
        assert r.status == 200 and 'action="/login"' in page and 'method="post"' in page
        assert TOKEN not in page
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        for path in ("/api/dashboard", "/events", "/health", "/fills"):
            assert (await s.get(srv.url + path)).status == 401, path
        bad = await login(s, srv.url, "wrong-token-wrong-token")
        assert bad.status == 401 and SESSION_COOKIE not in bad.cookies
        ok = await login(s, srv.url)
        assert ok.status == 303 and ok.headers["Location"] == "/"
        raw = ok.headers["Set-Cookie"]
        assert "HttpOnly" in raw and "SameSite=Strict" in raw and "Path=/" in raw
        assert TOKEN not in raw, "the cookie must not carry the token itself"
        # the session now reads everything (GET), and the page is the dashboard
        assert (await s.get(srv.url + "/api/dashboard")).status == 200
        assert (await s.get(srv.url + "/health")).status == 200
        page = await (await s.get(srv.url + "/")).text()
        assert "/static/dashboard.js" in page and "/login" not in page.split("<main>")[1]
        # ...but a cookie never authorizes a write: there is none to authorize
        assert (await s.post(srv.url + "/fills")).status in (401, 405)
        out = await s.post(srv.url + "/logout", allow_redirects=False)
        assert out.status == 303
        assert (await s.get(srv.url + "/api/dashboard")).status == 401


async def test_forged_cookie_is_refused_and_bearer_still_works(server):
    srv, _ = await server()
    async with aiohttp.ClientSession(cookies={SESSION_COOKIE: TOKEN}) as s:
        assert (await s.get(srv.url + "/api/dashboard")).status == 401
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        assert (await s.get(srv.url + "/api/dashboard")).status == 200


async def test_no_token_means_no_login(server):
    srv, _ = await server(token=None)
    async with session() as s:
        page = await (await s.get(srv.url + "/")).text()
        assert "/static/dashboard.js" in page
        assert (await s.get(srv.url + "/api/dashboard")).status == 200


async def test_static_files_ship_in_the_package(server):
    srv, _ = await server()
    async with session() as s:
        js = await s.get(srv.url + "/static/dashboard.js")
        assert js.status == 200 and js.content_type == "text/javascript"
        body = await js.text()
        assert "EventSource" in body and "http://" not in body.replace(
            "http://www.w3.org/2000/svg", ""), "no external resource"
        css = await s.get(srv.url + "/static/dashboard.css")
        assert css.status == 200 and css.content_type == "text/css"
        for bad in ("/static/nope.js", "/static/..%2fhttp.py", "/static/__init__.py"):
            assert (await s.get(srv.url + bad)).status == 404, bad


# --- SSE ---------------------------------------------------------------------------------------
def fake_daemon(n=3):
    eng = Engine(EngineConfig(stop_loss_pct=0.02, take_profit_pct=0.05, trailing_stop_pct=0.03),
                 [f"A{i}/USDT" for i in range(n)])
    feeds = [SimpleNamespace(symbol=s, last_update_at=time.monotonic() - 5.0, reconnects=i,
                             backfills=0, busy=False) for i, s in enumerate(eng.symbols)]
    return SimpleNamespace(
        stepper=SimpleNamespace(engine=eng, core_ratings=lambda: {
            "A0/USDT": {"1h": 0.6, "4h": -0.2, "1d": float("nan")}}),
        supervisor=SimpleNamespace(feeds=feeds), live=True,
        cfg=SimpleNamespace(profile_name="p", run_id="r"))


async def test_sse_first_snapshot_then_pushes_and_heartbeats(server):
    srv, hub = await server(heartbeat_s=0.3, min_push_interval_s=0.0)
    hub.attach(fake_daemon())
    async with session() as s:
        await login(s, srv.url)
        resp = await s.get(srv.url + "/events")
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        (ev, snap), = await read_events(resp, 1)
        assert ev == "snapshot" and snap["profile"] == "p"
        assert [f["reconnects"] for f in snap["feeds"]] == [0, 1, 2]
        assert 4.0 < (snap["now"] - snap["feeds"][0]["last_update_ms"]) / 1000 < 30.0
        rt = snap["ratings"]
        assert rt["timeframes"] == ["1h", "4h", "1d"]
        assert rt["rows"][0]["labels"] == {"1h": "Strong Buy", "4h": "Sell", "1d": None}
        t = time.monotonic()
        hub.on_slice(1_700_000_060_000, 0.002)
        events = await read_events(resp, 2, timeout=5)
        assert events[0][0] == "snapshot" and time.monotonic() - t < 1.0
        assert events[0][1]["slice"]["last_ts_close"] == 1_700_000_060_000
        assert events[1][0] == "heartbeat" and events[1][1]["health"]["status"] == "ok"
        assert hub.streams == 1
        t = time.monotonic()
    # the server stops promptly with a stream open (the fixture's stop runs next)
    await srv.stop()
    assert time.monotonic() - t < 3.0


async def test_slices_in_a_burst_coalesce_into_few_pushes(server):
    srv, hub = await server(min_push_interval_s=0.2)
    hub.attach(fake_daemon())
    async with session() as s:
        await login(s, srv.url)
        resp = await s.get(srv.url + "/events")
        await read_events(resp, 1)
        for k in range(2000):
            hub.on_slice(1_700_000_000_000 + k * 60_000, 0.001)
        events = await read_events(resp, 1)
        await asyncio.sleep(0.6)
        assert hub.pushes <= 3, hub.pushes
        assert events[0][1]["slice"]["slices"] >= 1


async def test_no_stream_no_work(server):
    _, hub = await server()
    hub.attach(fake_daemon())
    for k in range(100):
        hub.on_slice(1_700_000_000_000 + k * 60_000, 0.001)
    await asyncio.sleep(0.05)
    assert hub.pushes == 0 and hub.slices == 100


# --- the numbers -------------------------------------------------------------------------------
def test_equity_track_drawdown_is_exact_and_series_bounded():
    rng = np.random.default_rng(3)
    eq = 10_000 * np.cumprod(1 + rng.normal(0, 0.01, 20_000))
    tr = _EquityTrack(max_points=100)
    for k, v in enumerate(eq):
        tr.add(k, float(v))
    d = tr.to_dict()
    peak = np.maximum.accumulate(eq)
    assert d["max_drawdown"] == pytest.approx(float(np.min(eq / peak - 1)), rel=1e-12)
    assert len(d["points"]) <= 2 * 100 + 1
    assert d["points"][-1][0] == len(eq) - 1 and d["points"][0][0] == 0
    assert d["start"] == eq[0] and d["last"] == eq[-1]
    for t, v, dd in d["points"]:  # every kept point carries its exact drawdown
        assert v == eq[t] and dd == pytest.approx(eq[t] / peak[t] - 1, rel=1e-12)


def test_open_levels_are_where_the_engine_then_stops_out():
    """The trailing level shown is the price the engine's own exit fills at next bar."""
    cfg = EngineConfig(stop_loss_pct=0.10, take_profit_pct=0.5, trailing_stop_pct=0.05,
                       size_pct=0.5, slippage_bps=0.0)
    eng = Engine(cfg, ["X/USDT"])
    one = lambda v: np.array([v], dtype=float)  # noqa: E731
    eng.step_raw(60_000, one(100), one(101), one(99), one(100), one(1))  # entry at 100
    eng.step_raw(120_000, one(100), one(120), one(100), one(118), one(1))  # peak 120
    (lv,) = eng.open_levels()
    assert lv["entry"] == 100.0 and lv["last"] == 118.0 and lv["side"] == "long"
    assert lv["stop_loss"] == pytest.approx(90.0) and lv["take_profit"] == pytest.approx(150.0)
    assert lv["unrealized"] == pytest.approx((118.0 - 100.0) * lv["qty"])
    # next bar opens above the trailing level and trades through it
    fills = eng.step_raw(180_000, one(117), one(117.5), one(110), one(111), one(1))
    assert len(fills) == 1
    from tandem.core.engine.layout import F_PRICE, F_REASON, REASON_TRAILING_STOP

    assert int(fills[0, F_REASON]) == REASON_TRAILING_STOP
    assert fills[0, F_PRICE] == pytest.approx(lv["trailing"], rel=1e-12)
    assert lv["stop"] == lv["trailing"]
    assert eng.open_levels() == []


async def test_snapshot_unrealized_pnl_is_net_of_the_entry_fee_as_the_equity(server):
    """One open long, bought at 100 with a 0.1 % fee: the equity is down by that fee at the
    entry bar's close while the dashboard showed +0.00 unrealized. The snapshot's unrealized
    PnL is net of the entry fee paid, so it equals the equity's change since the start."""
    cfg = EngineConfig(fee_rate=0.001, size_pct=0.5, slippage_bps=0.0, initial_cash=10_000.0)
    eng = Engine(cfg, ["X/USDT"])
    one = lambda v: np.array([v], dtype=float)  # noqa: E731
    eng.step_raw(60_000, one(100), one(101), one(99), one(100), one(1))  # entry at 100
    daemon = fake_daemon()
    daemon.stepper.engine = eng
    _, hub = await server()
    hub.attach(daemon)
    for last in (100.0, 103.0):
        if last != 100.0:
            eng.step_raw(120_000, one(100), one(104), one(99), one(last), one(1))
        (pos,) = (await hub.snapshot())["positions"]
        assert pos["last"] == last
        assert pos["entry_fee"] == pytest.approx(pos["qty"] * 100.0 * 0.001, rel=1e-12)
        assert pos["unrealized"] == pytest.approx(eng.equity() - 10_000.0, rel=1e-12, abs=1e-9)
        assert pos["unrealized"] == pytest.approx((last - 100.0) * pos["qty"] - pos["entry_fee"])
    assert pos["unrealized"] < (103.0 - 100.0) * pos["qty"]


def rating_label(v: float) -> str | None:
    """RATINGS.md, "Ratings and labels", written out independently of the core."""
    if v != v:
        return None
    if v < -0.5:
        return "Strong Sell"
    if v < -0.1:
        return "Sell"
    if v <= 0.1:
        return "Neutral"
    if v <= 0.5:
        return "Buy"
    return "Strong Buy"


# --- a replay through the emulator -----------------------------------------------------------
async def test_replay_fills_reach_the_stream(tmp_path):
    """Fills of a replay (emulator + real ccxt.pro + daemon) arrive on an open SSE stream,
    each within the same second it was committed; the stream's last snapshot matches the
    journal, the engine's levels and RATINGS.md's labels."""
    profile = small_profile("discrete", exit_rules={
        "stop_loss_pct": 0.01, "take_profit_pct": 0.015, "trailing_stop_pct": 0.008,
        "intrabar": "pessimistic"})
    market = sample_market()
    db = tmp_path / "d.sqlite"
    t0, end = replay_window(market)
    ops = Ops(OpsConfig(http_port=0, http_token=SecretStr(TOKEN), notify=False),
              SqliteStateProvider(db))
    ops.dashboard.min_push_interval_s = 0.0
    await ops.start()
    cfg = DaemonConfig(profile_name=profile.name, profile_json=profile.canonical_json(),
                       symbols=profile.assets, exchange_id="binance", base_timeframe="1m",
                       tf_ms=TF_MS, warmup_bars=profile.warmup, state_db=db, grace_s=20.0,
                       watchdog_s=3.0, heartbeat_every_s=3600.0, rest_timeout_ms=2000)
    daemon = Daemon(cfg, stepper_factory(profile), ops=ops)
    ops.watch_daemon(daemon)
    committed: dict[str, float] = {}  # fill_id -> when its slice was committed
    seen: dict[str, float] = {}  # fill_id -> when a pushed snapshot first showed it
    snaps: list[dict] = []
    orig = ops.dashboard.on_slice

    def spy(ts, lat, rows=()):  # Ops calls this right after the slice's commit
        committed.update({r["fill_id"]: time.monotonic() for r in rows})
        orig(ts, lat, rows)

    ops.dashboard.on_slice = spy
    try:
        async with session() as s:
            await login(s, ops.server.url)
            resp = await s.get(ops.server.url + "/events")
            await read_events(resp, 1)

            async def listen():
                while True:
                    for _, snap in await read_events(resp, 1, timeout=60):
                        snaps.append(snap)
                        for f in snap["fills"]["latest"]:
                            seen.setdefault(f["fill_id"], time.monotonic())

            task = asyncio.create_task(listen())
            await run_replay(daemon, market, t0, end, bar_timeout_s=2.0)
            await asyncio.sleep(0.5)
            task.cancel()
    finally:
        await ops.stop()
    con = sqlite3.connect(db)
    journal = [r[0] for r in con.execute("SELECT fill_id FROM fills ORDER BY seq")]
    con.close()
    assert journal, "the sample must trade"
    assert set(journal) <= set(committed)
    missing = [f for f in journal if f not in seen]
    assert not missing, f"{len(missing)} fills never shown"
    lags = [seen[f] - committed[f] for f in journal]
    assert max(lags) < 2.0, max(lags)
    last = snaps[-1]
    assert last["fills"]["total"] == len(journal)
    assert [f["fill_id"] for f in last["fills"]["latest"]] == journal[::-1][:50]
    assert last["positions"] == json.loads(json.dumps(daemon.stepper.engine.open_levels()))
    for row in last["ratings"]["rows"]:
        for tf, v in row["values"].items():
            assert row["labels"][tf] == rating_label(float("nan") if v is None else v)
    assert {r["symbol"] for r in last["ratings"]["rows"]} == set(profile.core_assets)
    assert last["equity"]["now"] == pytest.approx(daemon.stepper.engine.equity())
    # A restarted dashboard rebuilds the same curve from the journal alone (cash after the
    # last fill + positions at their last consumed close), slice by slice.
    live = ops.dashboard.equity.to_dict()["points"]
    assert len(live) == (end - t0) // TF_MS  # one point per trading slice
    fresh = DashboardHub(health=Health(), metrics=Metrics(),
                         provider=lambda: SqliteStateProvider(db))
    await fresh.seed_history()
    rebuilt = fresh.equity.to_dict()
    assert [p[0] for p in rebuilt["points"]] == [p[0] for p in live]
    for (_, a, da), (_, b, db_) in zip(rebuilt["points"], live, strict=True):
        assert a == pytest.approx(b, rel=1e-12) and da == pytest.approx(db_, abs=1e-12)
    assert rebuilt["max_drawdown"] == pytest.approx(last["equity"]["max_drawdown"], abs=1e-12)


def test_static_files_are_package_data(tmp_path):
    """setuptools copies the page's files into the built package (what a wheel contains)."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(root / name, src / name)
    for pkg in ("tandem", "core", "backtest", "daemon"):
        shutil.copytree(root / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "build"
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(out)],
                         cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    shipped = {p.name for p in (out / "tandem" / "daemon" / "ops" / "static").iterdir()}
    assert {"index.html", "login.html", "dashboard.js", "dashboard.css"} <= shipped


def test_history_from_the_journal_joins_the_live_track():
    live = _EquityTrack(max_points=100)
    live.add(3, 90.0)
    live.add(4, 130.0)
    merged = live.with_history([(1, 100.0), (2, 120.0), (3, 95.0)]).to_dict()
    assert [p[0] for p in merged["points"]] == [1, 2, 3, 4]  # the live point wins at ts 3
    assert [p[1] for p in merged["points"]] == [100.0, 120.0, 90.0, 130.0]
    assert merged["max_drawdown"] == pytest.approx(90 / 120 - 1)
    assert merged["start"] == 100.0


async def test_without_a_token_only_loopback_host_names_get_the_page(server):
    srv, _ = await server(token=None)
    async with session() as s:
        for path in ("/", "/api/dashboard", "/events"):
            r = await s.get(srv.url + path, headers={"Host": "evil.example:8080"})
            assert r.status == 421, path
        for host in ("localhost:1", "127.0.0.1:8080", "[::1]:8080"):
            r = await s.get(srv.url + "/api/dashboard", headers={"Host": host})
            assert r.status == 200, host


async def test_replay_serves_the_dashboard_while_it_runs(tmp_path):
    """``tandem-daemon replay --http 0``: a person can watch a replay (the page, its event
    stream and /health answer while it plays); the replay still ends with its summary."""
    import sys

    from tests.test_ops_daemon import base_env, write_manifest

    write_manifest(tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tandem.daemon.cli", "replay", "--sample", "--bars", "120",
        "--speed", "1500", "--db", str(tmp_path / "r.sqlite"), "--fresh", "--http", "0",
        env=base_env(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 120)).decode()
            assert line, "replay ended without announcing the dashboard"
            if line.startswith("dashboard: "):
                url = line.split(" ", 1)[1].strip()
        drain = asyncio.ensure_future(proc.stderr.read())
        async with aiohttp.ClientSession() as s:
            async with s.get(url) as r:
                assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            async with s.get(url + "events") as r:
                assert r.status == 200
                while (line := await asyncio.wait_for(r.content.readline(), 10)) \
                        != b"event: snapshot\n":
                    assert line, "the stream ended before its first snapshot"
        out = (await asyncio.wait_for(proc.stdout.read(), 120)).decode()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, (await drain)[-2000:]
        assert "replay of ops_test" in out, out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_drawdown_and_change_count_from_the_initial_cash(tmp_path):
    """An entry on the first trading slice pays its fee: equity starts below the initial
    cash. The page's max drawdown and "since start" count from the initial cash, as the
    backtest's stats do (tandem.backtest.stats.drawdown with initial_cash), both live and
    rebuilt from the journal by a restarted dashboard."""
    from tandem.backtest.stats import drawdown
    from tandem.daemon.state import ClosedCandle, StateStore

    cfg = EngineConfig(size_pct=0.5, fee_rate=0.005, slippage_bps=0.0)
    eng = Engine(cfg, ["X/USDT"], profile="p", run_id="r", source="paper")
    hub = DashboardHub(health=Health(), metrics=Metrics())
    hub.attach(SimpleNamespace(stepper=SimpleNamespace(engine=eng), live=True))
    one = lambda v: np.array([v], dtype=float)  # noqa: E731
    db = tmp_path / "s.sqlite"
    closes = [100.0, 100.5, 101.0]
    values = []
    with StateStore(db) as st:
        st.bind_profile("p", json.dumps({"base_timeframe": "1m",
                                         "initial_cash": cfg.initial_cash}), "r")
        for k, c in enumerate(closes):
            ts = (k + 1) * TF_MS
            fills = eng.step(ts, one(c), one(c), one(c), one(c), one(1))
            rows = fills.to_dict("records")
            candle = ClosedCandle("X/USDT", ts - TF_MS, c, c, c, c, 1.0)
            pos = {"X/USDT": float(eng.astate[0, 0])}
            st.commit_slice(ts - TF_MS, [candle], [], rows, pos, warmup=False)
            hub.on_slice(ts, 0.001, rows)
            values.append(eng.equity())
    want = float(np.min(drawdown(np.array(values), cfg.initial_cash)))
    assert want < 0  # the first slice's fee
    live = hub.equity.to_dict()
    assert live["max_drawdown"] == pytest.approx(want, rel=1e-12)
    assert live["start"] == cfg.initial_cash
    fresh = DashboardHub(health=Health(), metrics=Metrics(),
                         provider=lambda: SqliteStateProvider(db))
    await fresh.seed_history()
    rebuilt = fresh.equity.to_dict()
    assert [p[1] for p in rebuilt["points"]] == pytest.approx(values, rel=1e-12)
    assert rebuilt["max_drawdown"] == pytest.approx(want, rel=1e-12)
    assert rebuilt["start"] == cfg.initial_cash


def test_missing_candles_count_every_slice_committed_during_a_read(tmp_path, monkeypatch):
    """The feed table's "missing" counts are incremental: a slice with missing assets
    committed while the page reads the journal (between two of its queries) must be counted
    on the next read, not skipped for good."""
    import tandem.daemon.ops.dashboard as dash
    from tandem.daemon.ops.dashboard import _JournalReader
    from tandem.daemon.state import StateStore

    db = tmp_path / "s.sqlite"
    st = StateStore(db)
    st.bind_profile("p", json.dumps({"base_timeframe": "1m", "initial_cash": 1000.0}), "r")
    st.commit_slice(0, [], ["B/USDT"], [], {}, warmup=False)
    real = sqlite3.connect
    pending = [lambda: st.commit_slice(TF_MS, [], ["B/USDT"], [], {}, warmup=False)]

    class Hooked:  # a reader connection; the writer commits just before its MAX(ts) query
        def __init__(self, conn):
            object.__setattr__(self, "_c", conn)

        def __getattr__(self, k):
            return getattr(self._c, k)

        def __setattr__(self, k, v):
            setattr(self._c, k, v)

        def execute(self, sql, *a):
            if "MAX(ts) FROM slices" in sql and pending:
                pending.pop()()
            return self._c.execute(sql, *a)

    monkeypatch.setattr(dash.sqlite3, "connect", lambda *a, **k: Hooked(real(*a, **k))
                        if "mode=ro" in str(a[0]) else real(*a, **k))
    reader = _JournalReader(db)
    reader.read(10)
    assert not pending
    assert reader.read(10)["missing"] == {"B/USDT": 2}
    st.close()
