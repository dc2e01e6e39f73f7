"""The real ``tandem-daemon run`` as a subprocess, as systemd runs it (issue 8, "Show").

* ``NOTIFY_SOCKET`` points at a datagram socket of this test: ``READY=1`` arrives after
  warm-up, ``WATCHDOG=1`` keeps arriving at ``WatchdogSec/2``, ``STOPPING=1`` on SIGTERM,
  and the process exits 0 within 5 s;
* the exchange is the emulator on 127.0.0.1 with the real ccxt.pro client inside the daemon;
  ``/health`` turns degraded when the emulator goes silent and ok again after recovery;
* ``/metrics`` parses with prometheus-client's parser and its counters move;
* with a token set, a request without it gets 401; no log line contains the token;
* a bad setting (or a non-loopback bind without a token, or an unknown profile) exits 2
  naming the field, before READY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tandem.daemon.emulator import Emulator, MarketData

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "ops-daemon-test-token-7d1c0e55"
SYMBOLS = ["BTC/USDT", "ETH/USDT"]
TF = 60_000
WARMUP = 40
# A first-ever run compiles every numba kernel (minutes on a cold cache); later runs load
# them from NUMBA_CACHE_DIR in seconds.
READY_TIMEOUT_S = 420

# Generous waits: they return as soon as the condition holds, but a cold numba cache or a
# busy CI core can hold the daemon's event loop for a while.
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def daemon_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("tandem-daemon")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "tandem.daemon.cli"]


def write_manifest(folder: Path) -> Path:
    """The shipped default profile, shrunk to two assets on 1m with a short warm-up."""
    shipped = json.loads((ROOT / "manifest.json").read_text())
    profile = dict(shipped["profiles"][shipped["default_profile"]])
    profile.update(core_assets=SYMBOLS, universe=SYMBOLS, base_timeframe="1m",
                   timeframes=["1m"], mtf={"mode": "wide", "weights": {"1m": 1.0},
                                           "min_agree": None},
                   warmup_bars=WARMUP)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"version": 1, "default_profile": "ops_test",
                                "profiles": {"ops_test": profile}}))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NotifyListener:
    """The test's stand-in for systemd's notify socket: records (monotonic time, message)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sdn")  # short path: AF_UNIX is limited to 108 B
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, str]] = []

    def poll(self) -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
        return [m for _, m in self.messages]

    def times(self, prefix: str) -> list[float]:
        self.poll()
        return [t for t, m in self.messages if m.startswith(prefix)]

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self.dir)


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    env.update(TANDEM_MANIFEST_PATH=str(tmp / "manifest.json"),
               TANDEM_STATE_DB=str(tmp / "state.sqlite"), TANDEM_LOG_FORMAT="json")
    env.update(extra)
    return env


async def wait_for(predicate, timeout: float, what: str, proc=None, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        if proc is not None and proc.returncode is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) while waiting for {what}")
        await asyncio.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def http(session: aiohttp.ClientSession, url: str, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with session.get(url, headers=headers,
                               timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status, await r.text()
    except (TimeoutError, aiohttp.ClientError):
        return None, ""


def metric_values(text: str) -> dict[str, float]:
    """Sum every sample per sample name (labels folded) — parsed by prometheus-client."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


async def test_daemon_under_notify_socket(tmp_path):
    write_manifest(tmp_path)
    market = MarketData.generate(SYMBOLS, "1m", n_bars=3000, seed=11)
    emu = Emulator(market, start=market.first_ts + (WARMUP + 60) * TF + 1)
    await emu.start()
    listener = NotifyListener()
    port = free_port()
    env = base_env(
        tmp_path,
        NOTIFY_SOCKET=listener.path,
        WATCHDOG_USEC="1000000",  # WatchdogSec=1 → a ping every 0.5 s
        TANDEM_EXCHANGE_REST_URL=emu.rest_url,
        TANDEM_EXCHANGE_WS_URL=emu.ws_url,
        TANDEM_HTTP_HOST="127.0.0.1",
        TANDEM_HTTP_PORT=str(port),
        TANDEM_HTTP_TOKEN=TOKEN,
        TANDEM_GRACE_PERIOD_S="1",
        TANDEM_HEALTH_STALE_FEED_S="2",
        TANDEM_HEALTH_SLICE_LAG_S="5",
    )
    log_path = tmp_path / "daemon.log"
    log_file = log_path.open("wb")
    proc = await asyncio.create_subprocess_exec(
        *daemon_cmd(), "run", "--profile", "ops_test", "--watchdog", "60",
        cwd=tmp_path, env=env, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
    )
    ticking = asyncio.Event()
    ticking.set()

    async def clock() -> None:  # one bar every 0.25 s while ``ticking``
        while True:
            await ticking.wait()
            await emu.advance(1)
            await asyncio.sleep(0.25)

    clock_task = asyncio.create_task(clock())
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            # HTTP is up during warm-up and says so (503 "starting") until READY.
            async def answering():
                status, body = await http(session, base + "/health")
                return status is not None and (status, body, bool(listener.times("READY=1")))

            status, body, was_ready = await wait_for(answering, READY_TIMEOUT_S,
                                                     "HTTP to answer", proc, every=0.25)
            if not was_ready:
                assert status == 503 and json.loads(body)["phase"] == "starting", body

            # READY=1 after warm-up (the first tradable slice), not before.
            async def ready():
                return listener.times("READY=1")

            await wait_for(ready, READY_TIMEOUT_S, "READY=1", proc, every=0.25)
            conn = sqlite3.connect(f"file:{tmp_path / 'state.sqlite'}?mode=ro", uri=True)
            n_warm, n_trade = conn.execute(
                "SELECT SUM(warmup), SUM(1 - warmup) FROM slices").fetchone()
            conn.close()
            assert n_warm == WARMUP and n_trade >= 1, (n_warm, n_trade)

            # WATCHDOG=1 keeps arriving (every 0.5 s; the catch-up right after READY may hold
            # the event loop for a moment, well inside any real WatchdogSec).
            await asyncio.sleep(1.0)
            t_from = time.monotonic()
            await asyncio.sleep(3.0)
            pings = [t for t in listener.times("WATCHDOG=1") if t >= t_from]
            assert len(pings) >= 4, listener.poll()

            # Token: 401 without it (every endpoint), 200 with it.
            for path in ("/health", "/metrics", "/positions", "/fills"):
                assert (await http(session, base + path, token=None))[0] == 401, path
                assert (await http(session, base + path, token=TOKEN + "x"))[0] == 401, path

            async def healthy():
                status, body = await http(session, base + "/health")
                return status == 200 and json.loads(body)["status"] == "ok"

            await wait_for(healthy, 60, "/health ok", proc)

            # /metrics parses and its counters move while bars close.
            _, text = await http(session, base + "/metrics")
            before = metric_values(text)
            assert before["tandem_ready"] == 1

            async def moved():
                _, t = await http(session, base + "/metrics")
                now = metric_values(t)
                return (now["tandem_candles_total"] >= before["tandem_candles_total"] + 4
                        and now["tandem_slices_stepped_total"]
                        >= before["tandem_slices_stepped_total"] + 2
                        and now["tandem_slice_latency_seconds_count"]
                        > before["tandem_slice_latency_seconds_count"]) and now

            after = await wait_for(moved, 60, "metrics counters to move", proc)
            assert after["tandem_equity"] > 0

            # The emulator goes silent (sockets open, pongs answered, no data)...
            emu.silence_connections(True)

            async def stale():
                status, body = await http(session, base + "/health")
                doc = json.loads(body) if body else {}
                return status == 503 and any("stale feed" in r for r in doc.get("reasons", ()))

            await wait_for(stale, 60, "/health degraded (stale feed)", proc)
            # ...and recovers: health is ok again.
            emu.silence_connections(False)
            await wait_for(healthy, 60, "/health ok after recovery", proc)

            # /fills agrees with the journal in the database.
            status, body = await http(session, base + "/fills?since=0")
            assert status == 200
            served = json.loads(body)["fills"]
            status, body = await http(session, base + "/positions")
            assert status == 200 and isinstance(json.loads(body)["positions"], list)

            # SIGTERM: STOPPING=1 and exit 0 within 5 s.
            ticking.clear()
            t_term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), timeout=10)
            took = time.monotonic() - t_term
            assert rc == 0 and took < 5.0, (rc, took)
            assert listener.times("STOPPING=1"), listener.poll()
    finally:
        clock_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock_task
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log_file.close()
        listener.close()
        await emu.stop()

    conn = sqlite3.connect(f"file:{tmp_path / 'state.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    stored = {r["fill_id"]: dict(r) for r in conn.execute("SELECT * FROM fills")}
    conn.close()
    for row in served:
        assert {k: stored[row["fill_id"]][k] for k in row} == row
    logs = log_path.read_bytes().decode(errors="replace")
    assert "daemon_start" in logs or "live" in logs
    assert TOKEN not in logs, "the bearer token leaked into the logs"


@pytest.mark.parametrize(
    "env,args,field",
    [
        ({"TANDEM_HTTP_HOST": "0.0.0.0"}, [], "TANDEM_HTTP_HOST"),
        ({"TANDEM_HTTP_PORT": "not-a-port"}, [], "TANDEM_HTTP_PORT"),
        ({"TANDEM_HEALTH_SLICE_LAG_S": "0.5"}, [], "TANDEM_HEALTH_SLICE_LAG_S"),
        ({}, ["--profile", "no_such_profile"], "no_such_profile"),
    ],
)
async def test_bad_settings_exit_2_before_ready(tmp_path, env, args, field):
    write_manifest(tmp_path)
    listener = NotifyListener()
    try:
        proc = await asyncio.create_subprocess_exec(
            *daemon_cmd(), "run", *args,
            cwd=tmp_path, env=base_env(tmp_path, NOTIFY_SOCKET=listener.path,
                                       TANDEM_EXCHANGE_REST_URL="http://127.0.0.1:9/api/v3",
                                       TANDEM_EXCHANGE_WS_URL="ws://127.0.0.1:9/ws", **env),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        text = (out + err).decode(errors="replace")
        assert proc.returncode == 2, text
        assert field in text, text
        assert "Traceback" not in text, text
        assert not any(m.startswith("READY=1") for m in listener.poll())
    finally:
        listener.close()
