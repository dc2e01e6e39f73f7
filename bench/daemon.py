"""Daemon benchmark: close-frame-to-commit latency and idle footprint.

Latency: the emulator plays generated 1m candles for N streams (10, 50, 200) on its virtual
clock; the daemon consumes them with the real ccxt.pro client over 127.0.0.1, exactly as in
production. For every slice we take the moment the *last* closing kline frame of that bar
left the emulator (the frame that completes the slice; ``Emulator.on_frame``) and the
moment the slice's SQLite transaction committed (``Daemon.commit_hook``): p50/p99 over the
live bars (warm-up excluded). Emulator and daemon share one process and one event loop, so
the figure includes the emulator's own sending of the other streams' frames.

Idle: a separate ``tandem-daemon run`` process with 200 streams, live and caught up, then no
market data for ``--idle-s`` seconds: resident memory (VmRSS) and CPU use of that process.

    NUMBA_CACHE_DIR=.numba_cache .venv/bin/python bench/daemon.py [--bars 60] [--idle-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.manifest import parse_manifest  # noqa: E402
from daemon.app import Daemon, DaemonConfig  # noqa: E402
from daemon.emulator.market import MarketData  # noqa: E402
from daemon.emulator.server import Emulator  # noqa: E402
from daemon.logconfig import configure_logging  # noqa: E402
from daemon.replay import wait_delivered, wait_subscribed  # noqa: E402
from daemon.strategy import stepper_factory  # noqa: E402

TF_MS = 60_000
WARMUP = 60


def symbols(n: int) -> list[str]:
    out = []
    for i in range(n):
        a, b = divmod(i, 26)
        # "Q.." names: ccxt maps some real codes (XBT -> BTC), which would not round-trip.
        out.append(f"Q{chr(65 + a % 26)}{chr(65 + b)}/USDT")
    return out


def profile_dict(syms: list[str]) -> dict:
    return {
        "strategy": "rating_all", "exchange": "binance", "core_assets": syms[: max(1, len(syms) // 4)],
        "universe": syms, "base_timeframe": "1m", "timeframes": ["1m", "5m"],
        "entry_threshold": 0.05, "exit_threshold": -0.05,
        "exit_rules": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015},
        "execution": {"size_pct": 0.02, "min_trade_value": 1.0}, "warmup_bars": WARMUP,
    }


def make_profile(syms: list[str]):
    return parse_manifest({"version": 1, "profiles": {"bench": profile_dict(syms)}}).profile("bench")


async def latency(n: int, bars: int, tmp: Path) -> dict:
    syms = symbols(n)
    prof = make_profile(syms)
    market = MarketData.generate(syms, "1m", n_bars=WARMUP + bars + 5, seed=3)
    t0 = market.first_ts + WARMUP * TF_MS
    emu = Emulator(market, start=t0)
    last_frame: dict[int, float] = {}

    def on_frame(symbol, bar_ts, closed, t):  # noqa: ANN001
        if closed:
            last_frame[bar_ts] = t  # frames of one bar arrive in order: keep the last

    emu.on_frame = on_frame
    await emu.start()
    cfg = DaemonConfig(
        profile_name=prof.name, profile_json=prof.canonical_json(), symbols=prof.assets,
        exchange_id="binance", base_timeframe="1m", tf_ms=TF_MS, warmup_bars=prof.warmup,
        state_db=tmp / f"lat{n}.sqlite", rest_url=emu.rest_url, ws_url=emu.ws_url,
        grace_s=30.0, watchdog_s=0, heartbeat_every_s=3600, fresh=True, t0=t0,
        checkpoint_every=10**9, checkpoint_every_s=3600,
    )
    daemon = Daemon(cfg, stepper_factory(prof))
    commits: dict[int, float] = {}
    daemon.commit_hook = lambda sl, t: commits.__setitem__(sl.ts, t)
    task = asyncio.create_task(daemon.run())
    await wait_subscribed(emu, n, timeout_s=900)  # first run after a core change compiles
    for _ in range(bars):
        await emu.advance(1)
        closed = emu.now - TF_MS
        await wait_delivered(daemon, closed, 60)
        await asyncio.sleep(0.002)  # idle gap between bars, as in live trading
    daemon.stop()
    await task
    await emu.stop()
    lat = np.array([commits[ts] - last_frame[ts] for ts in commits if ts >= t0 + TF_MS
                    and ts in last_frame]) * 1000.0
    return {"streams": n, "slices": int(lat.size), "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}


def _proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle(n: int, idle_s: float, tmp: Path) -> dict:
    syms = symbols(n)
    market = MarketData.generate(syms, "1m", n_bars=WARMUP + 20, seed=3)
    man = tmp / "manifest.json"
    man.write_text(json.dumps({"version": 1, "profiles": {"bench": profile_dict(syms)}}))
    db = tmp / "idle.sqlite"
    emu = Emulator(market, start=market.first_ts + WARMUP * TF_MS)
    await emu.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "--manifest", str(man), "--profile", "bench",
         "--db", str(db), "--rest-url", emu.rest_url, "--ws-url", emu.ws_url, "--watchdog", "0",
         "--log-level", "WARNING", "--log-format", "json"],
        cwd=str(tmp), env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await wait_subscribed(emu, n, timeout_s=900)
        for _ in range(3):  # warm-up + two live bars
            await emu.advance(1)
            await asyncio.sleep(2.0)
        await asyncio.sleep(2.0)
        cpu0, t0 = _proc_cpu_s(proc.pid), time.monotonic()
        await asyncio.sleep(idle_s)
        cpu1, t1 = _proc_cpu_s(proc.pid), time.monotonic()
        rss = _proc_rss_mb(proc.pid)
    finally:
        proc.terminate()
        t = time.monotonic()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stop_s = time.monotonic() - t
        await emu.stop()
    return {"streams": n, "idle_s": idle_s, "rss_mb": rss, "stop_s": stop_s,
            "cpu_pct": 100.0 * (cpu1 - cpu0) / (t1 - t0)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=60, help="live bars per latency run")
    ap.add_argument("--streams", default="10,50,200")
    ap.add_argument("--idle-s", type=float, default=10.0)
    args = ap.parse_args()
    configure_logging("json", "ERROR")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for n in (int(x) for x in args.streams.split(",") if x):
            r = await latency(n, args.bars, tmp)
            print(f"latency  streams={r['streams']:>3}  slices={r['slices']:>3}  "
                  f"p50={r['p50_ms']:.2f} ms  p99={r['p99_ms']:.2f} ms  max={r['max_ms']:.2f} ms",
                  flush=True)
        r = await idle(200, args.idle_s, tmp)
        print(f"idle     streams={r['streams']}  rss={r['rss_mb']:.0f} MB  "
              f"cpu={r['cpu_pct']:.2f} % over {r['idle_s']:.0f} s  "
              f"SIGTERM->exit={r['stop_s']:.1f} s", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
