"""Figures for the candle store, the exchange emulator and download (prints; not a test).

    .venv/bin/python bench/store_emulator.py [--data ../shared/data] [--bars 30]

1. store: universe parquet -> aligned arrays; the same 126 assets written to a CandleStore
   and read back aligned.
2. emulator REST: one 1000-row ``/api/v3/klines`` page (raw aiohttp), and a full
   ``download`` of 2 × 10,000 1m bars through ccxt.
3. emulator websocket -> real ccxt.pro client: for 10 / 50 / 200 streams (one
   ``watch_ohlcv`` task each), latency from ``advance(1)`` to the last stream's closing
   update seen by the client, p50 / p99 over ``--bars`` bars. (Subscribing is slow by
   design: ccxt throttles each SUBSCRIBE to Binance's 5 messages/s, ~0.25 s per stream.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tandem.backtest.download import download_async  # noqa: E402
from tandem.core.exchange import create_exchange  # noqa: E402
from tandem.core.store import CandleStore, open_candles  # noqa: E402
from tandem.daemon.emulator import Emulator, MarketData  # noqa: E402


def bench_store(data: Path) -> None:
    path = data / "binance_USDT_1h_universe.parquet"
    if not path.exists():
        print(f"store: {path} not found, skipped")
        return
    t = time.perf_counter()
    uni = open_candles(path)
    aligned = uni.load_aligned(None, "1h")
    t_uni = time.perf_counter() - t
    print(f"store: universe parquet -> aligned {aligned.n_bars} x {aligned.n_assets}: {t_uni:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        store = CandleStore(tmp, timeframe="1h")
        t = time.perf_counter()
        for sym in aligned.symbols:
            store.append(sym, aligned.asset(sym))
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        again = CandleStore(tmp, timeframe="1h").load_aligned(list(aligned.symbols), "1h")
        t_read = time.perf_counter() - t
        assert np.array_equal(again.close, aligned.close, equal_nan=True)
        print(f"store: write 126 parquet files {t_write:.2f} s; load_aligned 126 assets {t_read:.2f} s")


async def bench_rest() -> None:
    md = MarketData.generate(["BTC/USDT", "ETH/USDT"], "1m", n_bars=10_000, seed=1)
    async with Emulator(md, start=md.end_ts) as emu, aiohttp.ClientSession() as s:
        url = emu.rest_url + "/klines"
        times = []
        for i in range(20):
            t = time.perf_counter()
            async with s.get(url, params={"symbol": "BTCUSDT", "interval": "1m", "limit": 1000,
                                          "startTime": int(md.ts["BTC/USDT"][i * 100])}) as r:
                await r.read()
            times.append(time.perf_counter() - t)
        print(f"emulator REST: 1000-row klines page median {statistics.median(times) * 1e3:.1f} ms")
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            added = await download_async("binance", ["BTC/USDT", "ETH/USDT"], "1m", md.first_ts,
                                         CandleStore(tmp, timeframe="1m"), progress=False,
                                         rest_url=emu.rest_url)
            dt = time.perf_counter() - t
        n = sum(added.values())
        print(f"download: {n} bars in {dt:.2f} s ({n / dt:,.0f} bars/s, rate-limited ccxt client)")


async def bench_ws(n_streams: int, n_bars: int) -> None:
    symbols = [f"C{i:03d}/USDT" for i in range(n_streams)]
    md = MarketData.generate(symbols, "1m", n_bars=n_bars + 5, seed=2)
    async with Emulator(md, updates_per_bar=1) as emu:
        ex = create_exchange("binance", rest_url=emu.rest_url, ws_url=emu.ws_url)
        await ex.load_markets()
        latest: dict[str, int] = {}
        got_all = asyncio.Event()
        target = {"ts": -1}

        async def watch(sym: str) -> None:
            while True:
                rows = await ex.watch_ohlcv(sym, "1m")
                for row in rows:
                    if row[0] == target["ts"] and row[0] > latest.get(sym, -1):
                        latest[sym] = row[0]
                        if len(latest) == n_streams and all(v == target["ts"] for v in latest.values()):
                            got_all.set()

        tasks = [asyncio.create_task(watch(s)) for s in symbols]
        try:
            while len(emu.subscriptions()) < n_streams:
                await asyncio.sleep(0.01)
            lat, send = [], []
            for i in range(n_bars):
                target["ts"] = int(md.ts[symbols[0]][i])
                got_all.clear()
                t = time.perf_counter()
                await emu.advance(1)
                send.append(time.perf_counter() - t)  # emulator built and wrote every frame
                # the closing updates of bar i are the last frames of this advance; wait for all
                await asyncio.wait_for(got_all.wait(), 10)
                lat.append(time.perf_counter() - t)
            lat_ms = np.array(lat) * 1e3
            print(f"emulator WS -> ccxt.pro, {n_streams:3d} streams: bar fan-out p50 "
                  f"{np.percentile(lat_ms, 50):.1f} ms, p99 {np.percentile(lat_ms, 99):.1f} ms "
                  f"({3 * n_streams} frames per bar: mid tick, close, next open tick; "
                  f"emulator share p50 {np.percentile(np.array(send) * 1e3, 50):.1f} ms)")
        finally:
            for t_ in tasks:
                t_.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ex.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--bars", type=int, default=30)
    args = p.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # quiet
    bench_store(args.data)
    asyncio.run(bench_rest())
    for n in (10, 50, 200):
        asyncio.run(bench_ws(n, args.bars))


if __name__ == "__main__":
    main()
