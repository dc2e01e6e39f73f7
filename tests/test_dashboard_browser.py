"""The dashboard in headless Chromium (issue 18): log in through the form, the page renders
with no console error, and every fill a replay makes (emulator + real ccxt.pro + daemon)
appears in the page's fills table within 2 s of its slice's commit. Skips only when no
chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
from pydantic import SecretStr
from tandem.daemon.app import Daemon, DaemonConfig
from tandem.daemon.ops import Ops, OpsConfig
from tandem.daemon.ops.provider import SqliteStateProvider
from tandem.daemon.replay import run_replay
from tandem.daemon.strategy import stepper_factory

from tests.cdp_browser import CHROMIUM, Chromium
from tests.test_daemon_support import TF_MS, replay_window, sample_market, small_profile

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install "
                                                "chromium; .ci/run installs it)"),
    pytest.mark.timeout(300),
]
TOKEN = "browser-test-token-0c9d2e4f"
FILL_IDS = "Array.from(document.querySelectorAll('#fills tr[data-fill-id]'))" \
           ".map(e => e.dataset.fillId)"


async def test_page_renders_and_shows_replay_fills_within_2s(tmp_path):
    profile = small_profile("discrete", exit_rules={
        "stop_loss_pct": 0.01, "take_profit_pct": 0.015, "trailing_stop_pct": 0.008,
        "intrabar": "pessimistic"})
    market = sample_market()
    db = tmp_path / "d.sqlite"
    t0, end = replay_window(market)
    ops = Ops(OpsConfig(http_port=0, http_token=SecretStr(TOKEN), notify=False),
              SqliteStateProvider(db))
    await ops.start()
    cfg = DaemonConfig(profile_name=profile.name, profile_json=profile.canonical_json(),
                       symbols=profile.assets, exchange_id="binance", base_timeframe="1m",
                       tf_ms=TF_MS, warmup_bars=profile.warmup, state_db=db, grace_s=20.0,
                       watchdog_s=3.0, heartbeat_every_s=3600.0, rest_timeout_ms=2000)
    daemon = Daemon(cfg, stepper_factory(profile), ops=ops)
    ops.watch_daemon(daemon)
    committed: dict[str, float] = {}
    hub = ops.dashboard
    orig = hub.on_slice

    def spy(ts, lat, rows=()):  # Ops calls this right after the slice's commit
        committed.update({r["fill_id"]: time.monotonic() for r in rows})
        orig(ts, lat, rows)

    hub.on_slice = spy
    seen: dict[str, float] = {}
    try:
        async with Chromium() as page:
            url = ops.server.url
            await page.goto(url + "/")
            assert await page.eval("!!document.querySelector('form[action=\"/login\"]')")
            loaded = page.expect("Page.loadEventFired")
            await page.eval(f"document.getElementById('token').value = '{TOKEN}';"
                            "document.querySelector('form').submit(); true")
            await asyncio.wait_for(loaded, 30)
            assert await page.eval("location.pathname") == "/"
            await page.wait_for("window.__tandem && window.__tandem.renders >= 1")
            assert await page.eval("document.cookie") == "", "the session cookie is HttpOnly"
            assert TOKEN not in await page.eval("location.href")

            async def watch():
                while True:
                    now = time.monotonic()
                    for fid in await page.eval(FILL_IDS) or []:
                        seen.setdefault(fid, now)
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch())
            try:
                await run_replay(daemon, market, t0, end, bar_timeout_s=2.0)
                deadline = time.monotonic() + 3.0
                while time.monotonic() < deadline and not set(committed) <= set(seen):
                    await asyncio.sleep(0.05)
            finally:
                watcher.cancel()
            # the page as a person sees it after the replay
            n_feeds = await page.eval("document.querySelectorAll('#feeds tbody tr').length")
            labels = await page.eval(
                "Array.from(document.querySelectorAll('#ratings td[data-tf]'))"
                ".map(td => td.className)")
            total = await page.eval("document.getElementById('fills-total').textContent")
            chart = await page.eval("document.querySelectorAll('#chart polyline').length")
            errors = list(page.errors)
    finally:
        await ops.stop()
    con = sqlite3.connect(db)
    journal = [r[0] for r in con.execute("SELECT fill_id FROM fills ORDER BY seq")]
    con.close()
    assert journal and set(journal) == set(committed)
    assert not errors, errors
    never = [f for f in journal if f not in seen]
    assert not never, f"never shown: {never}"
    lags = {f: seen[f] - committed[f] for f in journal}
    assert max(lags.values()) < 2.0, max(lags.items(), key=lambda kv: kv[1])
    assert n_feeds == len(profile.assets)
    assert total == str(len(journal))
    assert chart == 1
    assert labels and all(c.startswith("r-") for c in labels)
    assert len(labels) == len(profile.core_assets) * len(profile.timeframes)


async def test_positions_of_a_small_price_asset_show_their_levels():
    """A coin priced 0.0000x (PEPE-like): the page's entry, last, SL/TP and trailing cells
    are the engine's own levels (``open_levels``), not 0.0000, long and short; the slice
    latency is named for what it measures."""
    from types import SimpleNamespace

    import numpy as np
    from tandem.core.engine import Engine, EngineConfig
    from tandem.daemon.ops import Health, Metrics, OpsServer
    from tandem.daemon.ops.dashboard import DashboardHub

    eng = Engine(EngineConfig(stop_loss_pct=0.02, take_profit_pct=0.05, trailing_stop_pct=0.03,
                              long_short=True), ["PEPE/USDT", "SHIB/USDT"])
    a = lambda *v: np.array(v, dtype=float)  # noqa: E731
    eng.step_raw(60_000, a(1.234e-5, 2.5e-5), a(1.234e-5, 2.5e-5), a(1.234e-5, 2.5e-5),
                 a(1.234e-5, 2.5e-5), a(1, -1))
    eng.step_raw(120_000, a(1.234e-5, 2.5e-5), a(1.26e-5, 2.51e-5), a(1.23e-5, 2.45e-5),
                 a(1.25e-5, 2.47e-5), a(1, -1))
    levels = {r["symbol"]: r for r in eng.open_levels()}
    assert set(levels) == {"PEPE/USDT", "SHIB/USDT"}
    for lv in levels.values():  # the page shows it net of the entry fee paid (as the equity)
        lv["unrealized"] -= abs(lv["qty"]) * lv["entry"] * eng.config.fee_rate
    health, metrics = Health(), Metrics()
    health.set_phase("live")
    hub = DashboardHub(health=health, metrics=metrics)
    hub.attach(SimpleNamespace(stepper=SimpleNamespace(engine=eng), live=True))
    # what Ops passes: the seconds from the slice's step start to its commit, not from the
    # bar's close (the wait for every asset's candle and the grace come before the step)
    hub.on_slice(120_000, 0.0042)
    srv = OpsServer(metrics=metrics, health=health, provider=None, host="127.0.0.1", port=0,
                    token=None, dashboard=hub)
    await srv.start()
    try:
        async with Chromium() as page:
            await page.goto(srv.url + "/")
            await page.wait_for("window.__tandem && window.__tandem.renders >= 1")
            rows = await page.eval(
                "Array.from(document.querySelectorAll('#positions tbody tr'))"
                ".map(tr => Array.from(tr.cells).map(td => td.textContent))")
            info = await page.eval("document.getElementById('slice-info').textContent")
            errors = list(page.errors)
    finally:
        await srv.stop()
    assert not errors, errors
    assert info.startswith("step+commit 4.20 ms"), info
    assert len(rows) == 2
    for cells in rows:
        lv = levels[cells[0]]
        assert cells[1] == lv["side"]
        for k, key in ((3, "entry"), (4, "last"), (5, "unrealized"), (6, "stop_loss"),
                       (7, "take_profit"), (8, "trailing")):
            shown = float(cells[k].replace(",", ""))
            assert shown == pytest.approx(lv[key], rel=1e-3), (cells[0], key, cells[k])
