"""The read-only HTTP endpoint over a real socket on 127.0.0.1 with a fake state provider.

Checks the wire: status codes, JSON bodies, Prometheus text parsed by prometheus-client's
parser, bearer auth, the loopback-only rule, read-only methods, and that no token reaches logs.
"""

from __future__ import annotations

import io
import json
import logging

import aiohttp
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from tandem.daemon.ops import Health, InsecureBindError, Metrics, Ops, OpsConfig, OpsServer
from tandem.daemon.ops.http import is_loopback_host

TOKEN = "s3cr3t-t0ken-do-not-log-4f9a"

FILLS = [
    {"fill_id": f"p:BTC/USDT:{ts}:entry:0", "symbol": "BTC/USDT", "ts": ts, "side": "buy",
     "qty": 0.1, "price": 100.0 + i, "fee": 0.01, "reason": "entry", "intrabar": "",
     "position_after": 0.1, "cash_after": float("nan") if i == 2 else 9_000.0}
    for i, ts in enumerate([60_000, 120_000, 120_000, 180_000])
]


class FakeState:
    """Stands in for the daemon's SQLite state; the filter is written independently here."""

    def positions(self):
        return [{"symbol": "BTC/USDT", "qty": 0.1, "entry_price": 101.0}]

    async def fills(self, since, limit):  # async on purpose: both kinds must work
        rows = [r for r in FILLS if since is None or r["ts"] > since]
        return rows[:limit]


@pytest.fixture
async def serve():
    servers = []

    async def _serve(token=None, provider="fake", health=None):
        provider = FakeState() if provider == "fake" else provider
        health = health or Health()
        health.set_phase("live")
        srv = OpsServer(metrics=Metrics(), health=health, provider=provider,
                        host="127.0.0.1", port=0, token=token)
        await srv.start()
        servers.append(srv)
        return srv

    yield _serve
    for srv in servers:
        await srv.stop()


async def get(url, headers=None, method="GET"):
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers) as r:
        return r.status, await r.text(), r.headers


async def test_endpoints_without_token(serve):
    srv = await serve()
    status, body, _ = await get(srv.url + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    srv.metrics.on_candle("BTC/USDT")
    status, body, headers = await get(srv.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"tandem_candles", "tandem_slice_latency_seconds"} <= names
    status, body, _ = await get(srv.url + "/positions")
    assert json.loads(body) == {"positions": FakeState().positions()}


async def test_fills_since_and_limit(serve):
    srv = await serve()
    _, body, _ = await get(srv.url + "/fills")
    doc = json.loads(body)  # strict JSON: NaN became null
    assert [f["ts"] for f in doc["fills"]] == [60_000, 120_000, 120_000, 180_000]
    assert doc["fills"][2]["cash_after"] is None and doc["next_since"] == 180_000
    _, body, _ = await get(srv.url + "/fills?since=60000")
    doc = json.loads(body)
    assert [f["ts"] for f in doc["fills"]] == [120_000, 120_000, 180_000]
    _, body, _ = await get(srv.url + "/fills?since=180000")
    assert json.loads(body) == {"fills": [], "next_since": 180_000, "next_since_id": None}
    _, body, _ = await get(srv.url + "/fills?limit=1")
    assert len(json.loads(body)["fills"]) == 1
    status, body, _ = await get(srv.url + "/fills?since=yesterday")
    assert status == 400 and "since" in json.loads(body)["error"]


async def test_degraded_health_is_503(serve):
    health = Health()
    srv = await serve(health=health)
    health.write_failed("disk full")
    status, body, _ = await get(srv.url + "/health")
    assert status == 503
    assert json.loads(body)["reasons"] == ["failed write: disk full"]


async def test_read_only(serve):
    srv = await serve()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, _, _ = await get(srv.url + "/fills", method=method)
        assert status == 405, method
    status, _, _ = await get(srv.url + "/health", method="HEAD")
    assert status == 200


async def test_no_state_yet_is_503(serve):
    srv = await serve(provider=None)
    assert (await get(srv.url + "/positions"))[0] == 503
    assert (await get(srv.url + "/fills"))[0] == 503


@pytest.mark.parametrize("path", ["/health", "/metrics", "/positions", "/fills", "/nope"])
async def test_token_required(serve, path):
    srv = await serve(token=SecretStr(TOKEN))
    status, _, headers = await get(srv.url + path)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    for bad in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "):
        assert (await get(srv.url + path, {"Authorization": bad}))[0] == 401, bad
    status, _, _ = await get(srv.url + path, {"Authorization": f"Bearer {TOKEN}"})
    assert status == (404 if path == "/nope" else 200)


async def test_empty_token_means_no_token(serve):
    srv = await serve(token="")
    assert not srv.auth_required
    assert (await get(srv.url + "/health"))[0] == 200


@pytest.mark.parametrize(
    "host,loop",
    [("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
     ("", False), (None, False), ("192.168.1.10", False), ("example.org", False)],
)
def test_is_loopback_host(host, loop):
    assert is_loopback_host(host) is loop


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", ""])
def test_refuses_non_loopback_without_token(host):
    with pytest.raises(InsecureBindError, match="token"):
        OpsServer(metrics=Metrics(), health=Health(), host=host, port=0)
    with pytest.raises(InsecureBindError):
        OpsServer(metrics=Metrics(), health=Health(), host=host, port=0, token="")
    # With a token it is allowed (constructed only: tests never listen beyond loopback).
    OpsServer(metrics=Metrics(), health=Health(), host=host, port=0, token=SecretStr(TOKEN))


def test_ops_fails_fast_on_insecure_bind():
    with pytest.raises(InsecureBindError):
        Ops(OpsConfig(http_host="0.0.0.0", http_port=0))


async def test_no_secret_in_logs():
    """Drive the server with right and wrong tokens while every logger writes to a buffer."""
    buf = io.StringIO()
    # configure() merges into the current config: an earlier test's level filter would stay.
    structlog.reset_defaults()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(file=buf),
    )
    handler = logging.StreamHandler(buf)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        cfg = OpsConfig(http_port=0, http_token=SecretStr(TOKEN))
        ops = Ops(cfg, FakeState(), logger=structlog.get_logger("test"))
        await ops.start()
        url = ops.server.url
        for hdr in ({"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}!"},
                    {}):
            for path in ("/health", "/metrics", "/fills?since=1", "/positions"):
                await get(url + path, hdr)
        structlog.get_logger("test").info("config", ops=repr(cfg), cfg=str(cfg))
        await ops.stop()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.reset_defaults()
    logs = buf.getvalue()
    assert "ops.http.listening" in logs and '"auth": true' in logs
    assert TOKEN not in logs


def test_ops_config_from_settings():
    from tandem.core.settings import load_settings

    s = load_settings(env_file=None, http_port=0, http_token=TOKEN, health_stale_feed_s=42,
                      health_slice_lag_s=43, notify=False)
    cfg = OpsConfig.from_settings(s)
    assert (cfg.http_port, cfg.stale_feed_after_s, cfg.slice_lag_after_s) == (0, 42, 43)
    assert cfg.http_token.get_secret_value() == TOKEN and cfg.notify is False
    assert TOKEN not in repr(cfg)
