"""``python -m tandem.daemon.ops.healthcheck`` (the Docker HEALTHCHECK) against a real OpsServer."""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket

from tandem.daemon.ops import Health, Metrics, OpsServer
from tandem.daemon.ops.healthcheck import main

TOKEN = "healthcheck-token-0123456789"


async def run_probe(monkeypatch, port: int, token: str | None) -> tuple[int, str]:
    monkeypatch.setenv("TANDEM_HTTP_PORT", str(port))
    if token is None:
        monkeypatch.delenv("TANDEM_HTTP_TOKEN", raising=False)
    else:
        monkeypatch.setenv("TANDEM_HTTP_TOKEN", token)
    out = io.StringIO()

    def probe() -> int:
        with contextlib.redirect_stdout(out):
            return main([])

    # urllib blocks: run it off the event loop that serves the request.
    rc = await asyncio.to_thread(probe)
    return rc, out.getvalue()


async def test_probe_follows_health_and_token(monkeypatch):
    health = Health()
    srv = OpsServer(metrics=Metrics(), health=health, port=0, token=TOKEN)
    port = await srv.start()
    try:
        rc, out = await run_probe(monkeypatch, port, TOKEN)
        assert rc == 1 and "warm-up" in out  # starting: not healthy yet
        health.set_phase("live")
        rc, out = await run_probe(monkeypatch, port, TOKEN)
        assert rc == 0 and '"status": "ok"' in out
        rc, out = await run_probe(monkeypatch, port, None)
        assert rc == 1 and "unauthorized" in out
        assert TOKEN not in out
    finally:
        await srv.stop()


async def test_probe_unreachable(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, out = await run_probe(monkeypatch, port, None)
    assert rc == 1 and out.startswith("unreachable")


def test_probe_imports_stdlib_only():
    """Docker runs the probe every 30 s: it must not drag aiohttp/pydantic/numba in."""
    import subprocess
    import sys

    code = ("import sys, tandem.daemon.ops.healthcheck; "
            "heavy = {'aiohttp', 'pydantic', 'prometheus_client', 'numba', 'pandas'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[]", out
