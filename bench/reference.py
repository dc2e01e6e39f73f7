"""The reference job: Tandem's backtest done "by hand", one job per process.

What a user would write without Tandem: pandas ``resample`` for 4h/1d, TA-Lib for every
indicator, NumPy for the 26 votes and ratings (TradingView's rating_all, RATINGS.md), HTF
values shifted to their close and forward-filled, the weighted score, then
``vectorbt.Portfolio.from_signals`` with ``sl_stop``/``tp_stop`` and cash sharing (each entry
buys 10 % of the *initial* cash, skipped when cash is short: vectorbt's from_signals cannot
size by current equity, which Tandem's engine does). Profile: ``crypto_rating_all`` of
``manifest.json`` (weights, thresholds, SL/TP, fee, slippage, size).

As a script it is the whole job in one process, for whole-process timings next to
``tandem-backtest run`` (``bench/commands.py --versus``): read the first ``--assets``
complete pairs of a long-format universe Parquet, compute, print orders and final value.
:mod:`bench/backtest.py` calls :func:`reference_job` in-process on its generated candles.

    .venv/bin/python bench/reference.py --data ../shared/data/binance_USDT_1h_universe.parquet
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TF_RULE = {"1h": "1h", "4h": "4h", "1d": "1D"}  # pandas spelling of our timeframes
AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}


def _sign_vote(c: np.ndarray, ma: np.ndarray) -> np.ndarray:
    out = np.sign(c - ma)
    out[np.isnan(ma)] = np.nan
    return out


def _vote(guard: np.ndarray, bull: np.ndarray, bear: np.ndarray) -> np.ndarray:
    out = np.where(bull, 1.0, np.where(bear, -1.0, 0.0))
    out[np.isnan(guard)] = np.nan
    return out


def _prev(x: np.ndarray, k: int = 1) -> np.ndarray:
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def talib_rating_all(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """TradingView's rating_all (RATINGS.md) from TA-Lib indicators and NumPy votes."""
    import talib

    with np.errstate(invalid="ignore", divide="ignore"):
        ma = []
        for n in (10, 20, 30, 50, 100, 200):
            ma.append(_sign_vote(c, talib.SMA(c, n)))
            ma.append(_sign_vote(c, talib.EMA(c, n)))
        ma.append(_sign_vote(c, talib.WMA(2 * talib.WMA(c, 4) - talib.WMA(c, 9), 3)))
        ma.append(_sign_vote(c, talib.SMA(c * v, 20) / talib.SMA(v, 20)))
        con = (talib.MAX(h, 9) + talib.MIN(lo, 9)) / 2
        base = (talib.MAX(h, 26) + talib.MIN(lo, 26)) / 2
        lead1 = (con + base) / 2
        lead2 = (talib.MAX(h, 52) + talib.MIN(lo, 52)) / 2
        l1, l2 = _prev(lead1, 26), _prev(lead2, 26)
        ma.append(
            _vote(
                lead2,
                (l1 > l2) & (base > l1) & (con > base) & (c > con),
                (l1 < l2) & (base < l1) & (con < base) & (c < con),
            )
        )

        rsi = talib.RSI(c, 14)
        k, d = talib.STOCH(h, lo, c, 14, 3, 0, 3, 0)
        cci = talib.CCI(c, c, c, 20)
        adx, pdi, mdi = (
            talib.ADX(h, lo, c, 14),
            talib.PLUS_DI(h, lo, c, 14),
            talib.MINUS_DI(h, lo, c, 14),
        )
        hl2 = (h + lo) / 2
        ao = talib.SMA(hl2, 5) - talib.SMA(hl2, 34)
        mom = talib.MOM(c, 10)
        macd, sig, _ = talib.MACD(c, 12, 26, 9)
        _, srk = talib.STOCHRSI(c, 14, 14, 3, 0)  # fastd = TradingView's k
        srd = talib.SMA(srk, 3)
        wr = talib.WILLR(h, lo, c, 14)
        ema13 = talib.EMA(c, 13)
        bull_p, bear_p = h - ema13, lo - ema13
        trend = talib.EMA(c, 50)
        up, down = c > trend, c < trend
        uo = talib.ULTOSC(h, lo, c, 7, 14, 28)
        p = _prev
        osc = [
            _vote(p(rsi), (rsi < 30) & (rsi > p(rsi)), (rsi > 70) & (rsi < p(rsi))),
            _vote(p(d), (k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d)),
            _vote(p(cci), (cci < -100) & (cci > p(cci)), (cci > 100) & (cci < p(cci))),
            _vote(
                adx,
                (adx > 20) & (adx > p(adx)) & (pdi > mdi),
                (adx > 20) & (adx > p(adx)) & (pdi < mdi),
            ),
            _vote(
                p(ao),
                ((ao > 0) & (p(ao) <= 0))
                | ((ao > 0) & (p(ao) > 0) & (ao > p(ao)) & (p(ao, 2) > p(ao))),
                ((ao < 0) & (p(ao) >= 0))
                | ((ao < 0) & (p(ao) < 0) & (ao < p(ao)) & (p(ao, 2) < p(ao))),
            ),
            _vote(p(mom), mom > p(mom), mom < p(mom)),
            _vote(sig, macd > sig, macd < sig),
            _vote(
                trend,
                down & (srk < 20) & (srd < 20) & (srk > srd),
                up & (srk > 80) & (srd > 80) & (srk < srd),
            ),
            _vote(p(wr), (wr < -80) & (wr > p(wr)), (wr > -20) & (wr < p(wr))),
            _vote(
                trend,
                up & (bear_p < 0) & (bear_p > p(bear_p)),
                down & (bull_p > 0) & (bull_p < p(bull_p)),
            ),
            _vote(uo, uo > 70, uo < 30),
        ]
        with warnings.catch_warnings():  # all-NaN columns during warm-up are expected
            warnings.simplefilter("ignore", RuntimeWarning)
            r_ma = np.nanmean(np.vstack(ma), axis=0)
            r_osc = np.nanmean(np.vstack(osc), axis=0)
    return np.where(np.isnan(r_ma), r_osc, np.where(np.isnan(r_osc), r_ma, (r_ma + r_osc) / 2))


def reference_job(
    frames: dict[str, pd.DataFrame],
    weights: dict[str, float],
    sl: float,
    tp: float,
    fee: float,
    slip: float,
    size: float,
    cash: float,
) -> dict:
    """The job on 1h frames (``open … volume``, a UTC DatetimeIndex) per symbol: ratings per
    timeframe, the weighted score, vectorbt from_signals. Returns the score frame, the
    number of orders and the final value."""
    import vectorbt as vbt

    closes, opens, highs, lows, scores = {}, {}, {}, {}, {}
    for s, df in frames.items():
        tfs = {"1h": df}
        for tf, rule in (("4h", TF_RULE["4h"]), ("1d", TF_RULE["1d"])):
            r = df.resample(rule, label="left", closed="left").agg(AGG).dropna()
            # Drop a partial last bucket (not closed yet at the end of the data).
            tfs[tf] = (
                r.iloc[:-1]
                if df.index[-1] + pd.Timedelta("1h") < r.index[-1] + pd.Timedelta(rule)
                else r
            )
        rating = {}
        for tf, f in tfs.items():
            ra = talib_rating_all(*(f[k].to_numpy(np.float64) for k in AGG))
            # An HTF bar is visible on the base bar whose close equals its close.
            shift = pd.Timedelta(TF_RULE[tf]) - pd.Timedelta("1h")
            ser = pd.Series(ra, index=f.index + shift)
            rating[tf] = ser.reindex(df.index, method="ffill")
        w = sum(weights.values())
        score = sum(weights[tf] * rating[tf] for tf in weights) / w
        scores[s], closes[s] = score, df["close"]
        opens[s], highs[s], lows[s] = df["open"], df["high"], df["low"]
    score = pd.DataFrame(scores)
    close = pd.DataFrame(closes)
    entries, exits = score > 0.1, score < -0.1
    pf = vbt.Portfolio.from_signals(
        close,
        entries,
        exits,
        open=pd.DataFrame(opens),
        high=pd.DataFrame(highs),
        low=pd.DataFrame(lows),
        sl_stop=sl,
        tp_stop=tp,
        fees=fee,
        slippage=slip,
        size=size * cash,
        size_type="value",
        allow_partial=False,
        init_cash=cash,
        cash_sharing=True,
        group_by=True,
        call_seq="default",
        freq="1h",
    )
    value = pf.value()
    return {
        "score": score,
        "n_orders": int(pf.orders.count().sum()),
        "final_value": float(value.iloc[-1]),
    }


def profile_params() -> dict:
    """Weights, SL/TP, costs and size of ``crypto_rating_all`` (plain JSON: the reference
    job does not import Tandem)."""
    p = json.loads((ROOT / "manifest.json").read_text())["profiles"]["crypto_rating_all"]
    ex = p["execution"]
    return dict(
        weights={tf: float(p["mtf"]["weights"][tf]) for tf in p["timeframes"]},
        sl=p["exit_rules"]["stop_loss_pct"],
        tp=p["exit_rules"]["take_profit_pct"],
        fee=ex["fee_rate"],
        slip=ex["slippage_bps"] / 1e4,
        size=ex["size_pct"],
        cash=p["initial_cash"],
    )


def universe_frames(path: Path, n_assets: int) -> dict[str, pd.DataFrame]:
    """The first ``n_assets`` complete pairs (most bars, sorted) of a long-format universe,
    as 1h frames: the pairs ``bench/commands.py`` gives ``tandem-backtest run``."""
    df = pd.read_parquet(path)
    df["symbol"] = df["symbol"].astype(str)
    counts = df["symbol"].value_counts()
    symbols = sorted(counts[counts == counts.max()].index)[:n_assets]
    frames = {}
    for s, g in df[df["symbol"].isin(symbols)].groupby("symbol", sort=True):
        g = g.sort_values("timestamp")
        frames[s] = g.set_index(pd.to_datetime(g["timestamp"], unit="ms", utc=True))[list(AGG)]
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="long-format universe .parquet")
    ap.add_argument("--assets", type=int, default=100)
    args = ap.parse_args()
    out = reference_job(universe_frames(args.data, args.assets), **profile_params())
    print(
        f"reference: {len(out['score'].columns)} pairs, orders {out['n_orders']}, "
        f"final value {out['final_value']:.2f}"
    )


if __name__ == "__main__":
    main()
