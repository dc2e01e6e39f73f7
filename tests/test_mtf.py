"""MTF rating state: HTF values equal an independent pandas resample + ratings, appear
only on HTF closes, and streaming / slice / batch / checkpoint paths agree bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.core.aggregate import aggregate_candles
from tandem.core.indicators.rating import rating_kernel
from tandem.core.mtf import (
    MtfConfig,
    MtfRatingState,
    MtfRatingStates,
    compute_mtf_ratings,
    mtf_slice,
    new_mtf_states,
)
from tandem.core.ratings import N_RATING_OUT, new_rating_state, ratings_nb
from tandem.core.timeframes import timeframe_to_ms

from tests.conftest import read_shared_csv

H = 3_600_000


def _arrays(df: pd.DataFrame):
    ts = df["timestamp"].to_numpy(np.int64)
    return ts, [df[c].to_numpy(np.float64)[:, None] for c in ("open", "high", "low", "close", "volume")]


def _reference_htf(df: pd.DataFrame, htf: str, freq: str) -> np.ndarray:
    """Independent path: pandas resample -> ratings of the HTF series -> shown from the
    first base bar whose close reaches the HTF bar's end, forward-filled (no repaint)."""
    idx = pd.to_datetime(df["timestamp"], unit="ms", utc=True)
    s = df.set_index(idx)
    agg = s.resample(freq, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    ).dropna(subset=["close"])
    start = agg.index.as_unit("ms").asi8
    htf_ms = timeframe_to_ms(htf)
    ts = df["timestamp"].to_numpy(np.int64)
    if ts[0] % htf_ms:  # partial first bucket
        keep = start != ts[0] // htf_ms * htf_ms
        agg, start = agg[keep], start[keep]
    vals = ratings_nb(*(agg[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")),
                      new_rating_state())
    out = np.full((len(ts), N_RATING_OUT), np.nan)
    at = np.searchsorted(ts + H, start + htf_ms, side="left")  # first base bar closing at/after the end
    for k in range(len(start)):
        if at[k] < len(ts):
            out[at[k]:] = vals[k]
    return out


@pytest.mark.data
@pytest.mark.parametrize("start", [0, 7])  # 7: starts mid-day -> partial first buckets dropped
def test_htf_equals_pandas_resample_reference(shared_data, start: int) -> None:
    df = read_shared_csv(shared_data, "binance_BTC-USDT_1h.csv").iloc[start:].reset_index(drop=True)
    ts, p = _arrays(df)
    cfg = MtfConfig("1h", ["4h", "1d"])
    r, _ = compute_mtf_ratings(cfg, ts, *p, votes=True)
    base = ratings_nb(*(x[:, 0] for x in p), new_rating_state())
    assert np.array_equal(r[:, 0, 0], base, equal_nan=True)
    for k, (htf, freq) in enumerate([("4h", "4h"), ("1d", "1D")]):
        ref = _reference_htf(df, htf, freq)
        got = r[:, 0, k + 1]
        # Ratings from exact aggregates: votes identical; ratings equal to float rounding of
        # the summed volume feeding vwma (pandas sums in another order).
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12, equal_nan=True)
        assert np.array_equal(np.isnan(got), np.isnan(ref))


@pytest.mark.data
def test_htf_changes_only_on_htf_closes(shared_data) -> None:
    df = read_shared_csv(shared_data, "binance_ETH-USDT_1h.csv")
    ts, p = _arrays(df)
    cfg = MtfConfig("1h", ["4h", "1d"])
    r, _ = compute_mtf_ratings(cfg, ts, *p, votes=True)
    ts_close = ts + H
    for k, htf in enumerate(["4h", "1d"]):
        v = r[:, 0, k + 1, :]
        changed = np.zeros(len(ts), dtype=bool)
        changed[1:] = ~np.all((v[1:] == v[:-1]) | (np.isnan(v[1:]) & np.isnan(v[:-1])), axis=1)
        htf_ms = timeframe_to_ms(htf)
        on_close = ts_close % htf_ms == 0
        # a bar after a gap that crossed a boundary may also carry a (late) close
        prev_close = np.r_[ts_close[0] - H, ts_close[:-1]]
        crossed = (ts_close // htf_ms) > (prev_close // htf_ms)
        assert not (changed & ~(on_close | crossed)).any()
        assert changed.sum() > 0.8 * on_close.sum()  # and it does change on closes


def _stream_all(cfg, ts, p, use_htf):
    n_assets = p[0].shape[1]
    objs = [MtfRatingState(cfg.base_tf, cfg.htfs, use_htf=bool(use_htf[j])) for j in range(n_assets)]
    out = np.empty((len(ts), n_assets, 1 + cfg.n_htf, N_RATING_OUT))
    for t in range(len(ts)):
        for j in range(n_assets):
            out[t, j] = objs[j].step(ts[t], *(x[t, j] for x in p))
            if t == len(ts) // 2:  # checkpoint round-trip mid-stream must not change anything
                objs[j] = MtfRatingState.from_bytes(objs[j].to_bytes())
    return out


def test_stream_slice_batch_identical() -> None:
    rng = np.random.default_rng(7)
    n, n_assets = 900, 3
    ts = (np.arange(n) + 1000 * 24 + 5) * H
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n, n_assets)), axis=0))
    o = c * (1 + rng.normal(0, 0.002, c.shape))
    h = np.maximum(o, c) * (1 + rng.random(c.shape) * 0.01)
    lo = np.minimum(o, c) * (1 - rng.random(c.shape) * 0.01)
    v = rng.random(c.shape) * 100
    for arr in (o, h, lo, c, v):  # missing bars, including a whole-day gap for asset 1
        arr[rng.random(c.shape) < 0.03] = np.nan
        arr[300:330, 1] = np.nan
    p = [o, h, lo, c, v]
    use = np.array([True, True, False])
    cfg = MtfConfig("1h", ["4h", "1d"])
    batch, states = compute_mtf_ratings(cfg, ts, *p, use, votes=True)
    stream = _stream_all(cfg, ts, p, use)
    assert np.array_equal(batch, stream, equal_nan=True)
    # the daemon's slice: the batch kernel over one bar, stepping the states in place
    st = new_mtf_states(n_assets, cfg.n_htf)
    out = np.empty((n_assets, 1 + cfg.n_htf, N_RATING_OUT))
    sl = np.empty_like(batch)
    for t in range(n):
        mtf_slice(rating_kernel(), cfg, use, st, ts[t], *(np.ascontiguousarray(x[t]) for x in p), out)
        sl[t] = out
    assert np.array_equal(batch, sl, equal_nan=True)
    assert np.array_equal(st, states, equal_nan=True)
    # the daemon's class, checkpointed every 100 slices
    multi = MtfRatingStates("1h", ["4h", "1d"], use)
    for t in range(n):
        assert np.array_equal(multi.step_slice(ts[t], *(x[t] for x in p)), batch[t], equal_nan=True)
        if t % 100 == 50:
            multi = MtfRatingStates.from_bytes(multi.to_bytes())
    assert np.array_equal(multi.use_htf, use)
    # batch resumed from a state equals one uninterrupted batch
    first, st1 = compute_mtf_ratings(cfg, ts[:400], *(x[:400] for x in p), use, votes=True)
    second, _ = compute_mtf_ratings(cfg, ts[400:], *(x[400:] for x in p), use, votes=True, states=st1)
    assert np.array_equal(np.concatenate([first, second]), batch, equal_nan=True)
    # missing base bar: base row NaN, HTF rows repeat
    t = np.flatnonzero(np.isnan(c[:, 0]) & (np.arange(n) > 300))[0]
    assert np.isnan(batch[t, 0, 0]).all()
    assert np.array_equal(batch[t, 0, 1:], batch[t - 1, 0, 1:], equal_nan=True)
    # base-only asset: HTF rows stay NaN
    assert np.isnan(batch[:, 2, 1:]).all()
    assert not np.isnan(batch[-1, 0, 2, :3]).any()


def test_checkpoint_rejects_garbage() -> None:
    s = MtfRatingState("1h", ["4h"])
    data = s.to_bytes()
    with pytest.raises(ValueError):
        MtfRatingState.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError):
        MtfRatingState.from_bytes(data[:-8])
    assert MtfRatingState.from_bytes(data).cfg.timeframes == ("1h", "4h")
    with pytest.raises(ValueError):
        MtfRatingState.from_bytes(MtfRatingStates("1h", ["4h"], [True, False]).to_bytes())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), gap_rate=st.sampled_from([0.0, 0.05, 0.3]), offset=st.integers(0, 23))
def test_htf_updates_exactly_at_emissions(seed: int, gap_rate: float, offset: int) -> None:
    """With random gaps: each HTF row changes only on bars where the aggregator emitted an
    HTF bar, and then equals the rating of the aggregated series up to that bar."""
    rng = np.random.default_rng(seed)
    n = 24 * 12
    ts_all = (np.arange(n) + 24 * 18_000 + offset) * H
    keep = rng.random(n) >= gap_rate
    keep[0] = True
    ts = ts_all[keep]
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, ts.shape[0])))
    o = np.r_[c[0], c[:-1]]
    df = pd.DataFrame({"timestamp": ts, "open": o, "high": np.maximum(o, c) * 1.002,
                       "low": np.minimum(o, c) * 0.998, "close": c, "volume": rng.random(ts.shape[0]) + 1})
    tsa, p = _arrays(df)
    r, _ = compute_mtf_ratings(MtfConfig("1h", ["4h"]), tsa, *p, votes=True)
    agg = aggregate_candles(df, "1h", "4h")
    vals = ratings_nb(*(agg[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")),
                      new_rating_state())
    expect = np.full((len(ts), N_RATING_OUT), np.nan)
    at = np.searchsorted(ts, agg["emitted_at_ts"].to_numpy())
    for k in range(len(agg)):
        expect[at[k]:] = vals[k]  # later emissions overwrite (two on one bar: the newest wins)
    assert np.array_equal(r[:, 0, 1], expect, equal_nan=True)
