"""Candle validation: every rule, the first bad row, one message for batch and stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.core.candles import bar_problem, check_bar, validate_candles


def _good(n: int = 6) -> list[np.ndarray]:
    ts = np.arange(n, dtype=np.int64) * 3_600_000 + 1_600_000_000_000
    c = np.linspace(100.0, 105.0, n)
    return [ts, c - 0.5, c + 1.0, c - 1.0, c, np.full(n, 3.0)]


def test_good_series_passes_and_gaps_flat_zero_volume_are_fine() -> None:
    ts, o, h, lo, c, v = _good()
    ts[3:] += 7_200_000  # a maintenance gap
    h[2] = lo[2] = o[2] = c[2]  # a flat bar
    v[4] = 0.0
    validate_candles(ts, o, h, lo, c, v)
    validate_candles(ts[:0], o[:0], h[:0], lo[:0], c[:0], v[:0])


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        (1, np.nan, "open is not finite (nan)"),
        (4, np.inf, "close is not finite (inf)"),
        (5, np.nan, "volume is not finite (nan)"),
        (3, 0.0, "low <= 0 (0.0)"),
        (1, -2.0, "open <= 0 (-2.0)"),
        (2, 98.0, "high < low"),
        (5, -1.0, "volume < 0 (-1.0)"),
    ],
)
def test_each_rule_names_row_and_reason(field: int, value: float, words: str) -> None:
    cols = _good()
    cols[field][3] = value
    with pytest.raises(ValueError, match=r"bad candle at row 3 \(ts=\d+\): ") as err:
        validate_candles(*cols)
    assert words in str(err.value)


def test_duplicate_and_unsorted_timestamps() -> None:
    cols = _good()
    cols[0][4] = cols[0][3]
    with pytest.raises(ValueError, match="row 4 .*duplicate timestamp"):
        validate_candles(*cols)
    cols = _good()
    cols[0][2], cols[0][3] = cols[0][3], cols[0][2]
    # row 2 jumps ahead (fine), row 3 goes back in time: row 3 is the first bad one
    with pytest.raises(ValueError, match="row 3 .*timestamp out of order"):
        validate_candles(*cols)


def test_first_bad_row_wins_and_float_timestamps_refused() -> None:
    cols = _good()
    cols[2][4] = 1.0  # high < low at row 4
    cols[4][2] = np.nan  # NaN close at row 2
    with pytest.raises(ValueError, match="row 2 .*close is not finite"):
        validate_candles(*cols)
    cols = _good()
    with pytest.raises(ValueError, match="integer ms"):
        validate_candles(cols[0].astype(float), *cols[1:])


def test_check_bar_says_the_same_as_validate() -> None:
    cols = _good()
    cols[3][5] = 200.0  # low above high
    with pytest.raises(ValueError) as batch:
        validate_candles(*cols)
    i = 5
    with pytest.raises(ValueError) as one:
        check_bar(i, int(cols[0][i]), *(float(x[i]) for x in cols[1:]), prev_ts=int(cols[0][i - 1]))
    assert str(batch.value) == str(one.value)


_price = st.one_of(
    st.floats(min_value=0.5, max_value=2.0),
    st.sampled_from([0.0, -1.0, math.nan, math.inf]),
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(-1, 2), _price, _price, _price, _price, _price),
        min_size=1,
        max_size=12,
    )
)
def test_vector_check_equals_scalar_loop(rows: list[tuple]) -> None:
    """validate_candles raises exactly at the first row bar_problem rejects, same words."""
    ts = np.cumsum([r[0] for r in rows]).astype(np.int64)
    cols = [np.array([r[k] for r in rows], dtype=float) for k in range(1, 6)]
    first = None
    for i in range(len(rows)):
        prev = int(ts[i - 1]) if i else None
        p = bar_problem(int(ts[i]), *(float(x[i]) for x in cols), prev_ts=prev)
        if p is not None:
            first = (i, p)
            break
    if first is None:
        validate_candles(ts, *cols)
    else:
        with pytest.raises(ValueError) as err:
            validate_candles(ts, *cols)
        assert str(err.value) == f"bad candle at row {first[0]} (ts={ts[first[0]]}): {first[1]}"
