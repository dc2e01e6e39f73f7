"""Seeded generator of realistic-looking candles for the demo and the always-on tests.

Real candles cannot ship with the project (see ``../shared/data/README.md``), yet the demo
must run on a fresh clone and the always-on tests need many assets. This module draws them:

* log-price: geometric Brownian motion whose per-bar variance follows a GARCH(1,1)
  recursion, so calm and turbulent stretches alternate (volatility clusters) like crypto;
* assets share a market factor (correlation ~0.5), as altcoins follow BTC;
* high/low come from a few simulated sub-steps inside the bar (a discrete Brownian path),
  so they are consistent with open/close and are not a fixed multiple of the range;
* volume is log-normal and rises with the absolute return (busy bars trade more).

Everything is a pure function of ``seed``: the same call gives the same candles on any
machine, which is what the byte-identical-fills tests need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

CANDLE_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]

# Rough start prices so the charts look familiar; any symbol not listed starts near 1-100.
_START_PRICES = {
    "BTC": 30_000.0,
    "ETH": 2_000.0,
    "SOL": 40.0,
    "XRP": 0.5,
    "BNB": 300.0,
    "ADA": 0.4,
    "DOGE": 0.08,
    "LTC": 90.0,
}

_TF_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000,
          "1d": 86_400_000}


def _timeframe_ms(timeframe: str) -> int:
    """Milliseconds of a timeframe string; only what the generator supports."""
    try:
        return _TF_MS[timeframe]
    except KeyError:
        raise ValueError(f"demo data supports timeframes {sorted(_TF_MS)}, not {timeframe!r}") from None


def _to_ms(start: str | int | pd.Timestamp) -> int:
    """Epoch ms (UTC) of a date string, a Timestamp or an int that already is ms."""
    if isinstance(start, int | np.integer):
        return int(start)
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _start_price(symbol: str, rng: np.random.Generator) -> float:
    base = symbol.split("/")[0].upper()
    if base in _START_PRICES:
        return _START_PRICES[base]
    return float(np.exp(rng.uniform(0.0, np.log(100.0))))


def _garch_vol(
    shocks: np.ndarray, sigma: float, alpha: float, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar GARCH(1,1) volatility and returns for a ``(n_bars, n_assets)`` shock matrix.

    ``var_t = w + alpha * r_{t-1}^2 + beta * var_{t-1}`` with ``w`` chosen so the long-run
    variance is ``sigma**2``. A Python loop over bars is fine: it is vectorised over assets
    and a year of hourly bars takes a few milliseconds.
    """
    n_bars, n_assets = shocks.shape
    omega = sigma**2 * (1.0 - alpha - beta)
    var = np.full(n_assets, sigma**2)
    rets = np.empty_like(shocks)
    vols = np.empty_like(shocks)
    for t in range(n_bars):
        vol = np.sqrt(var)
        vols[t] = vol
        rets[t] = vol * shocks[t]
        var = omega + alpha * rets[t] ** 2 + beta * var
    return rets, vols


def generate_candles(
    symbols: Sequence[str],
    start: str | int | pd.Timestamp = "2024-01-01",
    n_bars: int = 24 * 365,
    timeframe: str = "1h",
    seed: int = 7,
    annual_vol: float = 0.7,
    market_corr: float = 0.5,
    substeps: int = 8,
) -> dict[str, pd.DataFrame]:
    """Draw ``n_bars`` candles per symbol, starting at bar open time ``start``.

    Returns ``{symbol: DataFrame[ts, open, high, low, close, volume]}`` with ``ts`` the bar
    open time in integer ms (UTC), as everywhere in Tandem. Deterministic in ``seed``.
    """
    if n_bars <= 0:
        raise ValueError("n_bars must be positive")
    if not symbols:
        raise ValueError("need at least one symbol")
    tf_ms = _timeframe_ms(timeframe)
    rng = np.random.default_rng(seed)
    n_assets = len(symbols)
    bars_per_year = 365 * 86_400_000 / tf_ms
    sigma = annual_vol / np.sqrt(bars_per_year)

    # Correlated standardised shocks: one market factor plus idiosyncratic noise; a Student-t
    # draw (df=5, rescaled to unit variance) gives the fat tails crypto returns have.
    df = 5.0
    scale = np.sqrt((df - 2.0) / df)
    market = rng.standard_t(df, size=(n_bars, 1)) * scale
    idio = rng.standard_t(df, size=(n_bars, n_assets)) * scale
    shocks = np.sqrt(market_corr) * market + np.sqrt(1.0 - market_corr) * idio
    rets, vols = _garch_vol(shocks, sigma, alpha=0.08, beta=0.9)
    # Small per-asset drifts so some assets trend up and some down over the sample.
    drift = rng.normal(0.0, 0.5, size=n_assets) / bars_per_year
    log_ret = rets + drift - 0.5 * vols**2

    start_prices = np.array([_start_price(s, rng) for s in symbols])
    log_close = np.log(start_prices) + np.cumsum(log_ret, axis=0)
    log_open = np.vstack([np.log(start_prices)[None, :], log_close[:-1]])

    # Path inside the bar: a Brownian bridge from open to close through `substeps` points,
    # whose extremes are the bar's high and low.
    steps = rng.standard_normal((n_bars, n_assets, substeps)) * (vols / np.sqrt(substeps))[..., None]
    walk = np.cumsum(steps, axis=2)
    frac = np.arange(1, substeps + 1) / substeps
    bridge = walk - frac * walk[..., -1:]
    path = log_open[..., None] + frac * (log_close - log_open)[..., None] + bridge
    log_high = np.maximum(np.maximum(path.max(axis=2), log_open), log_close)
    log_low = np.minimum(np.minimum(path.min(axis=2), log_open), log_close)

    # Volume in base units: notional is log-normal around ~1M quote per bar, busier on big moves.
    notional = np.exp(rng.normal(13.8, 0.4, size=(n_bars, n_assets))) * (
        1.0 + 4.0 * np.abs(rets) / sigma / 3.0
    )
    close = np.exp(log_close)
    volume = notional / close

    ts = _to_ms(start) // tf_ms * tf_ms + np.arange(n_bars, dtype=np.int64) * tf_ms
    out: dict[str, pd.DataFrame] = {}
    for j, sym in enumerate(symbols):
        out[sym] = pd.DataFrame(
            {
                "ts": ts,
                "open": np.exp(log_open[:, j]),
                "high": np.exp(log_high[:, j]),
                "low": np.exp(log_low[:, j]),
                "close": close[:, j],
                "volume": volume[:, j],
            }
        )
    return out


def csv_file_name(exchange: str, symbol: str, timeframe: str) -> str:
    """``../shared/data`` naming: ``<exchange>_<BASE-QUOTE>_<timeframe>.csv``."""
    return f"{exchange}_{symbol.replace('/', '-')}_{timeframe}.csv"


def write_csv_folder(
    candles: dict[str, pd.DataFrame], folder: str | Path, exchange: str = "binance",
    timeframe: str = "1h",
) -> list[Path]:
    """Write candles as a folder of CSVs in the ``../shared/data`` format; return the paths.

    Columns ``timestamp,open,high,low,close,volume`` with ``timestamp`` = bar open time in ms.
    Floats are written with full precision (``repr``) so a CSV round trip is lossless.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for sym, df in candles.items():
        path = folder / csv_file_name(exchange, sym, timeframe)
        df.rename(columns={"ts": "timestamp"})[
            ["timestamp", "open", "high", "low", "close", "volume"]
        ].to_csv(path, index=False, float_format="%.17g")
        paths.append(path)
    return paths
