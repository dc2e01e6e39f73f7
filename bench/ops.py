"""Cost of operations monitoring on the daemon's hot path, and of the HTTP endpoints.

    .venv/bin/python bench/ops.py [--assets 200] [--slices 2000]

Prints: per-slice overhead of the ops event calls the daemon makes (one ``on_candle`` per
asset + ``on_slice`` + a fill), one sampler pass over N feeds, ``/metrics`` render time, and
request latency of ``/health`` and ``/metrics`` over 127.0.0.1 (p50/p99).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from types import SimpleNamespace

import aiohttp
from tandem.daemon.ops import Ops, OpsConfig
from tandem.daemon.ops.sampler import DaemonSampler


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=int, default=200)
    ap.add_argument("--slices", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=300)
    a = ap.parse_args()
    symbols = [f"S{i:03d}/USDT" for i in range(a.assets)]
    ops = Ops(OpsConfig(http_port=0, notify=False))
    ops.health.set_phase("live")

    # --- hot path: what Daemon._on_candle/_step call per slice --------------------------------
    per_slice = []
    for k in range(a.slices):
        ts = (k + 1) * 60_000
        t = time.perf_counter()
        for s in symbols:
            ops.on_feed_update(s)
            ops.on_candle(s, ts)
        ops.on_fill(symbols[k % a.assets], "buy", "entry")
        ops.on_slice(ts, 0.001)
        per_slice.append(time.perf_counter() - t)
    print(f"ops calls per slice ({a.assets} assets): p50 {pct(per_slice, .5) * 1e6:.0f} us, "
          f"p99 {pct(per_slice, .99) * 1e6:.0f} us")

    feeds = [SimpleNamespace(symbol=s, last_update_at=time.monotonic(), reconnects=1,
                             backfills=2) for s in symbols]
    daemon = SimpleNamespace(supervisor=SimpleNamespace(feeds=feeds), stepper=None)
    sampler = DaemonSampler(daemon, ops.metrics, ops.health)
    sampler.sample()
    t = time.perf_counter()
    for _ in range(100):
        sampler.sample()
    print(f"sampler pass over {a.assets} feeds: {(time.perf_counter() - t) / 100 * 1e6:.0f} us")

    t = time.perf_counter()
    for _ in range(50):
        body = ops.metrics.render()
    print(f"/metrics render: {(time.perf_counter() - t) / 50 * 1e3:.2f} ms, {len(body)} bytes")
    t = time.perf_counter()
    for _ in range(200):
        ops.health.evaluate()
    print(f"health evaluate ({a.assets} feeds): {(time.perf_counter() - t) / 200 * 1e6:.0f} us")

    await ops.start()
    try:
        async with aiohttp.ClientSession() as session:
            for path in ("/health", "/metrics"):
                lat = []
                for _ in range(a.requests):
                    t = time.perf_counter()
                    async with session.get(ops.server.url + path) as r:
                        await r.read()
                    lat.append(time.perf_counter() - t)
                print(f"GET {path}: p50 {statistics.median(lat) * 1e3:.2f} ms, "
                      f"p99 {pct(lat, .99) * 1e3:.2f} ms")
    finally:
        await ops.stop()


if __name__ == "__main__":
    asyncio.run(main())
