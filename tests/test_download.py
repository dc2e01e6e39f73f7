"""Download: paginated, incremental, closed bars only, retried; against the emulator's REST.

The expected candles are the emulator's source data (generated, or the real CSV files);
request patterns are checked on the emulator's request log.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.download import DownloadError, download, download_async
from tandem.core.exchange import create_exchange
from tandem.core.store import CandleStore, CsvFolderSource
from tandem.daemon.emulator import Emulator, MarketData

from tests.emulator_fixtures import emulator_in_thread, run_in

M = 60_000


def kline_starts(emu: Emulator, since_index: int = 0) -> list[int]:
    return [int(q["startTime"]) for p, q in emu.rest_log[since_index:] if p.endswith("/klines")]


@pytest.fixture
def md() -> MarketData:
    return MarketData.generate(["BTC/USDT", "ETH/USDT"], "1m", n_bars=2600, seed=11)


def assert_store_equals_source(store: CandleStore, md: MarketData, symbol: str, n: int) -> None:
    got = store.read(symbol, timeframe=md.timeframe)
    pd.testing.assert_frame_equal(got, md.frame(symbol).iloc[:n].reset_index(drop=True))


async def test_paginated_download_drops_forming_bar_then_resumes(
    md: MarketData, emulator_factory, tmp_path: Path
) -> None:
    emu = await emulator_factory(md, start=md.first_ts + 2400 * M + 20_000)  # bar 2400 forming
    store = CandleStore(tmp_path, timeframe="1m")
    added = await download_async("binance", ["BTC/USDT", "ETH/USDT"], "1m", md.first_ts, store,
                                 progress=False, rest_url=emu.rest_url)
    assert added == {"BTC/USDT": 2400, "ETH/USDT": 2400}
    for sym in md.symbols:
        assert_store_equals_source(store, md, sym, 2400)
    ts = md.ts["BTC/USDT"]
    # 1000-bar pages; the third page ends with the forming bar, which ends the symbol
    assert kline_starts(emu)[:3] == [ts[0], ts[1000], ts[2000]]
    assert len(kline_starts(emu)) == 6
    # incremental: 150 more bars close, the next run asks only for them
    await emu.advance_to(md.first_ts + 2550 * M)
    mark = len(emu.rest_log)
    added = await download_async("binance", ["BTC/USDT"], "1m", md.first_ts, store,
                                 progress=False, rest_url=emu.rest_url)
    assert added == {"BTC/USDT": 150}
    assert kline_starts(emu, mark) == [ts[2400]]
    assert_store_equals_source(store, md, "BTC/USDT", 2550)


async def test_interrupted_download_resumes_without_duplicates(
    md: MarketData, emulator_factory, tmp_path: Path
) -> None:
    emu = await emulator_factory(md, start=md.end_ts)
    store = CandleStore(tmp_path, timeframe="1m")

    def crash_after_first_page(symbol: str, rows: list) -> None:
        raise KeyboardInterrupt  # like Ctrl-C between two pages

    with pytest.raises(KeyboardInterrupt):
        await download_async("binance", ["ETH/USDT"], "1m", md.first_ts, store, progress=False,
                             rest_url=emu.rest_url, on_page=crash_after_first_page)
    assert store.last_ts("ETH/USDT", timeframe="1m") == md.ts["ETH/USDT"][999]
    mark = len(emu.rest_log)
    added = await download_async("binance", ["ETH/USDT"], "1m", md.first_ts, store,
                                 progress=False, rest_url=emu.rest_url)
    assert added == {"ETH/USDT": 1600}
    assert kline_starts(emu, mark)[0] == md.ts["ETH/USDT"][1000]
    assert_store_equals_source(store, md, "ETH/USDT", 2600)  # every bar once, in order


async def test_5xx_and_timeouts_are_retried(md: MarketData, emulator_factory, tmp_path: Path) -> None:
    emu = await emulator_factory(md, start=md.first_ts + 1500 * M)
    store = CandleStore(tmp_path, timeframe="1m")
    client = create_exchange("binance", flavor="async", rest_url=emu.rest_url, timeout_ms=300)
    try:
        emu.fail_rest(count=2, status=503)
        emu.stall_rest(count=1, seconds=0.6)
        added = await download_async(client, ["BTC/USDT"], "1m", md.first_ts, store,
                                     progress=False, retry_delay=0.01)
    finally:
        await client.close()
    assert added == {"BTC/USDT": 1500} and emu.faults.pending() == 0
    starts = kline_starts(emu)
    assert starts[:4] == [md.ts["BTC/USDT"][0]] * 4  # 2 × 503 + 1 timeout, then success
    assert_store_equals_source(store, md, "BTC/USDT", 1500)


async def test_retry_budget_exhausted_is_a_clear_error_and_resumable(
    md: MarketData, emulator_factory, tmp_path: Path
) -> None:
    emu = await emulator_factory(md, start=md.first_ts + 1200 * M)
    store = CandleStore(tmp_path, timeframe="1m")
    client = create_exchange("binance", flavor="async", rest_url=emu.rest_url)
    try:
        await client.load_markets()
        await download_async(client, ["BTC/USDT"], "1m", md.first_ts, store, progress=False,
                             until=md.first_ts + 500 * M)
        emu.fail_rest(count=3, status=500)
        with pytest.raises(DownloadError, match="re-run to resume"):
            await download_async(client, ["BTC/USDT"], "1m", md.first_ts, store, progress=False,
                                 max_retries=2, retry_delay=0.01)
        added = await download_async(client, ["BTC/USDT"], "1m", md.first_ts, store, progress=False)
    finally:
        await client.close()
    assert added == {"BTC/USDT": 700}
    assert_store_equals_source(store, md, "BTC/USDT", 1200)


async def test_until_is_exclusive_and_rate_limit_is_respected(
    md: MarketData, emulator_factory, tmp_path: Path
) -> None:
    emu = await emulator_factory(md, start=md.end_ts)
    store = CandleStore(tmp_path, timeframe="1m")
    client = create_exchange("binance", flavor="async", rest_url=emu.rest_url,
                             enable_rate_limit=False, extra={"rateLimit": 150})
    try:
        t0 = time.monotonic()
        added = await download_async(client, ["ETH/USDT"], "1m", md.ts["ETH/USDT"][100], store,
                                     until=md.ts["ETH/USDT"][2350], progress=False, limit=500)
        elapsed = time.monotonic() - t0
    finally:
        await client.close()
    assert added == {"ETH/USDT": 2250}
    got = store.read("ETH/USDT", timeframe="1m")
    assert got["ts"].iloc[0] == md.ts["ETH/USDT"][100] and got["ts"].iloc[-1] == md.ts["ETH/USDT"][2349]
    # exchangeInfo + time + 5 pages: forced enableRateLimit spaces them >= rateLimit
    assert len(emu.rest_log) == 7 and elapsed >= 0.15 * 5


async def test_unknown_symbol_and_missing_since(md: MarketData, emulator, tmp_path: Path) -> None:
    store = CandleStore(tmp_path, timeframe="1m")
    with pytest.raises(DownloadError, match="no market DOGE/USDT"):
        await download_async("binance", ["DOGE/USDT"], "1m", 0, store, rest_url=emulator.rest_url)
    with pytest.raises(DownloadError, match="since"):
        await download_async("binance", ["BTC/USDT"], "1m", None, store, rest_url=emulator.rest_url)


def test_blocking_download_with_progress_bar(md: MarketData, tmp_path: Path, capsys) -> None:
    with emulator_in_thread(md, start=md.first_ts) as emu:
        run_in(emu, emu.advance(1300))
        added = download("binance", ["BTC/USDT"], "1m", md.first_ts, tmp_path, progress=True,
                         rest_url=emu.rest_url)
    assert added == {"BTC/USDT": 1300}
    assert "BTC/USDT" in capsys.readouterr().err  # tqdm writes to stderr
    store = CandleStore(tmp_path, exchange="binance", timeframe="1m")
    assert_store_equals_source(store, md, "BTC/USDT", 1300)


async def test_real_candles_with_gaps_roundtrip(shared_data: Path, emulator_factory, tmp_path: Path) -> None:
    src = CsvFolderSource(shared_data, exchange="binance")
    frame = src.read("XRP/USDT", timeframe="1h")
    real = MarketData.from_frames({"XRP/USDT": frame}, "1h")
    emu = await emulator_factory(real, start=real.end_ts + 1)
    store = CandleStore(tmp_path, timeframe="1h")
    added = await download_async("binance", ["XRP/USDT"], "1h", "2020-01-01", store,
                                 progress=False, rest_url=emu.rest_url)
    assert added == {"XRP/USDT": len(frame)}
    got = store.read("XRP/USDT")
    pd.testing.assert_frame_equal(got, frame)  # bit-identical floats, the 6 gaps kept as gaps
    assert (np.diff(got["ts"].to_numpy()) > 3_600_000).sum() == 6


def test_download_command_line(md: MarketData, tmp_path: Path, capsys) -> None:
    import argparse

    from tandem.backtest.download_cli import DOWNLOAD_DESCRIPTION, add_download_arguments, cli_main

    parser = argparse.ArgumentParser(description=DOWNLOAD_DESCRIPTION)
    add_download_arguments(parser)
    with emulator_in_thread(md, start=md.first_ts + 700 * M + 1) as emu:
        argv = ["--symbols", "BTC/USDT,ETH/USDT", "--timeframe", "1m", "--since", str(md.first_ts),
                "--store", str(tmp_path), "--rest-url", emu.rest_url, "--no-progress"]
        assert cli_main(parser.parse_args(argv)) == 0
        assert "BTC/USDT: 700 new bars" in capsys.readouterr().out
        assert cli_main(parser.parse_args(argv)) == 0  # nothing new: resumes at the end
        assert "ETH/USDT: 0 new bars" in capsys.readouterr().out
        bad = parser.parse_args([*argv[:1], "NOPE/USDT", *argv[2:]])
        assert cli_main(bad) == 1
        assert "no market NOPE/USDT" in capsys.readouterr().err
    store = CandleStore(tmp_path, timeframe="1m")
    assert store.symbols() == ["BTC/USDT", "ETH/USDT"]
    assert_store_equals_source(store, md, "ETH/USDT", 700)


def test_tandem_backtest_download_subcommand(md: MarketData, tmp_path: Path, monkeypatch, capsys) -> None:
    """The real ``tandem-backtest download`` entry point, endpoint taken from settings."""
    cli = pytest.importorskip("tandem.backtest.cli")
    with emulator_in_thread(md, start=md.first_ts + 250 * M) as emu:
        monkeypatch.setenv("TANDEM_EXCHANGE_REST_URL", emu.rest_url)
        code = cli.main(["download", "--symbols", "ETH/USDT,BTC/USDT", "--timeframe", "1m",
                         "--since", "2023-11-14", "--data", str(tmp_path)])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "ETH/USDT: 250 new bars" in out.out
        code = cli.main(["download", "--symbols", "DOGE/USDT", "--timeframe", "1m",
                         "--since", "2023-11-14", "--data", str(tmp_path)])
        assert code != 0 and "no market DOGE/USDT" in capsys.readouterr().err
    store = CandleStore(tmp_path, timeframe="1m")
    assert store.symbols() == ["BTC/USDT", "ETH/USDT"]
    assert_store_equals_source(store, md, "BTC/USDT", 250)


def test_download_what_a_profile_trades(md: MarketData, tmp_path: Path, monkeypatch, capsys) -> None:
    """``download --profile``: the profile's assets, exchange and base timeframe (they had to
    be typed again: ``--exchange`` defaulted to binance whatever the profile traded); the
    store root from a ``.env`` (it read only the environment, unlike ``run``)."""
    import json

    from tandem.backtest import cli

    prof = {"strategy": "rating_all", "exchange": "binance", "core_assets": ["BTC/USDT"],
            "universe": ["ETH/USDT"], "base_timeframe": "1m", "timeframes": ["1m", "5m"]}
    (tmp_path / "m.json").write_text(json.dumps({"version": 1, "profiles": {"p1m": prof}}))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"TANDEM_DATA_DIR={tmp_path / 'store'}\n")
    with emulator_in_thread(md, start=md.first_ts + 300 * M) as emu:
        base = ["download", "--manifest", "m.json", "--since", str(md.first_ts),
                "--rest-url", emu.rest_url, "--no-progress"]
        assert cli.main([*base, "--profile", "p1m"]) == 0, capsys.readouterr().err
        assert "ETH/USDT: 300 new bars" in capsys.readouterr().out
        assert cli.main([*base, "--profile", "p1m", "--exchange", "okx"]) == 2
        assert "profile 'p1m' trades on binance" in capsys.readouterr().err
        assert cli.main([*base, "--profile", "nope"]) == 2
        assert "nope" in capsys.readouterr().err
        assert cli.main(["download", "--since", str(md.first_ts)]) == 2
        assert "use --symbols or --profile" in capsys.readouterr().err
    store = CandleStore(tmp_path / "store", timeframe="1m")
    assert store.symbols() == ["BTC/USDT", "ETH/USDT"]
    assert_store_equals_source(store, md, "BTC/USDT", 300)
