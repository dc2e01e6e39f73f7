"""Helpers shared by the daemon's integration tests (no tests here).

The batch reference (:func:`batch_fills`) is composed directly from the core's batch
functions — ``compute_mtf_ratings`` -> ``compute_signals`` -> ``run_batch`` — the way the
backtest drives them, independently of the daemon's per-slice stepper.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
from tandem.core.engine import EngineConfig, run_batch
from tandem.core.manifest import parse_manifest
from tandem.core.mtf import MtfConfig, compute_mtf_ratings, use_htf_mask
from tandem.core.signals import compute_signals
from tandem.daemon.app import Daemon, DaemonConfig
from tandem.daemon.emulator.market import MarketData
from tandem.daemon.replay import run_replay
from tandem.daemon.strategy import stepper_factory

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
WARMUP = 100
TF = "1m"
TF_MS = 60_000


def small_profile(mode: str = "discrete", symbols=SYMBOLS, warmup: int = WARMUP, **over):
    """A small, fast profile: 1m base with a 5m higher timeframe, SL/TP on."""
    prof = {
        "strategy": "rating_all",
        "exchange": "binance",
        "core_assets": list(symbols[:2]),
        "universe": list(symbols),
        "base_timeframe": TF,
        "timeframes": [TF, "5m"],
        "mtf": {"mode": "wide", "weights": {TF: 1.0, "5m": 1.0}},
        "entry_threshold": 0.05,
        "exit_threshold": -0.05,
        "exit_rules": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015, "intrabar": "pessimistic"},
        "execution": {"mode": mode, "fee_rate": 0.001, "slippage_bps": 5.0, "size_pct": 0.2,
                      "min_trade_value": 1.0},
        "portfolio": {"rebalance_every": "5m", "max_weight": 0.4},
        "initial_cash": 10_000.0,
        "warmup_bars": warmup,
    }
    prof.update(over)
    return parse_manifest({"version": 1, "profiles": {"tst": prof}}).profile("tst")


def sample_market(n_tradable: int = 80, seed: int = 11, symbols=SYMBOLS,
                  warmup: int = WARMUP) -> MarketData:
    """Generated 1m candles: warm-up + tradable bars + 3 spare bars."""
    start = 1_700_000_000_000 // 3_600_000 * 3_600_000
    return MarketData.generate(symbols, TF, start=start, n_bars=warmup + n_tradable + 3,
                               seed=seed)


def replay_window(market: MarketData, warmup: int = WARMUP) -> tuple[int, int]:
    """(first tradable bar, end exclusive) used by the tests' replays."""
    t0 = market.first_ts + warmup * TF_MS
    return t0, market.end_ts - 2 * TF_MS


def aligned(market: MarketData, symbols, lo: int, hi: int):
    """Union-aligned arrays of ``market`` for bars ``lo <= ts < hi`` (pandas outer join)."""
    frames = []
    for s in symbols:
        f = market.frame(s)
        f = f[(f["ts"] >= lo) & (f["ts"] < hi)].set_index("ts")
        frames.append(f.add_prefix(f"{s}|"))
    df = pd.concat(frames, axis=1).sort_index()
    ts = df.index.to_numpy(np.int64)
    cols = {k: np.column_stack([df[f"{s}|{k}"].to_numpy(np.float64) for s in symbols])
            for k in ("open", "high", "low", "close", "volume")}
    return ts, cols


def batch_fills(profile, market: MarketData, t0: int, end_ts: int) -> pd.DataFrame:
    """The engine's batch run over the same candles: warm-up bars seed the ratings, the
    engine runs from ``t0`` (inclusive) to ``end_ts`` (exclusive)."""
    return batch_run(profile, market, t0, end_ts)[0].fills


def batch_run(profile, market: MarketData, t0: int, end_ts: int):
    """:func:`batch_fills`' whole run: ``(BatchResult, ts_close, engine input signal)``."""
    syms = profile.assets
    ts, c = aligned(market, syms, t0 - profile.warmup * TF_MS, end_ts)
    ratings, _ = compute_mtf_ratings(MtfConfig.from_profile(profile), ts, c["open"], c["high"],
                                     c["low"], c["close"], c["volume"], use_htf_mask(profile))
    tr = ts >= t0
    ts_close = ts[tr] + TF_MS
    sig = compute_signals(profile, ratings[tr], ts_close)
    signal = sig.target if profile.execution.mode == "portfolio" else sig.signal
    res = run_batch(EngineConfig(**profile.engine_params()), ts_close, c["open"][tr],
                    c["high"][tr], c["low"][tr], c["close"][tr], signal, symbols=syms,
                    profile=profile.name, run_id="batch")
    return res, ts_close, signal


def assert_journal_equal(paper: pd.DataFrame, batch: pd.DataFrame) -> None:
    """Every journal column but ``source``/``run_id`` equal, bit for bit."""
    cols = [c for c in batch.columns if c not in ("source", "run_id")]
    a = paper[cols].reset_index(drop=True)
    b = batch[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True, check_dtype=False)


def assert_candles_exactly_once(db: Path, market: MarketData, symbols, lo: int, hi: int) -> None:
    """The engine consumed every bar in ``[lo, hi)`` of every asset once, with the exchange's
    values, and stepped the slices strictly in time order."""
    con = sqlite3.connect(str(db))
    try:
        got = pd.read_sql_query(
            "SELECT symbol, ts, open, high, low, close, volume FROM candles "
            "WHERE ts >= ? AND ts < ? ORDER BY symbol, ts", con, params=(lo, hi))
        slices = [r[0] for r in con.execute("SELECT ts FROM slices ORDER BY committed_at, ts")]
        late = con.execute("SELECT COUNT(*) FROM late").fetchone()[0]
    finally:
        con.close()
    want = []
    for s in symbols:
        f = market.frame(s)
        f = f[(f["ts"] >= lo) & (f["ts"] < hi)].copy()
        f.insert(0, "symbol", s)
        want.append(f)
    want = pd.concat(want).sort_values(["symbol", "ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want[got.columns],
                                  check_exact=True, check_dtype=False)
    assert slices == sorted(slices) and len(slices) == len(set(slices))
    assert late == 0


def make_daemon(profile, db: Path, **cfg) -> Daemon:
    """A daemon for ``profile`` (endpoints are filled in by ``run_replay``)."""
    base = dict(
        profile_name=profile.name, profile_json=profile.canonical_json(),
        symbols=profile.assets, exchange_id="binance", base_timeframe=TF, tf_ms=TF_MS,
        warmup_bars=profile.warmup, state_db=db, grace_s=20.0, watchdog_s=3.0,
        heartbeat_every_s=3600.0, rest_timeout_ms=2000,
    )
    base.update(cfg)
    return Daemon(DaemonConfig(**base), stepper_factory(profile))


async def replay(profile, market: MarketData, db: Path, *, on_bar=None, **cfg) -> Daemon:
    """Fast replay of ``market`` through the emulator and the real ccxt.pro client."""
    t0, end = replay_window(market, profile.warmup)
    daemon = make_daemon(profile, db, **cfg)
    # A bar not delivered within 2 s: move the clock on, as the exchange would (stalling the
    # virtual clock only lengthens the watchdog/resubscription dance, never changes results).
    await run_replay(daemon, market, t0, end, on_bar=on_bar, bar_timeout_s=2.0)
    return daemon
