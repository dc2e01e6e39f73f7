"""The README's user journey on Bybit and OKX, CLI by CLI, against the venue's emulator on
127.0.0.1: ``download --exchange V --rest-url`` -> ``run --data <store>`` -> ``tandem-daemon
replay`` -> ``reconcile --history <store>`` -> ``run --candles-from <state db>``.

The store also holds a decoy ``binance`` folder with other prices (a user who first followed
the Binance examples has one): every step must read the profile's venue folder, never
Binance's, or the numbers are silently someone else's.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from tandem.backtest.cli import main as backtest_main
from tandem.core.store import CandleStore
from tandem.daemon.emulator import MarketData
from tandem.daemon.replay import emulator_class

from tests.emulator_fixtures import emulator_in_thread

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
WARMUP = 30
START = 1_700_000_000_000 // 3_600_000 * 3_600_000


def _manifest(tmp_path: Path, venue: str, base: str = "1m", htf: str = "5m") -> Path:
    prof = {
        "strategy": "rating_all", "exchange": venue, "core_assets": SYMBOLS[:2],
        "universe": SYMBOLS, "base_timeframe": base, "timeframes": [base, htf],
        "mtf": {"mode": "wide", "weights": {base: 1.0, htf: 1.0}},
        "entry_threshold": 0.05, "exit_threshold": -0.05,
        "exit_rules": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015,
                       "intrabar": "pessimistic"},
        "execution": {"mode": "discrete", "fee_rate": 0.001, "slippage_bps": 5.0,
                      "size_pct": 0.2, "min_trade_value": 1.0},
        "portfolio": {"rebalance_every": htf, "max_weight": 0.4},
        "initial_cash": 10_000.0, "warmup_bars": WARMUP,
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "profiles": {"p": prof}}))
    return path


def _decoy_binance(store: Path, market: MarketData) -> None:
    """Same bar times, doubled prices, under <store>/binance: reading it is never right here."""
    decoy = CandleStore(store, exchange="binance", timeframe=market.timeframe)
    for sym in SYMBOLS:
        ohlcv = market.ohlcv[sym].copy()
        ohlcv[:, :4] *= 2.0
        decoy.append(sym, np.column_stack([market.ts[sym].astype(np.float64), ohlcv]))


def _to_closed_pipe(fn):
    """``fn()`` with stdout (fd 1 and sys.stdout) a pipe whose reader has gone."""
    import os
    import sys

    r, w = os.pipe()
    os.close(r)
    saved_fd, saved_stdout = os.dup(1), sys.stdout
    os.dup2(w, 1)
    os.close(w)
    try:
        with open(1, "w", closefd=False) as out:
            sys.stdout = out
            return fn()
    finally:
        sys.stdout = saved_stdout
        os.dup2(saved_fd, 1)
        os.close(saved_fd)


def _fingerprint(run_dir: Path) -> str:
    return json.loads((run_dir / "stats.json").read_text())["run_fingerprint"]


@pytest.mark.parametrize(("venue", "base", "htf"), [
    ("bybit", "1m", "5m"), ("okx", "1m", "5m"),
    # OKX days: downloaded as bar=1Dutc and streamed as candle1Dutc (its plain 1D opens at
    # 16:00 UTC): the same 00:00 UTC bars on both paths, and weeks from Monday
    ("okx", "1d", "1w")])
def test_download_run_replay_reconcile_agree(venue, base, htf, tmp_path, monkeypatch, capsys):
    from tandem.backtest.reconcile.api import reconcile
    from tandem.daemon.cli import main as daemon_main

    monkeypatch.chdir(tmp_path)  # no stray .env / ./data of the caller
    start = START // 86_400_000 * 86_400_000
    market = MarketData.generate(SYMBOLS, base, start=start, n_bars=WARMUP + 150, seed=5)
    store, manifest = tmp_path / "store", _manifest(tmp_path, venue, base, htf)
    _decoy_binance(store, market)
    # 1. download every closed bar from the venue's emulator (clock past the last bar)
    with emulator_in_thread(market, emulator_cls=emulator_class(venue),
                            start=market.end_ts + 1_000) as emu:
        assert backtest_main(["download", "--exchange", venue, "--rest-url", emu.rest_url,
                              "--symbols", ",".join(SYMBOLS), "--timeframe", base,
                              "--since", str(market.first_ts), "--data", str(store),
                              "--no-progress"]) == 0
    got = CandleStore(store, exchange=venue, timeframe=base).read("BTC/USDT")
    assert got["ts"].astype("int64").tolist() == market.ts["BTC/USDT"].tolist()
    if base == "1d":
        assert all(t % 86_400_000 == 0 for t in got["ts"].astype("int64"))  # 00:00 UTC
    assert np.allclose(got["close"], market.ohlcv["BTC/USDT"][:, 3])
    # 2. backtest the venue's folder; 3. replay it through the venue's wire protocol
    common = ["--manifest", str(manifest), "--profile", "p"]
    bt, db = tmp_path / "bt", tmp_path / "paper.sqlite"
    assert backtest_main(["run", *common, "--data", str(store), "--out", str(bt),
                          "--no-report"]) == 0
    assert json.loads((bt / "stats.json").read_text())["n_fills"] > 0, "must trade"
    assert daemon_main(["replay", *common, "--data", str(store), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert f"fingerprint run={_fingerprint(bt)[:12]}" in out  # replay == backtest
    # 4. reconcile: same fills, and the daemon's candles equal the venue's history (the
    # decoy's doubled prices listed every bar as "differs" when binance/ was read)
    report = reconcile(db, bt, history=store)
    assert report.ok and not len(report.differences)
    assert report.events.empty, report.events.head()
    assert backtest_main(["reconcile", "--paper", str(db), "--backtest", str(bt),
                          "--history", str(store), "--out", str(tmp_path / "rec")]) == 0
    # ... also as `reconcile ... | head -1` (the reader gone): was a BrokenPipeError traceback
    assert _to_closed_pipe(lambda: backtest_main(
        ["reconcile", "--paper", str(db), "--backtest", str(bt), "--history", str(store),
         "--out", str(tmp_path / "rec2")])) == 0
    assert (tmp_path / "rec2" / "reconcile.html").is_file()
    # 5. backtest exactly the candles the daemon consumed
    cf = tmp_path / "cf"
    t0 = json.loads((bt / "stats.json").read_text())["first_tradable_bar"]
    assert backtest_main(["run", *common, "--candles-from", str(db), "--from", str(t0),
                          "--out", str(cf), "--no-report"]) == 0
    assert _fingerprint(cf) == _fingerprint(bt)


@pytest.mark.parametrize("venue", ["bybit", "okx"])
def test_standalone_emulator_serves_the_protocols_store_folder(venue, tmp_path):
    """``python -m tandem.daemon.emulator --data <store> --protocol bybit`` read
    <store>/binance (its --exchange defaulted to binance): an error on a bybit-only store,
    Binance's prices over Bybit's wire where both folders exist."""
    from tandem.daemon.emulator.__main__ import build_parser, load_market

    market = MarketData.generate(SYMBOLS[:1], "1m", start=START, n_bars=40, seed=2)
    store = tmp_path / "store"
    venue_store = CandleStore(store, exchange=venue, timeframe="1m")
    venue_store.append(SYMBOLS[0], np.column_stack(
        [market.ts[SYMBOLS[0]].astype(np.float64), market.ohlcv[SYMBOLS[0]]]))
    decoy = CandleStore(store, exchange="binance", timeframe="1m")
    decoy.append(SYMBOLS[0], np.column_stack(
        [market.ts[SYMBOLS[0]].astype(np.float64), market.ohlcv[SYMBOLS[0]] * 2.0]))
    args = build_parser().parse_args(["--data", str(store), "--symbols", SYMBOLS[0],
                                      "--timeframe", "1m", "--protocol", venue])
    served = load_market(args)
    assert np.allclose(served.ohlcv[SYMBOLS[0]][:, 3], market.ohlcv[SYMBOLS[0]][:, 3])
    # an explicit --exchange still wins (e.g. Binance candles played over Bybit's wire)
    args = build_parser().parse_args(["--data", str(store), "--symbols", SYMBOLS[0],
                                      "--timeframe", "1m", "--protocol", venue,
                                      "--exchange", "binance"])
    assert np.allclose(load_market(args).ohlcv[SYMBOLS[0]][:, 3],
                       2.0 * market.ohlcv[SYMBOLS[0]][:, 3])


@pytest.mark.parametrize("stale", [False, True])
async def test_daemon_warmup_saves_only_a_tail_that_continues_the_store(stale, tmp_path):
    """TANDEM_DATA_DIR on Bybit: the warm-up reads <data>/bybit and stores the REST tail it
    fetched. A store older than the warm-up window got that window appended after a hole
    (04:59 -> 05:06 in a manual run) that `download` never fills, as it resumes after the
    last stored bar: backtests over the store then silently lacked those bars."""
    from tandem.daemon.replay import run_replay
    from tandem.daemon.state import StateStore

    from tests.test_daemon_support import (
        TF_MS,
        assert_journal_equal,
        batch_fills,
        make_daemon,
        replay_window,
        sample_market,
        small_profile,
    )

    profile = small_profile(exchange="bybit")
    # 40 bars older than the warm-up window, where a stale download ends
    market = sample_market(n_tradable=20, warmup=profile.warmup + 40)
    t0, end = replay_window(market, profile.warmup + 40)
    lo = t0 - profile.warmup * TF_MS
    stop = lo - 10 * TF_MS if stale else t0 - 30 * TF_MS  # stale: ends before the warm-up
    store = CandleStore(tmp_path / "data", exchange="bybit", timeframe="1m")
    for s in profile.assets:
        f = market.frame(s)
        store.append(s, f[f["ts"] < stop])
    db = tmp_path / "d.sqlite"
    # no candle_store_exchange: the store's venue folder follows exchange_id
    daemon = make_daemon(profile, db, exchange_id="bybit", candle_store=tmp_path / "data")
    await run_replay(daemon, market, t0, end, bar_timeout_s=2.0)
    with StateStore(db) as st:
        assert_journal_equal(st.fills_frame(), batch_fills(profile, market, t0, end))
    await asyncio.sleep(0.1)  # the save runs in a worker thread
    for s in profile.assets:
        ts = store.read(s)["ts"].astype("int64").to_numpy()
        assert (np.diff(ts) == TF_MS).all(), f"{s}: a hole in the store"
        if stale:  # left as it was: the next download continues it without a hole
            assert ts[-1] == stop - TF_MS
        else:  # the warm-up's REST tail (and the bars up to the replay's start) stored
            assert ts[-1] >= t0 - TF_MS
    assert not (tmp_path / "data" / "binance").exists()
    assert all(f.from_store > 0 for f in daemon.supervisor.feeds) != stale


@pytest.mark.parametrize("given", ["rest", "ws"])
def test_run_refuses_one_endpoint_without_the_other(given, tmp_path, monkeypatch, capsys):
    """``tandem-daemon run --rest-url <emulator>`` alone backfilled from the emulator and
    streamed from the real venue (stream.bybit.com), trading on over REST polling: two
    markets mixed. Now exit 2, one line naming both settings, before anything is written."""
    from tandem.daemon.cli import main as daemon_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANDEM_HTTP_ENABLED", "false")
    for var in ("TANDEM_EXCHANGE_REST_URL", "TANDEM_EXCHANGE_WS_URL"):
        monkeypatch.delenv(var, raising=False)
    if given == "rest":
        opts = ["--rest-url", "http://127.0.0.1:9"]
    else:  # the setting alone, as a .env would give it
        monkeypatch.setenv("TANDEM_EXCHANGE_WS_URL", "ws://127.0.0.1:9/v5/public/spot")
        opts = []
    db = tmp_path / "s.sqlite"
    code = daemon_main(["run", "--manifest", str(_manifest(tmp_path, "bybit")), "--profile",
                        "p", "--db", str(db), *opts])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "TANDEM_EXCHANGE_REST_URL" in lines[0] and "TANDEM_EXCHANGE_WS_URL" in lines[0]
    assert not db.exists()


def test_universe_file_of_another_venue_is_refused(tmp_path, monkeypatch, capsys):
    """``--data binance_USDT_1m_universe.parquet`` with a bybit profile backtested (and
    replayed) Binance's candles, exit 0: the store folder and CSV names are per venue, a
    universe file was read whatever its name said. Now exit 1 naming both venues; a file
    named for the profile's venue (or for none) still reads."""
    import pandas as pd
    from tandem.daemon.cli import main as daemon_main

    monkeypatch.chdir(tmp_path)
    market = MarketData.generate(SYMBOLS, "1m", start=START, n_bars=WARMUP + 40, seed=5)
    frame = pd.concat([market.frame(s).assign(symbol=s) for s in SYMBOLS])
    common = ["--manifest", str(_manifest(tmp_path, "bybit")), "--profile", "p"]
    for name, code in [("binance_USDT_1m_universe.parquet", 1),
                       ("bybit_USDT_1m_universe.parquet", 0), ("my_1m_universe.parquet", 0)]:
        frame.to_parquet(tmp_path / name, index=False)
        got = backtest_main(["run", *common, "--data", str(tmp_path / name), "--no-report",
                             "--out", str(tmp_path / name.split("_")[0])])
        err = capsys.readouterr().err
        assert got == code, err
        if code:
            line = err.strip().splitlines()[-1]
            assert line.startswith("error: ") and "binance" in line and "bybit" in line
            assert daemon_main(["replay", *common, "--data", str(tmp_path / name),
                                "--db", str(tmp_path / "r.sqlite")]) == 1
            assert "says binance candles" in capsys.readouterr().err
