"""Timeframe parsing and bucket alignment, cross-checked against ccxt and pandas."""

from __future__ import annotations

import ccxt
import pandas as pd
import pytest
from tandem.core.timeframes import (
    EXCHANGE_TIMEFRAMES,
    TimeframeError,
    bars_per,
    bucket_start,
    check_htf,
    is_boundary,
    timeframe_to_ms,
)


@pytest.mark.parametrize("tf", list(EXCHANGE_TIMEFRAMES) + ["1s", "1M", "1y", "45m", "2w"])
def test_parse_matches_ccxt(tf: str) -> None:
    assert timeframe_to_ms(tf) == ccxt.Exchange.parse_timeframe(tf) * 1000


@pytest.mark.parametrize("bad", ["7", "h", "0h", "1H", "1.5h", "", " 1h", "1hh", "-1h", None, 60])
def test_parse_rejects(bad) -> None:
    with pytest.raises(TimeframeError):
        timeframe_to_ms(bad)


def test_contract_example() -> None:
    assert timeframe_to_ms("1h") == 3_600_000


@pytest.mark.parametrize("tf,freq", [("1h", "1h"), ("4h", "4h"), ("1d", "1D"), ("15m", "15min")])
def test_bucket_start_matches_pandas_floor(tf: str, freq: str) -> None:
    ts = pd.date_range("2020-02-27", periods=500, freq="37min", tz="UTC")
    ms = ts.as_unit("ms").asi8
    expect = ts.floor(freq).as_unit("ms").asi8
    assert [bucket_start(int(t), tf) for t in ms] == list(expect)


def test_weeks_start_on_monday_like_binance() -> None:
    # Binance weekly candles open on Monday 00:00 UTC (e.g. 2021-01-04).
    monday = int(pd.Timestamp("2021-01-04", tz="UTC").value // 1_000_000)
    assert is_boundary(monday, "1w")
    assert bucket_start(monday + 3 * 86_400_000, "1w") == monday
    assert pd.Timestamp(bucket_start(monday - 1, "1w"), unit="ms").day_name() == "Monday"


def test_check_htf() -> None:
    check_htf("1h", "4h")
    check_htf("1h", "1w")
    assert bars_per("1h", "1d") == 24
    for base, htf in [("1h", "30m"), ("1h", "90m"), ("3d", "1w"), ("1d", "1M"), ("5m", "7m")]:
        with pytest.raises(TimeframeError):
            check_htf(base, htf)
