"""Notifications (issue 18) through the real Apprise library to its JSON target, received by
a local aiohttp server on 127.0.0.1: a replay's fills produce one message per slice listing
exactly the journal's fills; a failing target is counted in /metrics and changes nothing
in the fills (still equal to the engine's batch run); the URLs never reach a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sqlite3
import time

import pytest
import structlog
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from tandem.daemon.app import Daemon, DaemonConfig
from tandem.daemon.ops import Health, HealthConfig, Metrics, Ops, OpsConfig
from tandem.daemon.ops.alerts import Alerts, NotifyConfigError, format_fills
from tandem.daemon.ops.provider import SqliteStateProvider
from tandem.daemon.replay import run_replay
from tandem.daemon.state import StateStore
from tandem.daemon.strategy import stepper_factory

from tests.test_daemon_support import (
    TF_MS,
    assert_journal_equal,
    batch_fills,
    replay_window,
    sample_market,
    small_profile,
)

SECRET = "hook-s3cr3t-path-9c2d"


class Receiver:
    """A JSON webhook on 127.0.0.1: ``/ok/...`` answers 200, ``/fail/...`` answers 500."""

    def __init__(self):
        self.got: list[dict] = []
        self.failed_posts = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.path.startswith("/fail"):
            self.failed_posts += 1
            return web.Response(status=500)
        self.got.append(body)
        return web.Response(status=200)

    async def __aenter__(self):
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()

    def url(self, kind: str) -> str:
        return f"json://127.0.0.1:{self.port}/{kind}/{SECRET}"


async def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.02)


async def replay_with_ops(tmp_path, urls: str, logger=None):
    profile = small_profile("discrete")
    market = sample_market()
    db = tmp_path / "d.sqlite"
    t0, end = replay_window(market)
    ops = Ops(OpsConfig(http_enabled=False, notify=False, notify_urls=SecretStr(urls)),
              SqliteStateProvider(db), logger=logger)
    await ops.start()
    cfg = DaemonConfig(profile_name=profile.name, profile_json=profile.canonical_json(),
                       symbols=profile.assets, exchange_id="binance", base_timeframe="1m",
                       tf_ms=TF_MS, warmup_bars=profile.warmup, state_db=db, grace_s=20.0,
                       watchdog_s=3.0, heartbeat_every_s=3600.0, rest_timeout_ms=2000)
    daemon = Daemon(cfg, stepper_factory(profile), ops=ops)
    ops.watch_daemon(daemon)
    await run_replay(daemon, market, t0, end, bar_timeout_s=2.0)
    return ops, profile, market, db


def journal_by_slice(db):
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM fills ORDER BY seq")]
    con.close()
    by: dict[int, list[dict]] = {}
    for r in rows:
        by.setdefault(r["ts"], []).append(r)
    return by


def metric(ops, name):
    text = ops.metrics.render().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    raise KeyError(name)


async def test_replay_fills_become_one_message_per_slice(tmp_path):
    async with Receiver() as rx:
        ops, *_, db = await replay_with_ops(tmp_path, rx.url("ok"))
        by_slice = journal_by_slice(db)
        assert by_slice, "the sample must trade"
        try:
            await wait_for(lambda: len(rx.got) >= len(by_slice))
        finally:
            await ops.stop()
    assert len(rx.got) == len(by_slice)
    for msg, (_ts, rows) in zip(rx.got, sorted(by_slice.items()), strict=True):
        assert msg["title"].startswith("Tandem tst:")
        lines = msg["message"].splitlines()
        fill_lines = [ln for ln in lines if " @ " in ln]
        assert len(fill_lines) == len(rows)
        for ln, r in zip(fill_lines, rows, strict=True):
            assert r["symbol"] in ln and r["side"].upper() in ln
            label = {"entry": "Entry", "exit": "Exit", "stop_loss": "Stop-loss hit",
                     "take_profit": "Take-profit hit", "trailing_stop": "Trailing stop hit"}
            assert ln.startswith(label[r["reason"]])
            assert float(ln.split(" @ ")[1].split(" ")[0].replace(",", "")) == pytest.approx(
                r["price"], rel=1e-7)
        reasons = {r["reason"] for r in rows}
        want = "warning" if reasons & {"stop_loss", "trailing_stop"} else (
            "success" if "take_profit" in reasons else "info")
        assert msg["type"] == want
    assert metric(ops, "tandem_notifications_sent_total") == len(by_slice)
    assert metric(ops, "tandem_notifications_failed_total") == 0


async def test_failing_target_is_counted_and_changes_no_fill(tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    buf = io.StringIO()
    logger = structlog.wrap_logger(structlog.PrintLogger(buf),
                                   processors=[structlog.processors.JSONRenderer()])
    async with Receiver() as rx:
        urls = f"{rx.url('fail')}, {rx.url('ok')}"
        ops, profile, market, db = await replay_with_ops(tmp_path, urls, logger)
        by_slice = journal_by_slice(db)
        try:
            await wait_for(lambda: ops.alerts.failed >= len(by_slice)
                           and len(rx.got) >= len(by_slice))
        finally:
            await ops.stop()
    assert rx.failed_posts == len(by_slice)
    assert metric(ops, "tandem_notifications_failed_total") == len(by_slice)
    assert metric(ops, "tandem_notifications_sent_total") == len(by_slice)
    # the fills are the engine's batch run's, bit for bit: notifications changed nothing
    t0, end = replay_window(market)
    with StateStore(db) as st:
        assert_journal_equal(st.fills_frame(), batch_fills(profile, market, t0, end))
    logged = buf.getvalue() + capsys.readouterr().out + capsys.readouterr().err + caplog.text
    assert "notification_failed" in buf.getvalue()
    assert SECRET not in logged and f"127.0.0.1:{rx.port}" not in logged
    assert SECRET not in repr(ops.alerts) and SECRET not in repr(ops.config)


async def test_health_degraded_then_recovered(tmp_path):
    now = [0.0]
    health = Health(HealthConfig(stale_feed_after_s=10, slice_lag_after_s=30),
                    clock=lambda: now[0])
    async with Receiver() as rx:
        alerts = Alerts(rx.url("ok"), Metrics(), health, health_every_s=0, daily=False)
        await alerts.start()
        health.register_feed("BTC/USDT")
        assert alerts.check_health() is None  # warm-up is not news
        health.set_phase("live")
        assert alerts.check_health() is None  # ok from the start: nothing to say
        now[0] = 20.0
        assert alerts.check_health().title == "Tandem: degraded"
        assert alerts.check_health() is None  # still degraded: said once
        health.feed_update("BTC/USDT")
        assert alerts.check_health().title == "Tandem: recovered"
        await wait_for(lambda: len(rx.got) == 2)
        await alerts.stop()
    assert [m["type"] for m in rx.got] == ["failure", "success"]
    assert "stale feed: BTC/USDT" in rx.got[0]["message"]


async def test_daily_summary_counts_the_last_day(tmp_path):
    db = tmp_path / "s.sqlite"
    with StateStore(db) as st:
        st.bind_profile("p", "{}", "r")
        day = 86_400_000
        rows = []
        for k, (ts, reason) in enumerate([(day, "entry"), (2 * day + 5, "entry"),
                                          (2 * day + 9, "stop_loss")]):
            rows.append(dict(fill_id=f"f{k}", source="paper", run_id="r", profile="p",
                             symbol="BTC/USDT", ts=ts, side="buy", qty=1.0, price=10.0,
                             fee=0.5, reason=reason, intrabar="", position_after=1.0,
                             cash_after=100.0))
        for k, r in enumerate(rows):
            st.commit_slice(k, [], [], [r], {"BTC/USDT": 1.0}, warmup=False)
    alerts = Alerts(None, Metrics())
    alerts.db_path = db
    msg = alerts.daily_summary(now_ms=3 * day)
    assert "Fills on 1970-01-03 (UTC): 2" in msg.body
    assert "Entry: 1" in msg.body and "Stop-loss hit: 1" in msg.body
    assert "Fees: 1" in msg.body


def test_a_url_apprise_cannot_use_is_refused_without_echoing_it():
    with pytest.raises(NotifyConfigError) as err:
        Alerts(f"json://127.0.0.1:1/x, nonsense-{SECRET}", Metrics())
    assert "entry 2 of 2" in str(err.value) and SECRET not in str(err.value)


def test_cli_exits_2_on_a_bad_notify_url(monkeypatch, capsys, tmp_path):
    from tandem.daemon.cli import main

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("TANDEM_NOTIFY_URLS", f"nonsense-{SECRET}")
    manifest = __import__("pathlib").Path(__file__).resolve().parents[1] / "manifest.json"
    code = main(["run", "--manifest", str(manifest), "--db", str(tmp_path / "x.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: settings: TANDEM_NOTIFY_URLS")
    assert err.count("\n") == 1 and SECRET not in err


def test_format_fills_batches_one_slice():
    rows = [dict(ts=1_700_000_000_000, profile="p", symbol=s, side="sell", qty=1.5,
                 price=100.0, fee=0.1, reason=r, position_after=0.0, cash_after=1000.0)
            for s, r in (("BTC/USDT", "take_profit"), ("ETH/USDT", "trailing_stop"))]
    msg = format_fills(rows)
    assert msg.title == "Tandem p: 2 fills (Take-profit hit, Trailing stop hit)"
    assert msg.kind == "warning" and "2023-11-14 22:13 UTC" in msg.body
    assert json.dumps(msg.body)  # plain text


async def test_a_hanging_target_neither_blocks_the_loop_nor_the_stop():
    release = asyncio.Event()

    async def hang(request):
        await release.wait()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", hang)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    alerts = Alerts(f"json://127.0.0.1:{port}/{SECRET}", Metrics(), daily=False,
                    queue_size=2)
    await alerts.start()
    try:
        t = time.perf_counter()
        results = [alerts.enqueue(format_fills([dict(
            ts=60_000 * k, profile="p", symbol="BTC/USDT", side="buy", qty=1, price=1, fee=0,
            reason="entry", position_after=1, cash_after=1)])) for k in range(1, 6)]
        assert time.perf_counter() - t < 0.05, "enqueueing must not wait"
        # one in the thread, two queued, the rest dropped and counted as failed
        assert results.count(False) >= 2 and alerts.failed == results.count(False)
        t = time.monotonic()
        await alerts.stop(flush_s=0.5)
        assert time.monotonic() - t < 1.5
    finally:
        release.set()
        await runner.cleanup()


def test_notify_urls_setting_is_a_secret():
    from tandem.core.settings import load_settings

    st = load_settings(env_file=None, notify_urls=f"json://127.0.0.1:9/{SECRET}, ")
    assert isinstance(st.notify_urls, SecretStr)
    assert SECRET not in repr(st) and SECRET not in json.dumps(st.safe_dict())
    assert st.notify_urls.get_secret_value().startswith("json://")
    assert load_settings(env_file=None, notify_urls=" , ").notify_urls is None
    cfg = OpsConfig.from_settings(st)
    assert isinstance(cfg.notify_urls, SecretStr) and SECRET not in repr(cfg)


def test_daily_summary_log_job_counts_the_last_day_in_sql(tmp_path):
    """The log's daily summary (daemon.jobs) reads the journal in SQL: a live daemon never
    loads pandas for it (issue 18: idle RSS)."""
    from tandem.daemon.jobs import daily_summary_job

    db = tmp_path / "s.sqlite"
    day = 86_400_000
    with StateStore(db) as st:
        st.bind_profile("p", "{}", "r")
        for k, (ts, reason, cash) in enumerate([(day, "entry", 90.0), (2 * day + 5, "entry", 80.0),
                                                (2 * day + 9, "stop_loss", 85.0)]):
            st.commit_slice(k, [], [], [dict(
                fill_id=f"f{k}", source="paper", run_id="r", profile="p", symbol="BTC/USDT",
                ts=ts, side="buy", qty=1.0, price=10.0, fee=0.5, reason=reason, intrabar="",
                position_after=1.0, cash_after=cash)], {"BTC/USDT": 1.0}, warmup=False)
        got = daily_summary_job(st, now_ms=3 * day)
        # run five minutes late, after a bar of the new day: still that day, once
        st.commit_slice(3, [], [], [dict(
            fill_id="f3", source="paper", run_id="r", profile="p", symbol="BTC/USDT",
            ts=3 * day + 60_000, side="sell", qty=1.0, price=10.0, fee=0.5, reason="exit",
            intrabar="", position_after=0.0, cash_after=95.0)], {"BTC/USDT": 0.0}, warmup=False)
        late = daily_summary_job(st, now_ms=3 * day + 300_000)
    assert got["fills"] == 2 and got["fills_by_reason"] == {"entry": 1, "stop_loss": 1}
    assert got["fees"] == 1.0 and got["last_cash"] == 85.0
    assert (late["since_ts"], late["until_ts"]) == (2 * day, 3 * day)
    assert late["fills_by_reason"] == {"entry": 1, "stop_loss": 1} and late["fees"] == 1.0


async def test_daily_summary_is_the_utc_day_that_just_ended(tmp_path):
    """Sent at 00:00:10 UTC (or later, if the loop was busy): it names the day it covers
    (the one that ended at midnight, not the new one) and counts exactly that day's bars
    (a bar closing at 00:00 is the old day's last; one closing after is tomorrow's)."""
    db = tmp_path / "s.sqlite"
    day = 86_400_000
    with StateStore(db) as st:
        st.bind_profile("p", "{}", "r")
        for k, ts in enumerate([2 * day, 2 * day + 60_000, 3 * day, 3 * day + 60_000]):
            row = dict(fill_id=f"f{k}", source="paper", run_id="r", profile="p",
                       symbol="BTC/USDT", ts=ts, side="buy", qty=1.0, price=10.0, fee=0.5,
                       reason="entry", intrabar="", position_after=1.0, cash_after=100.0)
            st.commit_slice(k, [], [], [row], {"BTC/USDT": 1.0}, warmup=False)
    alerts = Alerts(None, Metrics())
    alerts.db_path = db
    for late_ms in (10_000, 300_000):  # on time, and five minutes late
        msg = alerts.daily_summary(now_ms=3 * day + late_ms)
        assert msg.title == "Tandem daily summary 1970-01-03"
        assert "Fills on 1970-01-03 (UTC): 2" in msg.body


def test_fill_message_numbers_are_the_fills_numbers():
    """A memecoin entry (81 million units at 0.0000123): quantity, price, fee, position and
    cash in the message equal the journal row's to 1e-9, none rounded to 6 digits."""
    import re

    row = dict(ts=1_700_000_000_000, profile="p", symbol="PEPE/USDT", side="buy",
               qty=81_037_277.1534, price=1.2340567e-05, fee=1.00001234, reason="entry",
               position_after=81_037_277.1534, cash_after=9_000.123456789)
    body = format_fills([row]).body
    m = re.search(r"BUY (\S+) PEPE/USDT @ (\S+) \(fee (\S+); position after (\S+)\)", body)
    assert m, body
    num = lambda s: float(s.replace(",", ""))  # noqa: E731
    for got, key in zip(m.groups(), ("qty", "price", "fee", "position_after"), strict=True):
        assert num(got) == pytest.approx(row[key], rel=1e-9), (key, got)
    cash = body.rsplit("Cash after: ", 1)[1].strip()
    assert num(cash) == pytest.approx(row["cash_after"], rel=1e-9)
