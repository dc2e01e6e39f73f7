"""``/positions`` and ``/fills`` over the real daemon state file, and the daemon sampler.

Rows are written through the daemon's own ``StateStore`` (the real writer) and read back
through HTTP; expected values come from the rows the test wrote, filtered here in Python.
"""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tandem.daemon.ops import Health, HealthConfig, Metrics, OpsServer
from tandem.daemon.ops.provider import SqliteStateProvider
from tandem.daemon.ops.sampler import DaemonSampler
from tandem.daemon.state import ClosedCandle, StateStore

H = 3_600_000


def fill(symbol: str, ts: int, side: str, qty: float, seq: int = 0) -> dict:
    return {"fill_id": f"p:{symbol}:{ts}:entry:{seq}", "source": "paper", "run_id": "r",
            "profile": "p", "symbol": symbol, "ts": ts, "side": side, "qty": qty,
            "price": 100.0 + seq, "fee": 0.1, "reason": "entry", "intrabar": "",
            "position_after": qty, "cash_after": 9_000.0 - seq}


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "state.sqlite"
    written = []
    with StateStore(path) as st:
        st.bind_profile("p", {"x": 1}, "r")
        for i in range(4):
            ts = i * H
            candles = [ClosedCandle("BTC/USDT", ts, 1, 2, 0.5, 100.0 + i, 1),
                       ClosedCandle("ETH/USDT", ts, 1, 2, 0.5, 10.0 + i, 1)]
            fills = [fill("BTC/USDT", ts + H, "buy", 0.1 * (i + 1), 2 * i),
                     fill("ETH/USDT", ts + H, "buy", 1.0, 2 * i + 1)] if i % 2 else []
            written += fills
            st.commit_slice(ts, candles, [], fills=fills,
                            positions={"BTC/USDT": 0.5, "ETH/USDT": 0.0}, warmup=False)
    return path, written


async def get_json(url):
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json()


async def test_fills_and_positions_over_http(db):
    path, written = db
    srv = OpsServer(metrics=Metrics(), health=Health(), provider=SqliteStateProvider(path),
                    port=0)
    await srv.start()
    try:
        status, doc = await get_json(srv.url + "/fills")
        assert status == 200 and doc["fills"] == written
        since = written[0]["ts"]
        _, doc = await get_json(f"{srv.url}/fills?since={since}")
        assert doc["fills"] == [r for r in written if r["ts"] > since]
        assert doc["next_since"] == max(r["ts"] for r in written)
        _, doc = await get_json(f"{srv.url}/fills?limit=3")
        # a page selected by since alone ends at a bar boundary: the 3rd row's bar has 2
        assert doc["fills"] == written[:4]
        _, doc = await get_json(f"{srv.url}/fills?limit=3&since_id=0")
        assert doc["fills"] == written[:3]  # by the unique cursor: exactly the limit
        _, doc = await get_json(srv.url + "/positions")
        # ETH is flat (qty 0): not listed; BTC marked at its last consumed close (103).
        assert doc["positions"] == [{"symbol": "BTC/USDT", "qty": 0.5, "as_of_ts": 3 * H,
                                     "mark_price": 103.0, "value": 51.5}]
    finally:
        await srv.stop()


def test_provider_is_read_only(db):
    path, _ = db
    prov = SqliteStateProvider(path)
    conn = prov._connect()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM fills")
    conn.close()


def test_provider_without_database(tmp_path):
    prov = SqliteStateProvider(tmp_path / "absent.sqlite")
    assert prov.fills_sync(None, 10) == [] and prov.positions_sync() == []
    assert not (tmp_path / "absent.sqlite").exists()


def test_sampler_moves_counters_and_health():
    now = {"t": 100.0}
    health = Health(HealthConfig(stale_feed_after_s=5, slice_lag_after_s=5),
                    clock=lambda: now["t"])
    health.set_phase("live")
    metrics = Metrics()
    btc = SimpleNamespace(symbol="BTC/USDT", last_update_at=None, reconnects=0, backfills=0)
    eth = SimpleNamespace(symbol="ETH/USDT", last_update_at=None, reconnects=0, backfills=1)
    engine = SimpleNamespace(equity=lambda: 10_500.0, cash=9_000.0)
    stepper = SimpleNamespace(engine=engine,
                              positions=lambda: {"BTC/USDT": 0.2, "ETH/USDT": 0.0})
    sup = SimpleNamespace(feeds=[btc, eth], restarts=0, watchdog_fires=0)
    daemon = SimpleNamespace(supervisor=sup, stepper=stepper, late=0)
    sampler = DaemonSampler(daemon, metrics, health)
    sampler.sample()
    sup.restarts, sup.watchdog_fires, daemon.late = 1, 2, 5
    btc.last_update_at = eth.last_update_at = 101.0
    btc.reconnects, eth.backfills = 2, 3
    now["t"] = 104.0
    sampler.sample()
    assert health.evaluate().ok
    now["t"] = 106.5  # both silent for 5.5 s
    btc.last_update_at = 106.0
    sampler.sample()
    assert health.evaluate().details["stale_feeds"] == ["ETH/USDT"]
    eth.reconnects = 1
    eth.last_update_at = 106.4
    sampler.sample()
    assert health.evaluate().ok
    # A restarted feed object starts counting from zero: no negative increments.
    btc.reconnects = 0
    sampler.sample()
    btc.reconnects = 1
    sampler.sample()
    got = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            got[(s.name, s.labels.get("symbol"))] = s.value
    assert got[("tandem_reconnects_total", "BTC/USDT")] == 3
    assert got[("tandem_reconnects_total", "ETH/USDT")] == 1
    assert got[("tandem_backfills_total", "ETH/USDT")] == 3
    assert got[("tandem_equity", None)] == 10_500.0
    assert got[("tandem_feed_restarts_total", None)] == 1
    assert got[("tandem_watchdog_reconnects_total", None)] == 2
    assert got[("tandem_late_candles_total", None)] == 5
    assert got[("tandem_cash", None)] == 9_000.0
    assert got[("tandem_open_positions", None)] == 1


def test_sampler_tolerates_a_daemon_not_started():
    sampler = DaemonSampler(SimpleNamespace(supervisor=None, stepper=None), Metrics(), Health())
    sampler.sample()


def test_json_roundtrip_of_written_rows(db):
    """The rows are plain JSON types (no numpy) once read back."""
    path, written = db
    # each row also carries its journal sequence number (the /fills cursor), 1, 2, ...
    want = [{"seq": i + 1, **r} for i, r in enumerate(written)]
    assert json.loads(json.dumps(SqliteStateProvider(path).fills_sync(None, 100))) == want


async def test_paging_never_loses_fills_that_share_a_ts(tmp_path):
    """99 fills over 3 bars (33 per bar, one ts each), pages of 1: following either cursor
    returns every fill exactly once, in journal order (issue 16, item 6: following
    next_since used to return 90 of 99)."""
    path = tmp_path / "state.sqlite"
    written = []
    with StateStore(path) as st:
        st.bind_profile("p", {"x": 1}, "r")
        for i in range(3):
            ts = i * H
            fills = [fill("BTC/USDT", ts + H, "buy", 0.1, 33 * i + k) for k in range(33)]
            written += fills
            st.commit_slice(ts, [ClosedCandle("BTC/USDT", ts, 1, 2, 0.5, 1.5, 1)], [],
                            fills=fills, positions={"BTC/USDT": 0.1}, warmup=False)
    srv = OpsServer(metrics=Metrics(), health=Health(), provider=SqliteStateProvider(path),
                    port=0)
    await srv.start()
    try:
        async def follow(first: str, key: str, param: str) -> tuple[list, int]:
            got, url, pages = [], f"{srv.url}/fills?limit=1&{first}", 0
            while True:
                status, doc = await get_json(url)
                assert status == 200
                pages += 1
                if not doc["fills"]:
                    return got, pages
                got += doc["fills"]
                url = f"{srv.url}/fills?limit=1&{param}={doc[key]}"

        by_id, pages = await follow("since_id=0", "next_since_id", "since_id")
        assert by_id == written and pages == 100  # exactly one fill per page
        by_ts, _ = await follow("since=0", "next_since", "since")
        assert by_ts == written
        # since=<ms> as the starting point, then the unique cursor
        _, start = await get_json(f"{srv.url}/fills?limit=1&since={H + 1}")
        rest, _ = await follow(f"since_id={start['next_since_id']}", "next_since_id",
                               "since_id")
        assert start["fills"] + rest == written[33:]
    finally:
        await srv.stop()
