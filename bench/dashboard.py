"""Dashboard cost with a large journal: snapshot build, page load, SSE update latency.

    .venv/bin/python bench/dashboard.py [--assets 500] [--fills 10000] [--pushes 100]

Builds a state database with ``--fills`` fills over ``--assets`` assets (every slice with a
candle per asset, some missing and late candles), a running engine with open positions and
core ratings, and serves the dashboard on 127.0.0.1 with a token. Prints:

* the snapshot: build time p50/p99 and its JSON size;
* page load over HTTP (login, ``/``, the static files, ``/api/dashboard``) with aiohttp;
* SSE update latency: ``on_slice`` (what the daemon calls after a commit) -> the event read
  by an aiohttp client, p50/p99;
* in headless Chromium when installed: navigation -> first render, and ``on_slice`` -> the
  page re-rendered (the browser's own clock), p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import numpy as np
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tandem.core.engine import Engine, EngineConfig  # noqa: E402
from tandem.core.engine.layout import A_ENTRY, A_LAST_CLOSE, A_PEAK, A_POS, A_SL, A_TP  # noqa: E402
from tandem.daemon.ops import Health, Metrics, OpsServer  # noqa: E402
from tandem.daemon.ops.dashboard import DashboardHub  # noqa: E402
from tandem.daemon.ops.provider import SqliteStateProvider  # noqa: E402
from tandem.daemon.state import ClosedCandle, StateStore  # noqa: E402

TOKEN = "bench-dashboard-token-1234"
TF = 60_000


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def build_db(db: Path, symbols: list[str], n_fills: int, per_slice: int) -> int:
    rng = np.random.default_rng(1)
    n_slices = max(1, n_fills // per_slice)
    with StateStore(db) as st:
        st.bind_profile("bench", json.dumps({"base_timeframe": "1m", "initial_cash": 10_000.0}),
                        "bench-run")
        k = 0
        for j in range(n_slices):
            ts = 1_700_000_000_000 + j * TF
            missing = {symbols[(j * 7) % len(symbols)]} if j % 10 == 0 else set()
            candles = [ClosedCandle(s, ts, 1.0, 1.1, 0.9, 1.0 + 0.01 * rng.standard_normal(), 5.0)
                       for s in symbols if s not in missing]
            fills = []
            for q in range(per_slice):
                s = symbols[(j * per_slice + q) % len(symbols)]
                fills.append(dict(
                    fill_id=f"bench:{s}:{ts + TF}:entry:{q}", source="paper", run_id="bench-run",
                    profile="bench", symbol=s, ts=ts + TF, side="buy" if q % 2 else "sell",
                    qty=1.5, price=100.0 + q, fee=0.1, reason="entry" if q % 2 else "stop_loss",
                    intrabar="", position_after=1.5, cash_after=10_000.0 - k))
                k += 1
            st.commit_slice(ts, candles, sorted(missing), fills, {}, warmup=False)
            if j % 50 == 0:
                st.record_late(ClosedCandle(symbols[j % len(symbols)], ts - TF, 1, 1, 1, 1, 1))
    return k


def fake_daemon(symbols: list[str], n_core: int, n_open: int):
    eng = Engine(EngineConfig(stop_loss_pct=0.02, take_profit_pct=0.05, trailing_stop_pct=0.03),
                 symbols)
    for i in range(n_open):
        eng.astate[i, [A_POS, A_ENTRY, A_SL, A_TP, A_PEAK, A_LAST_CLOSE]] = (
            1.0, 100.0, 98.0, 105.0, 101.0, 100.5)
    tfs = ("1h", "4h", "1d")
    rng = np.random.default_rng(2)
    ratings = {s: dict(zip(tfs, rng.uniform(-1, 1, 3).tolist(), strict=True))
               for s in symbols[:n_core]}
    now = time.monotonic()
    feeds = [SimpleNamespace(symbol=s, last_update_at=now - (i % 90), reconnects=i % 3,
                             backfills=i % 2, busy=False) for i, s in enumerate(symbols)]
    return SimpleNamespace(stepper=SimpleNamespace(engine=eng, core_ratings=lambda: ratings),
                           supervisor=SimpleNamespace(feeds=feeds), live=True,
                           cfg=SimpleNamespace(profile_name="bench", run_id="bench-run"))


async def sse_events(resp: aiohttp.ClientResponse):
    event = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event:
            yield event, line[5:].strip()
            event = None


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=500)
    ap.add_argument("--core", type=int, default=10, help="core assets (rated per timeframe)")
    ap.add_argument("--fills", type=int, default=10_000)
    ap.add_argument("--per-slice", type=int, default=10, help="fills per slice in the journal")
    ap.add_argument("--open", type=int, default=100, help="open positions")
    ap.add_argument("--pushes", type=int, default=100)
    a = ap.parse_args()
    symbols = [f"S{i:03d}/USDT" for i in range(a.assets)]
    tmp = Path(tempfile.mkdtemp(prefix="tandem-bench-dash-"))
    db = tmp / "state.sqlite"
    t = time.perf_counter()
    n = build_db(db, symbols, a.fills, a.per_slice)
    print(f"journal: {n} fills, {a.assets} assets, {n // a.per_slice} slices "
          f"(built in {time.perf_counter() - t:.1f} s)")

    health = Health()
    health.set_phase("live")
    metrics = Metrics()
    provider = SqliteStateProvider(db)
    hub = DashboardHub(health=health, metrics=metrics, provider=lambda: provider,
                       token=SecretStr(TOKEN), min_push_interval_s=0.0)
    hub.attach(fake_daemon(symbols, a.core, a.open))
    ts0 = 1_800_000_000_000
    for k in range(5000):  # an equity history to draw
        hub.equity.add(ts0 + k * TF, 10_000.0 + 50 * np.sin(k / 200))
    srv = OpsServer(metrics=metrics, health=health, provider=provider, host="127.0.0.1",
                    port=0, token=TOKEN, dashboard=hub)
    await srv.start()
    try:
        t = time.perf_counter()
        await hub.seed_history()
        print(f"equity history rebuilt from the journal: {(time.perf_counter() - t) * 1e3:.0f} ms"
              f" ({len(hub.equity.points)} points kept)")
        hub._seed = asyncio.ensure_future(asyncio.sleep(0))  # seeded: snapshot() skips it
        t = time.perf_counter()
        await hub.snapshot()
        print(f"first snapshot (imports the rating labels): {(time.perf_counter() - t) * 1e3:.0f} ms")
        builds = []
        size = 0
        for _ in range(20):
            t = time.perf_counter()
            size = len(json.dumps(await hub.snapshot(), allow_nan=False))
            builds.append(time.perf_counter() - t)
        print(f"snapshot build: p50 {pct(builds, .5) * 1e3:.1f} ms, p99 "
              f"{pct(builds, .99) * 1e3:.1f} ms; JSON {size / 1024:.0f} KiB")

        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            await s.post(srv.url + "/login", data={"token": TOKEN})
            loads = []
            for _ in range(10):
                t = time.perf_counter()
                for path in ("/", "/static/dashboard.css", "/static/dashboard.js",
                             "/api/dashboard"):
                    async with s.get(srv.url + path) as r:
                        await r.read()
                        assert r.status == 200, (path, r.status)
                loads.append(time.perf_counter() - t)
            print(f"page load over HTTP (/, css, js, snapshot): p50 "
                  f"{pct(loads, .5) * 1e3:.1f} ms, p99 {pct(loads, .99) * 1e3:.1f} ms")

            resp = await s.get(srv.url + "/events", timeout=aiohttp.ClientTimeout(total=None))
            events = sse_events(resp)
            await events.__anext__()  # the first snapshot
            lat = []
            for k in range(a.pushes):
                t = time.perf_counter()
                hub.on_slice(ts0 + (5000 + k) * TF, 0.001)
                while True:
                    ev, _ = await events.__anext__()
                    if ev == "snapshot":
                        break
                lat.append(time.perf_counter() - t)
                await asyncio.sleep(0.02)
            resp.close()
            print(f"SSE update (on_slice -> event received, aiohttp): p50 "
                  f"{pct(lat, .5) * 1e3:.1f} ms, p99 {pct(lat, .99) * 1e3:.1f} ms, "
                  f"mean {statistics.mean(lat) * 1e3:.1f} ms")

        from tests.cdp_browser import CHROMIUM, Chromium

        if CHROMIUM is None:
            print("chromium: not installed, browser figures skipped")
            return
        async with Chromium() as page:
            await page.goto(srv.url + "/")
            loaded = page.expect("Page.loadEventFired")
            await page.eval(f"document.getElementById('token').value='{TOKEN}';"
                            "document.querySelector('form').submit(); true")
            await asyncio.wait_for(loaded, 30)
            firsts = []
            for _ in range(5):
                t = time.perf_counter()
                await page.goto(srv.url + "/")
                await page.wait_for("window.__tandem && window.__tandem.renders >= 1",
                                    every=0.005)
                firsts.append(time.perf_counter() - t)
            print(f"chromium: navigation -> first full render: p50 "
                  f"{pct(firsts, .5) * 1e3:.0f} ms, max {max(firsts) * 1e3:.0f} ms")
            lat = []
            for k in range(min(a.pushes, 50)):
                before = await page.eval("window.__tandem.renders")
                t_wall = time.time() * 1000
                hub.on_slice(ts0 + (6000 + k) * TF, 0.001)
                await page.wait_for(f"window.__tandem.renders > {before}", every=0.01)
                done = await page.eval("performance.timeOrigin + window.__tandem.renderedAt")
                lat.append((done - t_wall) / 1000)
                await asyncio.sleep(0.02)
            print(f"chromium: on_slice -> page re-rendered: p50 {pct(lat, .5) * 1e3:.0f} ms, "
                  f"p99 {pct(lat, .99) * 1e3:.0f} ms; console errors: {len(page.errors)}")
    finally:
        await srv.stop()


if __name__ == "__main__":
    asyncio.run(main())
