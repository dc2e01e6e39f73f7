"""Download from every supported venue, through its real ccxt client and its emulator.

The venues page differently: Binance lists the OLDEST ``limit`` bars from ``startTime``,
Bybit the NEWEST ``limit`` bars of ``[start, end]`` (end defaults to now, ccxt issue 16551),
OKX the newest ``limit`` bars strictly between ``before`` and ``after``. The downloader asks
each for explicit windows, so all three must give every bar since ``--since`` exactly once.
Small pages (50 bars) keep the markets small and the tests fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.download import download_async
from tandem.daemon.emulator import MarketData
from tandem.daemon.emulator.okx import OkxEmulator
from tandem.daemon.replay import emulator_class

from tests.emulator_fixtures import emulator_in_thread

M = 60_000
DAY = 86_400_000
VENUES = ("binance", "bybit", "okx")
KLINE_PATHS = ("/api/v3/klines", "/v5/market/kline", "/api/v5/market/candles",
               "/api/v5/market/history-candles")


@pytest.fixture
def serve(emulator_factory):
    """``serve(venue, market, cls=None, **kw)``: that venue's emulator, started (and
    stopped at the end of the test)."""
    async def make(venue: str, md: MarketData, cls=None, **kw):
        return await emulator_factory(md, cls=cls or emulator_class(venue), **kw)

    return make


def klines(emu, mark: int = 0) -> list[dict]:
    return [q for p, q in emu.rest_log[mark:] if p in KLINE_PATHS]


def without(md: MarketData, symbol: str, drop: slice) -> MarketData:
    """``md``'s ``symbol`` with the bars ``drop`` removed (a venue's downtime)."""
    arr = np.column_stack([md.ts[symbol].astype(np.float64), md.ohlcv[symbol]])
    return MarketData(md.timeframe, {symbol: np.delete(arr, np.arange(len(arr))[drop], axis=0)})


def stored(tmp_path: Path, venue: str, tf: str = "1m") -> pd.DataFrame:
    from tandem.core.store import CandleStore

    return CandleStore(tmp_path, exchange=venue, timeframe=tf).read("BTC/USDT")


async def get(venue: str, emu, since, tmp_path: Path, tf: str = "1m", **kw) -> int:
    added = await download_async(venue, ["BTC/USDT"], tf, since, tmp_path, progress=False,
                                 rest_url=emu.rest_url, retry_delay=0.01, **kw)
    return added["BTC/USDT"]


@pytest.mark.parametrize("venue", VENUES)
async def test_every_bar_since_once_then_resume(venue: str, serve, tmp_path: Path) -> None:
    md = MarketData.generate(["BTC/USDT"], "1m", n_bars=220, seed=3)
    ts = md.ts["BTC/USDT"]
    emu = await serve(venue, md, start=int(ts[200]) + 20_000)  # bar 200 is forming
    # --until (exclusive) first, then the rest: 200 bars = 4 pages of 50
    assert await get(venue, emu, int(ts[0]), tmp_path, until=int(ts[120]), limit=50) == 120
    assert len(klines(emu)) == 3  # [0, 50) [50, 100) [100, 120)
    mark = len(emu.rest_log)
    assert await get(venue, emu, int(ts[0]), tmp_path, limit=50) == 80
    assert len(klines(emu, mark)) == 2  # resumed at bar 120: [120, 170) [170, 200)
    got = stored(tmp_path, venue)
    pd.testing.assert_frame_equal(got, md.frame("BTC/USDT").iloc[:200])  # each bar once
    assert got["ts"].iloc[0] == ts[0] and ts[200] not in got["ts"].to_numpy()  # no forming bar
    mark = len(emu.rest_log)
    assert await get(venue, emu, int(ts[0]), tmp_path, limit=50) == 0  # nothing new
    assert klines(emu, mark) == []


@pytest.mark.parametrize("venue", VENUES)
async def test_gaps_longer_than_a_window_are_skipped(venue: str, serve, tmp_path: Path) -> None:
    full = MarketData.generate(["BTC/USDT"], "1m", n_bars=320, seed=5)
    md = without(full, "BTC/USDT", slice(100, 220))  # 120 bars down: more than 2 pages of 50
    emu = await serve(venue, md, start=md.end_ts)
    # --since 200 bars before the listing: 4 empty windows, then the bars on both sides
    since = md.first_ts - 200 * M
    assert await get(venue, emu, since, tmp_path, limit=50) == 200
    pd.testing.assert_frame_equal(stored(tmp_path, venue), md.frame("BTC/USDT"))


async def test_binance_crosses_a_long_gap_in_one_request(serve, tmp_path: Path) -> None:
    """Binance lists the oldest bars from a bare ``startTime``: after an empty window one
    request finds the next bar, instead of one request per empty window (a 1m --since a
    year before the listing was 526 of them per symbol)."""
    md = without(MarketData.generate(["BTC/USDT"], "1m", n_bars=200, seed=7), "BTC/USDT",
                 slice(50, 150))
    emu = await serve("binance", md, start=md.end_ts)
    since = md.first_ts - 5_000 * M  # 100 empty windows of 50 before the listing
    assert await get("binance", emu, since, tmp_path, limit=50) == 100
    pd.testing.assert_frame_equal(stored(tmp_path, "binance"), md.frame("BTC/USDT"))
    # before the listing: an empty window + a next-bar request; [0, 50); the gap: an empty
    # window + a next-bar request; [150, 200): 6, not 104
    assert len(klines(emu)) == 6


@pytest.mark.parametrize("venue", VENUES)
async def test_limit_is_clamped_to_the_venue_page(venue: str, serve, tmp_path: Path) -> None:
    md = MarketData.generate(["BTC/USDT"], "1m", n_bars=1300, seed=2)
    emu = await serve(venue, md, start=md.end_ts)
    assert await get(venue, emu, md.first_ts, tmp_path, limit=5000) == 1300
    pd.testing.assert_frame_equal(stored(tmp_path, venue), md.frame("BTC/USDT"))
    page = {"binance": 1000, "bybit": 1000, "okx": 300}[venue]
    assert {int(q["limit"]) for q in klines(emu)} == {page}


async def test_okx_daily_bars_open_at_utc_midnight(serve, tmp_path: Path) -> None:
    md = MarketData.generate(["BTC/USDT"], "1d", n_bars=180, seed=4)
    emu = await serve("okx", md, start=md.end_ts - DAY + 5 * 3_600_000)  # last bar forming
    assert await get("okx", emu, md.first_ts, tmp_path, tf="1d", limit=50) == 179
    got = stored(tmp_path, "okx", "1d")
    assert (got["ts"] % DAY == 0).all()
    pd.testing.assert_frame_equal(got, md.frame("BTC/USDT").iloc[:179])
    # the UTC-aligned bar (OKX's plain "1D" opens at 16:00 UTC; this emulator refuses it)
    assert {q["bar"] for q in klines(emu)} == {"1Dutc"}


class CappedOkx(OkxEmulator):
    """An OKX that lists at most 100 rows however many are asked (its older docs' cap)."""

    def _candle_rows(self, q, max_limit, recent_only):
        q = {**q, "limit": str(min(int(q.get("limit", 100)), 100))}
        return super()._candle_rows(q, max_limit, recent_only)


async def test_a_venue_listing_fewer_newest_rows_loses_none(serve, tmp_path: Path) -> None:
    md = MarketData.generate(["BTC/USDT"], "1m", n_bars=700, seed=6)
    emu = await serve("okx", md, cls=CappedOkx, start=md.end_ts)
    assert await get("okx", emu, md.first_ts, tmp_path, limit=300) == 700
    pd.testing.assert_frame_equal(stored(tmp_path, "okx"), md.frame("BTC/USDT"))


@pytest.mark.parametrize("venue", ("bybit", "okx"))
def test_command_line_rest_url(venue: str, tmp_path: Path, capsys) -> None:
    import argparse

    from tandem.backtest.download_cli import add_download_arguments, cli_main

    parser = argparse.ArgumentParser()
    add_download_arguments(parser)
    md = MarketData.generate(["BTC/USDT"], "1m", n_bars=220, seed=8)
    with emulator_in_thread(md, emulator_cls=emulator_class(venue),
                            start=md.first_ts + 200 * M + 1) as emu:
        argv = ["--exchange", venue, "--symbols", "BTC/USDT", "--timeframe", "1m",
                "--since", str(md.first_ts), "--store", str(tmp_path), "--limit", "50",
                "--rest-url", emu.rest_url, "--no-progress"]
        assert cli_main(parser.parse_args(argv)) == 0, capsys.readouterr().err
        assert "BTC/USDT: 200 new bars" in capsys.readouterr().out
    pd.testing.assert_frame_equal(stored(tmp_path, venue), md.frame("BTC/USDT").iloc[:200])


@pytest.mark.parametrize("venue", VENUES)
async def test_one_url_layout_for_downloader_and_daemon(venue: str) -> None:
    """core.exchange knows each venue's URL layout; the daemon's adapters use it, so the
    downloader's client and the daemon's point at the same URLs."""
    from tandem.core.exchange import create_exchange
    from tandem.daemon.client import build_exchange

    rest = {"binance": "http://127.0.0.1:9/api/v3/", "bybit": "http://127.0.0.1:9/v5/",
            "okx": "http://127.0.0.1:9/api/v5/"}[venue]
    ws = "ws://127.0.0.1:9/x/"
    core = create_exchange(venue, flavor="sync", rest_url=rest, ws_url=ws)
    daemon = build_exchange(venue, rest, ws)
    await daemon.close()
    key = "rest" if venue == "okx" else "public"
    want = "http://127.0.0.1:9" + ("/api/v3" if venue == "binance" else "")
    assert core.urls["api"][key] == daemon.urls["api"][key] == want  # ccxt appends the paths
    wss = {"binance": lambda u: u["ws"]["spot"], "bybit": lambda u: u["ws"]["public"]["spot"],
           "okx": lambda u: u["ws"]}[venue]
    assert wss(daemon.urls["api"]) == "ws://127.0.0.1:9/x"
    assert core.options["fetchMarkets"]["types"] == ["spot"]  # no futures hosts on load_markets
    if venue == "bybit":
        assert daemon.urls["api"]["ws"]["public"]["linear"].startswith("wss://")  # others kept
    with pytest.raises(ValueError, match="only defined for binance, bybit, okx, not 'kraken'"):
        create_exchange("kraken", flavor="sync", rest_url=rest)
