"""The README's user journey on Bybit and OKX, CLI by CLI, against the venue's emulator on
127.0.0.1: ``download --exchange V --rest-url`` -> ``run --data <store>`` -> ``tandem-daemon
replay`` -> ``reconcile --history <store>`` -> ``run --candles-from <state db>``.

The store also holds a decoy ``binance`` folder with other prices (a user who first followed
the Binance examples has one): every step must read the profile's venue folder, never
Binance's, or the numbers are silently someone else's.
"""

from __future__ import annotations

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


def _manifest(tmp_path: Path, venue: str) -> Path:
    prof = {
        "strategy": "rating_all", "exchange": venue, "core_assets": SYMBOLS[:2],
        "universe": SYMBOLS, "base_timeframe": "1m", "timeframes": ["1m", "5m"],
        "mtf": {"mode": "wide", "weights": {"1m": 1.0, "5m": 1.0}},
        "entry_threshold": 0.05, "exit_threshold": -0.05,
        "exit_rules": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015,
                       "intrabar": "pessimistic"},
        "execution": {"mode": "discrete", "fee_rate": 0.001, "slippage_bps": 5.0,
                      "size_pct": 0.2, "min_trade_value": 1.0},
        "portfolio": {"rebalance_every": "5m", "max_weight": 0.4},
        "initial_cash": 10_000.0, "warmup_bars": WARMUP,
    }
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "profiles": {"p": prof}}))
    return path


def _decoy_binance(store: Path, market: MarketData) -> None:
    """Same bar times, doubled prices, under <store>/binance: reading it is never right here."""
    decoy = CandleStore(store, exchange="binance", timeframe="1m")
    for sym in SYMBOLS:
        ohlcv = market.ohlcv[sym].copy()
        ohlcv[:, :4] *= 2.0
        decoy.append(sym, np.column_stack([market.ts[sym].astype(np.float64), ohlcv]))


def _fingerprint(run_dir: Path) -> str:
    return json.loads((run_dir / "stats.json").read_text())["run_fingerprint"]


@pytest.mark.parametrize("venue", ["bybit", "okx"])
def test_download_run_replay_reconcile_agree(venue, tmp_path, monkeypatch, capsys):
    from tandem.backtest.reconcile.api import reconcile
    from tandem.daemon.cli import main as daemon_main

    monkeypatch.chdir(tmp_path)  # no stray .env / ./data of the caller
    market = MarketData.generate(SYMBOLS, "1m", start=START, n_bars=WARMUP + 150, seed=5)
    store, manifest = tmp_path / "store", _manifest(tmp_path, venue)
    _decoy_binance(store, market)
    # 1. download every closed bar from the venue's emulator (clock past the last bar)
    with emulator_in_thread(market, emulator_cls=emulator_class(venue),
                            start=market.end_ts + 1_000) as emu:
        assert backtest_main(["download", "--exchange", venue, "--rest-url", emu.rest_url,
                              "--symbols", ",".join(SYMBOLS), "--timeframe", "1m",
                              "--since", str(market.first_ts), "--data", str(store),
                              "--no-progress"]) == 0
    got = CandleStore(store, exchange=venue, timeframe="1m").read("BTC/USDT")
    assert got["ts"].astype("int64").tolist() == market.ts["BTC/USDT"].tolist()
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
