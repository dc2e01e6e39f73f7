"""Hostile HTTP clients against the daemon's read-only endpoint (issue 16, items 11 and 13):
out-of-range query values answer 400 with a JSON error naming the right parameter (not 500),
and a malformed or oversized request logs one JSON line that quotes none of its bytes."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import aiohttp
import pytest
import structlog
from tandem.daemon.ops import Health, Metrics, OpsServer
from tandem.daemon.ops.provider import SqliteStateProvider
from tandem.daemon.state import StateStore

TOKEN = "s3cr3t-t0ken-never-in-a-log-77c1"


@pytest.fixture
async def server(tmp_path):
    """The real server over a real (empty) state database: the SQLite provider is where an
    over-long integer used to fail (500)."""
    db = tmp_path / "state.sqlite"
    StateStore(db).close()
    health = Health()
    health.set_phase("live")
    srv = OpsServer(metrics=Metrics(), health=health, provider=SqliteStateProvider(db),
                    host="127.0.0.1", port=0)
    await srv.start()
    yield srv
    await srv.stop()


async def _get(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, json.loads(await r.text())


@pytest.mark.parametrize("query", ["since=1000000000000000000000000", "since=1e24",
                                   "since=-99999999999999999999999", "limit=1" + "0" * 30])
async def test_out_of_range_integers_are_400(server, query):
    status, doc = await _get(f"{server.url}/fills?{query}")
    name = query.split("=")[0]
    assert status == 400, doc
    assert doc["error"].startswith(f"{name} must be an integer")


async def test_bad_limit_names_limit_not_since(server):
    status, doc = await _get(f"{server.url}/fills?limit=abc")
    assert status == 400
    assert "limit" in doc["error"] and "since" not in doc["error"], doc


@pytest.mark.parametrize("limit", ["0", "-5"])
async def test_limit_below_one_is_400_not_one_row(server, limit):
    status, doc = await _get(f"{server.url}/fills?limit={limit}")
    assert status == 400 and doc["error"] == f"limit must be at least 1, got {limit}", doc


async def test_valid_since_still_answers(server):
    status, doc = await _get(f"{server.url}/fills?since=0&limit=5")
    assert status == 200 and doc["fills"] == []


async def _raw(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return data


async def test_malformed_requests_log_one_line_without_client_bytes():
    """An oversized header, a header with a bad character and a garbage request line: aiohttp
    logged each with a traceback quoting the request (the bearer token with it)."""
    buf = io.StringIO()
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
    payloads = [
        b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
        + b"A" * 20_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
        + b"\x01\x02\r\n\r\n",
        b"GET /" + TOKEN.encode() + b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    try:
        srv = OpsServer(metrics=Metrics(), health=Health(), host="127.0.0.1", port=0,
                        token=TOKEN)
        await srv.start()
        try:
            for p in payloads:
                answer = await _raw(srv.port, p)
                assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request"), answer[:80]
        finally:
            await srv.stop()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        structlog.reset_defaults()
    logs = buf.getvalue()
    assert TOKEN not in logs and "AAAAAAAA" not in logs and "Traceback" not in logs, logs
    lines = [ln for ln in logs.splitlines() if ln.strip()]
    assert len(lines) == len(payloads), logs
    for ln in lines:
        doc = json.loads(ln)  # one JSON object per line
        assert doc["event"] == "http_request_error" and doc["status"] == 400, doc


def _form(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> bytes:
    return (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + content_type.encode()
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize(("payload", "status"), [
    # a bearer token or a session cookie of bytes that are not UTF-8: 500 before
    (b"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xe4\xe4\r\n"
     b"Connection: close\r\n\r\n", 401),
    (b"GET /api/dashboard HTTP/1.1\r\nHost: x\r\nCookie: tandem_session=\xe4\xe4\r\n"
     b"Connection: close\r\n\r\n", 401),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: tandem_session=\xe4\r\n"
     b"Connection: close\r\n\r\n", 200),  # the login page
    # login forms the server cannot decode: 500 before
    (_form(b"token=\xe4\xe4"), 400),
    (_form(b"token=abc", "application/x-www-form-urlencoded; charset=bogus"), 400),
    (_form(b'--x\r\nContent-Disposition: form-data; name="token"\r\n'
           b"Content-Type: text/plain; charset=bogus\r\n\r\nabc\r\n--x--\r\n",
           "multipart/form-data; boundary=x"), 400),
    (_form(b"token=%E4%E4"), 401),  # decodable, just wrong
])
async def test_undecodable_credentials_are_refused_not_500(payload, status):
    from pydantic import SecretStr
    from tandem.daemon.ops.dashboard import DashboardHub

    health, metrics = Health(), Metrics()
    health.set_phase("live")
    hub = DashboardHub(health=health, metrics=metrics, token=SecretStr(TOKEN))
    srv = OpsServer(metrics=metrics, health=health, host="127.0.0.1", port=0, token=TOKEN,
                    dashboard=hub)
    await srv.start()
    try:
        answer = await _raw(srv.port, payload)
    finally:
        await srv.stop()
    assert answer.split(b"\r\n", 1)[0].endswith(b" %d" % status
                                                  + {200: b" OK", 400: b" Bad Request",
                                                     401: b" Unauthorized"}[status]), answer[:80]
    assert TOKEN.encode() not in answer
