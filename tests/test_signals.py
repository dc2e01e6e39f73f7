"""Combiners: wide and vote against an independent numpy reference, portfolio weight
invariants, rebalance alignment, and slice == batch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from tandem.core.manifest import parse_manifest
from tandem.core.signals import compute_signals, target_weights_nb

from tests.conftest import REPO_ROOT

DOC = json.loads((REPO_ROOT / "manifest.json").read_text())
H = 3_600_000


def _profile(name="crypto_rating_all", **changes):
    d = json.loads(json.dumps(DOC))
    p = d["profiles"][name]
    for k, v in changes.items():
        node = p
        *parents, last = k.split("__")
        for q in parents:
            node = node[q]
        node[last] = v
    return parse_manifest(d).profile(name)


def reference(profile, ratings, ts_close):
    """Plain numpy, vectorised over everything: the spec restated, not the kernel."""
    r = ratings[..., profile.rating_column]  # (bars, assets, tf)
    w = np.array(profile.tf_weights())
    core = np.array([s in profile.core_assets for s in profile.assets])
    e, x = profile.entry_threshold, profile.exit_threshold
    if profile.mtf.mode == "wide":
        mtf_score = (r * w).sum(axis=2) / w.sum()  # NaN propagates
        score = np.where(core[None, :], mtf_score, r[..., 0])
        sig = np.where(score > e, 1, np.where(score < x, -1, 0))
    else:
        votes = np.where(r > e, 1, np.where(r < x, -1, 0))
        bull = ((votes == 1) * w).sum(axis=2)
        bear = ((votes == -1) * w).sum(axis=2)
        m = profile.mtf.min_agree
        up, down = bull >= m, bear >= m
        sig_mtf = np.where(up & ~down, 1, np.where(down & ~up, -1, 0))
        score = np.where(core[None, :], (bull - bear) / w.sum(), votes[..., 0].astype(float))
        sig = np.where(core[None, :], sig_mtf, votes[..., 0])
    return sig.astype(np.int8), score


def _random_ratings(rng, n_bars, n_assets, nan_frac=0.05):
    r = rng.uniform(-1, 1, (n_bars, n_assets, 3, 3))
    r[rng.random(r.shape) < nan_frac] = np.nan
    # exact threshold values must be neutral (strict inequalities)
    r[rng.random(r.shape) < 0.02] = 0.1
    return r


def test_wide_and_vote_match_reference() -> None:
    rng = np.random.default_rng(1)
    for name in ("crypto_rating_all", "crypto_rating_ma", "crypto_rating_osc", "crypto_rating_all_vote"):
        prof = _profile(name)
        n_assets = len(prof.assets)
        r = _random_ratings(rng, 500, n_assets)
        ts_close = (np.arange(500) + 10_000) * H
        got = compute_signals(prof, r, ts_close)
        sig, score = reference(prof, r, ts_close)
        assert np.array_equal(got.signal, sig), name
        assert np.allclose(got.score, score, equal_nan=True, rtol=0, atol=1e-15), name
        assert np.isnan(got.target).all()  # discrete profiles have no targets
        assert set(np.unique(got.signal)) <= {-1, 0, 1}
        assert got.signal.dtype == np.int8


def test_thresholds_are_strict() -> None:
    # 0.25 keeps the weighted mean exact (a mean of 0.1s is 0.10000000000000002: the rule
    # compares the computed score, so thresholds are tested where arithmetic is exact).
    prof = _profile("crypto_rating_all", entry_threshold=0.25, exit_threshold=-0.25)
    n = len(prof.assets)
    r = np.zeros((3, n, 3, 3))
    r[0] = 0.25  # == entry -> neutral
    r[1] = -0.25  # == exit -> neutral
    r[2] = 0.2500001
    s = compute_signals(prof, r, np.arange(3) * H + 1000 * H).signal
    assert (s[0] == 0).all() and (s[1] == 0).all() and (s[2] == 1).all()


def test_min_agree_counts_equal() -> None:
    prof = _profile("crypto_rating_osc")  # vote, weights 1/1/1, min_agree 2
    n = len(prof.assets)
    r = np.zeros((1, n, 3, 3))
    r[0, 0, :2, 1] = 0.5  # two of three bullish: exactly min_agree -> +1
    r[0, 1, :1, 1] = 0.5  # one of three: 0
    r[0, 2, :, 1] = [-0.5, -0.5, 0.5]  # two bearish: -1
    s = compute_signals(prof, r, np.array([100 * H])).signal[0]
    assert s[:3].tolist() == [1, 0, -1]


def _ref_targets(score, signal, max_weight):
    pos = np.where((signal == 1) & (score > 0), score, 0.0)
    tot = pos.sum()
    return np.zeros_like(score) if tot <= 0 else np.minimum(pos / tot, max_weight)


@settings(max_examples=80, deadline=None)
@given(
    score=arrays(np.float64, st.integers(1, 30), elements=st.one_of(st.floats(-1, 1), st.just(np.nan))),
    max_weight=st.floats(0.01, 1.0),
    seed=st.integers(0, 1000),
)
def test_target_weights_invariants(score, max_weight, seed) -> None:
    rng = np.random.default_rng(seed)
    signal = rng.integers(-1, 2, score.shape[0]).astype(np.int8)
    out = np.empty_like(score)
    target_weights_nb(score, signal, max_weight, out)
    assert (out >= 0).all() and (out <= max_weight).all()
    assert out.sum() <= 1.0 + 1e-12
    assert (out[signal != 1] == 0).all()
    np.testing.assert_allclose(out, _ref_targets(score, signal, max_weight), rtol=1e-15, atol=0)


def test_portfolio_rebalance_bars_align_to_utc() -> None:
    rng = np.random.default_rng(3)
    for name, every in (("crypto_rating_all_portfolio", "1D"), ("crypto_rating_ma_portfolio_vote", "4h")):
        prof = _profile(name)
        n_bars = 24 * 5
        ts_open = (np.arange(n_bars) + 24 * 18_000 + 3) * H
        r = _random_ratings(rng, n_bars, len(prof.assets), nan_frac=0.0)
        got = compute_signals(prof, r, ts_open + H)
        rebal = ~np.isnan(got.target).all(axis=1)
        close = pd.to_datetime(ts_open + H, unit="ms", utc=True)
        assert np.array_equal(rebal, np.asarray(close == close.floor(every)))
        assert not np.isnan(got.target[rebal]).any()
        assert (got.target[rebal].sum(axis=1) <= 1 + 1e-12).all()
        assert (got.target[rebal] <= prof.portfolio.max_weight).all()
        for t in np.flatnonzero(rebal):
            np.testing.assert_allclose(
                got.target[t], _ref_targets(got.score[t], got.signal[t], prof.portfolio.max_weight), rtol=1e-15
            )


def test_slice_equals_batch_and_subset() -> None:
    rng = np.random.default_rng(5)
    prof = _profile("crypto_rating_all_portfolio")
    r = _random_ratings(rng, 96, len(prof.assets))
    ts_close = (np.arange(96) + 24 * 18_000 + 1) * H
    batch = compute_signals(prof, r, ts_close)
    for t in range(96):
        one = compute_signals(prof, r[t : t + 1], ts_close[t : t + 1])
        assert np.array_equal(one.signal[0], batch.signal[t])
        assert np.array_equal(one.target[0], batch.target[t], equal_nan=True)
    # on rebalance bars, assets without a base bar get NaN ("do nothing"), the rest a weight
    rebal = ~np.isnan(batch.target).all(axis=1)
    assert rebal.any()
    base_nan = np.isnan(r[:, :, 0, prof.rating_column])
    assert np.array_equal(np.isnan(batch.target[rebal]), base_nan[rebal])
    # a subset of the assets in another order: per-asset signals are unchanged
    syms = ["ETH/USDT", "ADA/USDT", "BTC/USDT"]
    idx = [prof.assets.index(s) for s in syms]
    sub = compute_signals(prof, r[:, idx], ts_close, symbols=syms)
    assert np.array_equal(sub.signal, batch.signal[:, idx])
