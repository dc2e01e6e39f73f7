"""Ratings on real candles: hand-checked votes, averaging and labels, streaming, checkpoints,
missing bars, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import talib
from tandem.core.ratings import (
    LABELS,
    N_MA_VOTES,
    N_RATING_OUT,
    RATING_STATE_SIZE,
    RATING_WARMUP_BARS,
    VOTE_NAMES,
    RatingState,
    compute_ratings,
    label_of,
    new_rating_state,
    new_rating_states,
    rating_step_nb,
    ratings_nb,
)

from tests.conftest import read_shared_csv

START = 600  # TA-Lib's seeds have converged by then


@pytest.fixture(scope="module")
def btc(shared_data) -> pd.DataFrame:
    return read_shared_csv(shared_data, "binance_BTC-USDT_1h.csv")


@pytest.fixture(scope="module")
def rated(btc: pd.DataFrame) -> pd.DataFrame:
    return compute_ratings(btc, votes=True)


def _cols(df: pd.DataFrame) -> list[np.ndarray]:
    return [df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")]


def test_contract_shapes() -> None:
    assert len(VOTE_NAMES) == 26 and N_MA_VOTES == 15
    assert N_RATING_OUT == 3 + 26
    assert new_rating_state().shape == (RATING_STATE_SIZE,)
    assert new_rating_states(3).shape == (3, RATING_STATE_SIZE)


def test_hand_checked_votes_on_real_bars(btc: pd.DataFrame, rated: pd.DataFrame) -> None:
    """Each rule of RATINGS.md, re-derived here from TA-Lib values, on every bar it fires."""
    o, h, lo, c, v = _cols(btc)
    idx = np.arange(len(c)) >= START

    def prev(x: np.ndarray) -> np.ndarray:
        return np.concatenate([[np.nan], x[:-1]])

    def check(name: str, buy: np.ndarray, sell: np.ndarray) -> None:
        vote = rated[f"vote_{name}"].to_numpy()
        assert (buy & idx).sum() > 0 and (sell & idx).sum() > 0, f"{name}: no such bar"
        assert (vote[buy & idx] == 1).all(), name
        assert (vote[sell & idx] == -1).all(), name
        assert (vote[~buy & ~sell & idx] == 0).all(), name

    rsi = talib.RSI(c, 14)
    check("rsi", (rsi < 30) & (rsi > prev(rsi)), (rsi > 70) & (rsi < prev(rsi)))
    cci = talib.CCI(c, c, c, 20)
    check("cci", (cci < -100) & (cci > prev(cci)), (cci > 100) & (cci < prev(cci)))
    wr = talib.WILLR(h, lo, c, 14)
    check("wpr", (wr < -80) & (wr > prev(wr)), (wr > -20) & (wr < prev(wr)))
    uo = talib.ULTOSC(h, lo, c, 7, 14, 28)
    check("uo", uo > 70, uo < 30)
    m, s, _ = talib.MACD(c, 12, 26, 9)
    check("macd", m > s, m < s)
    mom = talib.MOM(c, 10)
    check("mom", mom > prev(mom), mom < prev(mom))
    for n in (10, 200):
        sma = talib.SMA(c, n)
        check(f"sma{n}", c > sma, c < sma)
    adx, pdi, mdi = (
        talib.ADX(h, lo, c, 14),
        talib.PLUS_DI(h, lo, c, 14),
        talib.MINUS_DI(h, lo, c, 14),
    )
    rising = (adx > 20) & (adx > prev(adx))
    check("adx", rising & (pdi > mdi), rising & (pdi < mdi))
    k, d = talib.STOCH(h, lo, c, 14, 3, talib.MA_Type.SMA, 3, talib.MA_Type.SMA)
    check("stoch", (k < 20) & (d < 20) & (k > d), (k > 80) & (d > 80) & (k < d))


def test_a_single_bar_by_hand(btc: pd.DataFrame, rated: pd.DataFrame) -> None:
    """The first bar after warm-up where RSI < 30 and rising: its RSI vote is +1."""
    c = btc["close"].to_numpy()
    rsi = talib.RSI(c, 14)
    i = next(i for i in range(START, len(c)) if rsi[i] < 30 and rsi[i] > rsi[i - 1])
    assert 0 < rsi[i] < 30 and rsi[i] > rsi[i - 1]
    assert rated["vote_rsi"].iloc[i] == 1.0


def test_averaging_and_labels(rated: pd.DataFrame) -> None:
    votes = rated[[f"vote_{n}" for n in VOTE_NAMES]].to_numpy()
    ma = pd.DataFrame(votes[:, :N_MA_VOTES]).mean(axis=1).to_numpy()  # skips NaN votes
    osc = pd.DataFrame(votes[:, N_MA_VOTES:]).mean(axis=1).to_numpy()
    sl = slice(RATING_WARMUP_BARS, None)
    np.testing.assert_allclose(rated["rating_ma"].to_numpy()[sl], ma[sl], rtol=1e-15)
    np.testing.assert_allclose(rated["rating_osc"].to_numpy()[sl], osc[sl], rtol=1e-15)
    np.testing.assert_allclose(rated["rating_all"].to_numpy()[sl], (ma + osc)[sl] / 2, rtol=1e-15)
    # the labels column is label_of(rating_all) everywhere, missing where the rating is
    expect = [label_of(x) for x in rated["rating_all"]]
    got = [None if pd.isna(x) else x for x in rated["label"]]
    assert got == expect
    assert set(rated["label"].dropna().unique()) <= set(LABELS)


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (-1.0, "Strong Sell"),
        (-0.5000001, "Strong Sell"),
        (-0.5, "Sell"),
        (-0.1000001, "Sell"),
        (-0.1, "Neutral"),
        (0.0, "Neutral"),
        (0.1, "Neutral"),
        (0.1000001, "Buy"),
        (0.5, "Buy"),
        (0.5000001, "Strong Buy"),
        (1.0, "Strong Buy"),
        (float("nan"), None),
    ],
)
def test_label_thresholds(value: float, label: str | None) -> None:
    assert label_of(value) == label


def test_warmup_constant_is_when_every_vote_exists(rated: pd.DataFrame) -> None:
    votes = rated[[f"vote_{n}" for n in VOTE_NAMES]]
    complete = votes.notna().all(axis=1).to_numpy()
    assert not complete[: RATING_WARMUP_BARS - 1].any()
    assert complete[RATING_WARMUP_BARS - 1]
    assert np.isfinite(rated[["rating_ma", "rating_osc", "rating_all"]].to_numpy()[100:]).all()


def test_streaming_equals_batch_and_checkpoint_resumes(
    btc: pd.DataFrame, rated: pd.DataFrame
) -> None:
    ts = btc["timestamp"].to_numpy()
    cols = _cols(btc)
    n = 1500
    rs = RatingState()
    got = []
    for i in range(n):
        if i == 700:  # checkpoint and resume from bytes mid-stream
            rs = RatingState.from_bytes(rs.to_bytes())
        r = rs.step(ts[i], *(x[i] for x in cols))
        got.append((r.rating_ma, r.rating_osc, r.rating_all, r.label, *r.votes))
    ref = rated.iloc[:n]
    got_df = pd.DataFrame(got)
    np.testing.assert_array_equal(got_df[0].to_numpy(), ref["rating_ma"].to_numpy())
    np.testing.assert_array_equal(got_df[2].to_numpy(), ref["rating_all"].to_numpy())
    np.testing.assert_array_equal(
        got_df.iloc[:, 4:].to_numpy(dtype=float),
        ref[[f"vote_{v}" for v in VOTE_NAMES]].to_numpy(),
    )
    assert rs.n_bars == n and rs.last_ts == ts[n - 1] and rs.warmed_up


def test_checkpoint_rejects_foreign_bytes() -> None:
    blob = RatingState().to_bytes()
    with pytest.raises(ValueError, match="not a rating checkpoint"):
        RatingState.from_bytes(b"X" + blob[1:])
    with pytest.raises(ValueError, match="expects"):
        RatingState.from_bytes(blob[:-8])


def test_missing_bar_is_skipped_and_state_steps_in_place(shared_data) -> None:
    """A NaN bar leaves the state untouched (outputs all NaN, the rest as if the bar were
    absent); states stacked as rows step in place and continue bar by bar exactly."""
    frames = [
        read_shared_csv(shared_data, f"binance_{s}-USDT_1h.csv") for s in ("BTC", "ETH", "SOL")
    ]
    n = 800
    arrs = [np.stack([_cols(f)[k][:n] for f in frames], axis=1) for k in range(5)]
    arrs[3][300, 1] = np.nan  # ETH misses bar 300 (close NaN = missing bar)
    states = new_rating_states(3)
    out = np.stack(
        [ratings_nb(*[np.ascontiguousarray(x[:, a]) for x in arrs], states[a]) for a in range(3)],
        axis=1,
    )
    assert np.isnan(out[300, 1]).all()
    keep = np.r_[0:300, 301:n]
    eth_without = ratings_nb(*[np.ascontiguousarray(x[keep, 1]) for x in arrs], new_rating_state())
    np.testing.assert_array_equal(out[keep, 1, :], eth_without)
    # states were stepped in place: continuing bar by bar picks up exactly
    nxt = np.empty(N_RATING_OUT)
    rating_step_nb(states[0], *(_cols(frames[0])[k][n] for k in range(5)), nxt)
    full = ratings_nb(*[_cols(frames[0])[k][: n + 1] for k in range(5)], new_rating_state())
    np.testing.assert_array_equal(nxt, full[n])


@pytest.mark.parametrize(
    ("col", "row", "value", "words"),
    [
        ("close", 10, np.nan, "row 10 .*close is not finite"),
        ("timestamp", 20, "previous", "row 20 .*duplicate timestamp"),
        ("timestamp", 30, "earlier", "row 30 .*out of order"),
        ("low", 40, -1.0, "row 40 .*low <= 0"),
        ("high", 50, 1.0, "row 50 .*high < low"),
    ],
)
def test_bad_input_rejected_by_batch_and_stream(
    btc: pd.DataFrame, col: str, row: int, value, words: str
) -> None:
    df = btc.iloc[:60].copy()
    if value == "previous":
        value = df.loc[row - 1, col]
    elif value == "earlier":
        value = df.loc[row - 2, col]
    df[col] = df[col].astype(float if col != "timestamp" else np.int64)
    df.loc[row, col] = value
    with pytest.raises(ValueError, match=words) as batch:
        compute_ratings(df)
    row = int(str(batch.value).split("row ")[1].split(" ")[0])
    rs = RatingState()
    ts = df["timestamp"].to_numpy()
    cols = _cols(df)
    for i in range(row):
        rs.step(ts[i], *(x[i] for x in cols))
    before = rs.to_bytes()
    with pytest.raises(ValueError) as stream:
        rs.step(ts[row], *(x[row] for x in cols))
    assert str(stream.value) == str(batch.value)
    assert rs.to_bytes() == before  # rejected bar left the state untouched
    rs.step(ts[row - 1] + 1, *(x[row - 1] for x in cols))  # and it still accepts good bars
