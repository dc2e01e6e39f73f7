"""portfolio.weighting (tandem.core.weighting): manifest, weights against skfolio, properties,
state checkpoints, and the drivers (batch == daemon slice stepper)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.core.manifest import ManifestError, Portfolio, load_manifest
from tandem.core.weighting import (
    W_EQUAL,
    W_HRP,
    W_INVERSE_VOL,
    W_MIN_VARIANCE,
    W_RISK_PARITY,
    W_SCORE,
    new_weight_state,
    weights_rows_nb,
    weights_step_nb,
)

REPO = Path(__file__).resolve().parents[1]
MAIN_PY = Path("/work/main/.venv/bin/python")


def _prices(rng: np.random.Generator, n_bars: int, n_assets: int) -> np.ndarray:
    vol = rng.uniform(0.002, 0.05, n_assets)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, (n_bars, n_assets)) * vol, axis=0))


def _run(close, signal, method, lookback, *, max_w=1.0, min_w=0.0, band=0.0, cap=0.0,
         rebalance=None, trade=None):
    """Kernel over ``close``; rebalance rows get a score-like target (NaN where no bar)."""
    n_bars, n = close.shape
    target = np.full((n_bars, n), np.nan)
    rows = range(n_bars) if rebalance is None else rebalance
    for t in rows:
        target[t] = np.where(np.isnan(close[t]), np.nan,
                             np.where(signal[t] == 1, 1.0 / n, 0.0))
    tr = np.ones(n_bars, dtype=np.bool_) if trade is None else trade
    state = new_weight_state(n, lookback)
    weights_rows_nb(close, signal.astype(np.int8), target, tr, state, method, max_w, min_w,
                    band, cap)
    return target, state


# ---- independent truth: skfolio on the same return window ------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_and_inverse_vol_match_skfolio(seed):
    skopt = pytest.importorskip("skfolio.optimization")
    rng = np.random.default_rng(seed)
    n, lookback = 12, 40
    close = _prices(rng, 80, n)
    signal = np.ones((80, n), dtype=np.int8)
    signal[-1, [2, 5]] = 0  # ineligible at the last rebalance
    last = [79]
    window = close[-lookback:] / close[-lookback - 1:-1] - 1.0
    elig = signal[-1] == 1
    for method, est in ((W_EQUAL, skopt.EqualWeighted()), (W_INVERSE_VOL, skopt.InverseVolatility())):
        target, _ = _run(close, signal, method, lookback, rebalance=last)
        want = np.zeros(n)
        want[elig] = est.fit(window[:, elig]).weights_
        np.testing.assert_allclose(target[-1], want, rtol=0, atol=1e-12)
        assert np.isnan(target[:-1]).all()


def _skfolio_min_variance(returns: np.ndarray, max_w: float) -> np.ndarray:
    skopt = pytest.importorskip("skfolio.optimization")
    from skfolio.moments import LedoitWolf
    from skfolio.prior import EmpiricalPrior

    tight = {"tol_gap_abs": 1e-13, "tol_gap_rel": 1e-13, "tol_feas": 1e-13, "max_iter": 500}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Clarabel flags its own 1e-13 targets as "inaccurate"
        est = skopt.MeanRisk(prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
                             min_weights=0.0, max_weights=max_w, solver_params=tight,
                             scale_objective=1e4)  # variances ~1e-4: an O(1) objective
        return est.fit(returns).weights_


@pytest.mark.parametrize(("seed", "n", "lookback", "max_w"), [
    (0, 6, 30, 1.0), (1, 12, 60, 0.2), (2, 30, 90, 0.1), (3, 60, 126, 0.05),
])
def test_min_variance_matches_skfolio(seed, n, lookback, max_w):
    """Same window, same Ledoit-Wolf shrinkage (sklearn's, through skfolio), same box:
    weights to 1e-6 and a variance no higher than the reference solver's."""
    from sklearn.covariance import LedoitWolf
    from tandem.core.weighting import ledoit_wolf_nb

    rng = np.random.default_rng(seed)
    n_bars = lookback + 20
    vol = rng.uniform(0.3, 2.0, n)
    market = rng.normal(0.0, 0.01, (n_bars, 1)) * rng.uniform(0.5, 1.5, n)
    close = 100.0 * np.exp(np.cumsum(market + rng.normal(0.0, 0.01, (n_bars, n)) * vol, axis=0))
    signal = np.ones((n_bars, n), dtype=np.int8)
    signal[-1, :: 5] = 0
    target, _ = _run(close, signal, W_MIN_VARIANCE, lookback, max_w=max_w, rebalance=[n_bars - 1])
    window = close[-lookback:] / close[-lookback - 1:-1] - 1.0
    elig = signal[-1] == 1
    cov = LedoitWolf().fit(window[:, elig]).covariance_
    np.testing.assert_allclose(ledoit_wolf_nb(window[:, elig]), cov, rtol=1e-12, atol=1e-18)
    want = np.zeros(n)
    want[elig] = _skfolio_min_variance(window[:, elig], max_w)
    np.testing.assert_allclose(target[-1], want, rtol=0, atol=1e-6)
    got = target[-1][elig]
    assert got.sum() == pytest.approx(1.0, abs=1e-12) and got.min() >= 0 and got.max() <= max_w
    # the reference may sit 1e-13 outside the box, hence the small slack
    assert got @ cov @ got <= want[elig] @ cov @ want[elig] * (1 + 1e-9)


@pytest.mark.parametrize(("seed", "n", "lookback", "max_w"), [
    (0, 5, 30, 1.0), (1, 12, 60, 1.0), (2, 40, 90, 1.0), (3, 12, 60, 0.1),
])
def test_risk_parity_matches_skfolio(seed, n, lookback, max_w):
    """Equal risk contribution under the Ledoit-Wolf covariance, against skfolio's
    RiskBudgeting (equal budgets, same prior) to 1e-6; then the cap, excess to cash."""
    skopt = pytest.importorskip("skfolio.optimization")
    from skfolio.moments import LedoitWolf
    from skfolio.prior import EmpiricalPrior

    rng = np.random.default_rng(seed)
    n_bars = lookback + 10
    vol = rng.uniform(0.3, 2.0, n)
    market = rng.normal(0.0, 0.01, (n_bars, 1)) * rng.uniform(0.5, 1.5, n)
    close = 100.0 * np.exp(np.cumsum(market + rng.normal(0.0, 0.01, (n_bars, n)) * vol, axis=0))
    signal = np.ones((n_bars, n), dtype=np.int8)
    signal[-1, 1::4] = -1
    target, _ = _run(close, signal, W_RISK_PARITY, lookback, max_w=max_w, rebalance=[n_bars - 1])
    window = close[-lookback:] / close[-lookback - 1:-1] - 1.0
    elig = signal[-1] == 1
    tight = {"tol_gap_abs": 1e-13, "tol_gap_rel": 1e-13, "tol_feas": 1e-13, "max_iter": 500}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = skopt.RiskBudgeting(prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
                                  solver_params=tight, scale_objective=1e4).fit(window[:, elig])
    want = np.zeros(n)
    want[elig] = np.minimum(ref.weights_, max_w)
    np.testing.assert_allclose(target[-1], want, rtol=0, atol=1e-6)
    if max_w == 1.0:  # the defining property, independently of any solver
        from tandem.core.weighting import ledoit_wolf_nb

        w = target[-1][elig]
        rc = w * (ledoit_wolf_nb(window[:, elig]) @ w)
        np.testing.assert_allclose(rc, rc.mean(), rtol=1e-9)


@pytest.mark.parametrize(("seed", "n", "lookback", "max_w"), [
    (0, 2, 20, 1.0), (1, 7, 30, 1.0), (2, 25, 60, 1.0), (3, 60, 40, 1.0), (4, 126, 168, 1.0),
    (5, 20, 60, 0.1),
])
def test_hrp_matches_skfolio(seed, n, lookback, max_w):
    """HRP against skfolio's HierarchicalRiskParity on the same window, to 1e-9: the same
    Ledoit-Wolf prior, distances from that covariance (CovarianceDistance, precomputed),
    single linkage without optimal leaf ordering (skfolio's default is Ward with optimal
    ordering; we follow López de Prado). Then the cap, excess to cash. Correlated and
    anti-correlated assets, so the dendrogram has structure; n > lookback included."""
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import CovarianceDistance
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import HierarchicalRiskParity
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    rng = np.random.default_rng(seed)
    n_bars = lookback + 15
    vol = rng.uniform(0.3, 2.0, n)
    market = rng.normal(0.0, 0.01, (n_bars, 2)) @ rng.uniform(-1.5, 1.5, (2, n))
    close = 100.0 * np.exp(np.cumsum(market + rng.normal(0.0, 0.01, (n_bars, n)) * vol, axis=0))
    signal = np.ones((n_bars, n), dtype=np.int8)
    if n > 2:
        signal[-1, 1::6] = 0
    target, _ = _run(close, signal, W_HRP, lookback, max_w=max_w, rebalance=[n_bars - 1])
    window = close[-lookback:] / close[-lookback - 1:-1] - 1.0
    elig = signal[-1] == 1
    single = HierarchicalClustering(linkage_method=LinkageMethod.SINGLE)
    ref = HierarchicalRiskParity(
        prior_estimator=EmpiricalPrior(covariance_estimator=LedoitWolf()),
        distance_estimator=CovarianceDistance(covariance_estimator="precomputed"),
        seriation_estimator=HierarchicalSeriation(hierarchical_clustering_estimator=single,
                                                  optimal_ordering=False),
    ).fit(window[:, elig])
    want = np.zeros(n)
    want[elig] = np.minimum(ref.weights_, max_w)
    np.testing.assert_allclose(target[-1], want, rtol=0, atol=1e-9)


@pytest.mark.parametrize("ties", [False, True])
def test_single_linkage_order_equals_scipy(ties):
    """The dendrogram leaf order equals scipy's leaves_list(linkage(..., "single")), also
    when distances tie (rounded to one decimal: many equal merge heights)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform
    from tandem.core.weighting import single_linkage_order_nb

    rng = np.random.default_rng(4)
    for _ in range(50):
        p = int(rng.integers(2, 40))
        x = rng.normal(size=(p, 3))
        dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        if ties:
            dist = np.round(dist, 1)
        want = leaves_list(linkage(squareform(dist, checks=False), "single"))
        np.testing.assert_array_equal(single_linkage_order_nb(dist), want)


def test_hrp_one_asset_and_flat_windows():
    """One eligible asset takes everything (as skfolio); all-flat windows (Σ = 0) give 0."""
    rng = np.random.default_rng(8)
    close = _prices(rng, 30, 3)
    sig = np.zeros((30, 3), dtype=np.int8)
    sig[:, 1] = 1
    target, _ = _run(close, sig, W_HRP, 10, rebalance=[29])
    np.testing.assert_array_equal(target[29], [0.0, 1.0, 0.0])
    target, _ = _run(np.full((30, 3), 5.0), np.ones((30, 3), dtype=np.int8), W_HRP, 10,
                     rebalance=[29])
    np.testing.assert_array_equal(target[29], np.zeros(3))


def test_min_variance_vertex_is_solved_exactly():
    """Regression: when the optimum has no free asset (20 capped assets hold the book, the
    rest at 0), the exact KKT step gave up and FISTA ran its 20,000 iterations (~50 ms a
    rebalance; 12 such rebalances made the 100-asset year 1.5x slower than score). A
    one-factor covariance where the 20 low-beta assets at the cap are optimal by KKT:
    gradient 0.14 on them, 0.3 on the others."""
    from tandem.core.weighting import min_variance_nb

    beta = np.r_[np.full(20, 0.3), np.full(10, 1.0)]
    cov = 1e-4 * (np.outer(beta, beta) + np.diag(np.r_[np.ones(20), np.full(10, 4.0)]))
    w = np.empty(30)
    min_variance_nb(cov, 0.05, w)
    np.testing.assert_array_equal(w, np.r_[np.full(20, 0.05), np.zeros(10)])


def test_min_variance_caps_binding_everywhere():
    rng = np.random.default_rng(9)
    close = _prices(rng, 40, 5)
    sig = np.ones((40, 5), dtype=np.int8)
    target, _ = _run(close, sig, W_MIN_VARIANCE, 20, max_w=0.15, rebalance=[39])
    np.testing.assert_array_equal(target[39], np.full(5, 0.15))  # 0.25 stays in cash


def test_window_not_full_or_gap_means_no_weight():
    rng = np.random.default_rng(3)
    close = _prices(rng, 30, 3)
    close[:12, 1] = np.nan  # joins mid-history
    close[25, 2] = np.nan  # a gap: returns at 25 and 26 are missing
    sig = np.ones((30, 3), dtype=np.int8)
    target, _ = _run(close, sig, W_EQUAL, 17, rebalance=[28, 29])
    # asset 1 has bars 12..28 at bar 28: 16 returns; the 17th (bar 29) makes it ready
    assert target[28, 1] == 0.0 and target[29, 1] > 0.0
    assert target[29, 2] == 0.0  # its window holds the gap
    assert target[29, 0] == pytest.approx(0.5, abs=1e-15)


def test_all_missing_slice_does_not_move_the_window():
    rng = np.random.default_rng(4)
    close = _prices(rng, 40, 4)
    with_gap = np.insert(close, 20, np.nan, axis=0)  # the daemon may step an empty slice
    sig = np.ones((41, 4), dtype=np.int8)
    a, sa = _run(close, sig[:40], W_INVERSE_VOL, 10, rebalance=[39])
    b, sb = _run(with_gap, sig, W_INVERSE_VOL, 10, rebalance=[40])
    np.testing.assert_array_equal(a[39], b[40])


def test_step_equals_rows_and_state_roundtrips():
    """The daemon's slice face, with a checkpoint (np.save/np.load) half-way, equals the batch."""
    import io

    rng = np.random.default_rng(5)
    n = 6
    close = _prices(rng, 120, n)
    close[50:55, 3] = np.nan
    sig = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(120, n))
    reb = list(range(30, 120, 7))
    trade = np.arange(120) >= 25
    batch, _ = _run(close, sig, W_INVERSE_VOL, 20, max_w=0.3, min_w=0.05, band=0.02, cap=0.8,
                    rebalance=reb, trade=trade)
    state = new_weight_state(n, 20)
    out = np.empty((120, n))
    for t in range(120):
        tgt = np.full(n, np.nan)
        if t in reb:
            tgt = np.where(np.isnan(close[t]), np.nan, np.where(sig[t] == 1, 1.0 / n, 0.0))
        weights_step_nb(close[t].copy(), sig[t].copy(), tgt, bool(trade[t]), state,
                        W_INVERSE_VOL, 0.3, 0.05, 0.02, 0.8)
        out[t] = tgt
        if t == 60:
            buf = io.BytesIO()
            np.save(buf, state, allow_pickle=False)
            state = np.load(io.BytesIO(buf.getvalue()), allow_pickle=False)
    np.testing.assert_array_equal(out, batch)


# ---- properties ------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9), method=st.sampled_from([W_EQUAL, W_INVERSE_VOL, W_SCORE, W_MIN_VARIANCE, W_RISK_PARITY, W_HRP]),
       max_w=st.floats(0.05, 1.0), min_frac=st.floats(0.0, 1.0))
def test_weights_sum_le_1_respect_bounds_zero_when_ineligible(seed, n, method, max_w, min_frac):
    rng = np.random.default_rng(seed)
    close = _prices(rng, 40, n)
    close[rng.random((40, n)) < 0.05] = np.nan
    sig = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(40, n))
    min_w = min_frac * max_w
    target, _ = _run(close, sig, method, 5, max_w=max_w, min_w=min_w, rebalance=range(10, 40, 3))
    for t in range(10, 40, 3):
        row = target[t]
        w = row[~np.isnan(row)]
        assert w.sum() <= 1.0 + 1e-12
        assert ((w == 0.0) | ((w >= min_w) & (w <= max_w + 1e-15))).all()
        if method != W_SCORE:
            assert (row[(sig[t] != 1) & ~np.isnan(close[t])] == 0.0).all()
        assert np.isnan(row[np.isnan(close[t])]).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), method=st.sampled_from([W_EQUAL, W_INVERSE_VOL, W_SCORE, W_MIN_VARIANCE, W_RISK_PARITY, W_HRP]))
def test_band_one_never_trades_after_first_rebalance(seed, n, method):
    rng = np.random.default_rng(seed)
    close = _prices(rng, 60, n)
    sig = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(60, n))
    reb = list(range(10, 60, 4))
    target, _ = _run(close, sig, method, 5, band=1.0, rebalance=reb)
    assert not np.isnan(target[reb[0]]).any()
    assert np.isnan(target[reb[1]:]).all()  # all-NaN rows: the engine does not rebalance


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 9),
       method=st.sampled_from([W_EQUAL, W_INVERSE_VOL, W_SCORE, W_MIN_VARIANCE, W_RISK_PARITY, W_HRP]),
       band=st.floats(0.0, 0.3), cap=st.sampled_from([0.0, 0.1, 0.5, 1.5]))
def test_book_never_exceeds_one_with_band_and_cap(seed, n, method, band, cap):
    """Regression: with a band, weights held in place plus new ones once summed above 1
    (the engine refused the row). The book — every asset's last target — stays <= 1."""
    rng = np.random.default_rng(seed)
    close = _prices(rng, 80, n)
    close[rng.random((80, n)) < 0.05] = np.nan
    sig = rng.choice(np.array([0, 1], dtype=np.int8), size=(80, n))
    reb = list(range(10, 80, 3))
    target, state = _run(close, sig, method, 6, max_w=0.6, band=band, cap=cap, rebalance=reb)
    book = np.zeros(n)
    for t in reb:
        row = target[t]
        assert np.nansum(row) <= 1.0 + 1e-12
        book = np.where(np.isnan(row), book, row)
        assert book.sum() <= 1.0 + 1e-12
    np.testing.assert_array_equal(np.nan_to_num(state[1]), book)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), cap=st.floats(0.01, 2.0))
def test_turnover_cap(seed, n, cap):
    rng = np.random.default_rng(seed)
    close = _prices(rng, 60, n)
    sig = rng.choice(np.array([0, 1], dtype=np.int8), size=(60, n))
    reb = list(range(10, 60, 5))
    target, _ = _run(close, sig, W_INVERSE_VOL, 5, cap=cap, rebalance=reb)
    prev = np.zeros(n)
    for t in reb:
        assert np.abs(target[t] - prev).sum() <= cap + 1e-12
        assert target[t].sum() <= 1.0 + 1e-12
        prev = target[t]


# ---- manifest --------------------------------------------------------------------------
def _manifest(tmp_path: Path, **portfolio) -> Path:
    data = json.loads((REPO / "manifest.json").read_text())
    name = data["default_profile"] or next(iter(data["profiles"]))
    p = copy.deepcopy(data["profiles"][name])
    p.setdefault("portfolio", {}).update(portfolio)
    p["execution"]["mode"] = "portfolio"
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"version": 1, "default_profile": "x", "profiles": {"x": p}}))
    return path


@pytest.mark.parametrize(("fields", "field"), [
    ({"min_weight": 0.5, "max_weight": 0.2}, "portfolio.min_weight"),
    ({"band": 1.5}, "portfolio.band"),
    ({"band": -0.1}, "portfolio.band"),
    ({"weighting": "black_litterman"}, "portfolio.weighting"),
    ({"lookback": 1}, "portfolio.lookback"),
    ({"weighting": "min_variance", "lookback": 5}, "portfolio.lookback"),
])
def test_manifest_errors_name_the_field(tmp_path, fields, field):
    with pytest.raises(ManifestError) as exc:
        load_manifest(_manifest(tmp_path, **fields)).profile("x")
    assert field in str(exc.value)


def test_defaults_leave_canonical_json_unchanged():
    """Every shipped profile hashes as on main (whose code has no weighting fields)."""
    assert "weighting" not in Portfolio().model_dump()
    assert Portfolio(weighting="equal").model_dump()["weighting"] == "equal"
    mine = {n: p.profile_hash() for n, p in load_manifest(REPO / "manifest.json").profiles.items()}
    if not MAIN_PY.exists() or not Path("/work/main/core/manifest.py").exists():
        pytest.skip("no main checkout to compare with")
    code = ("import json; from tandem.core.manifest import load_manifest; "
            f"print(json.dumps({{n: p.profile_hash() for n, p in load_manifest({str(REPO / 'manifest.json')!r}).profiles.items()}}))")
    out = subprocess.run([str(MAIN_PY), "-c", code], cwd="/work/main", capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout) == mine


@pytest.mark.parametrize("weighting", ["equal", "inverse_vol", "min_variance", "risk_parity",
                                       "hrp"])
def test_daemon_stepper_with_checkpoint_equals_backtest(tmp_path, weighting):
    """In process: the daemon's ProfileStepper, checkpointed (blobs -> restore into a new
    stepper) half-way, trades exactly the fills of the batch backtest."""
    import pandas as pd
    from tandem.backtest.demo_data import generate_candles
    from tandem.backtest.runner import run_backtest
    from tandem.daemon.slices import Slice
    from tandem.daemon.strategy import ProfileStepper

    syms = ["AAA/USDT", "BBB/USDT", "CCC/USDT", "DDD/USDT"]
    candles = generate_candles(syms, start="2024-01-01", n_bars=24 * 12, seed=3)
    data = json.loads((REPO / "manifest.json").read_text())
    p = copy.deepcopy(data["profiles"]["crypto_rating_all"])
    p.update(core_assets=syms[:2], universe=syms, warmup_bars=96, timeframes=["1h", "4h"],
             entry_threshold=0.0, exit_threshold=-0.05)
    p.pop("mtf", None)
    p["execution"]["mode"] = "portfolio"
    p["portfolio"] = {"rebalance_every": "2h", "max_weight": 0.4, "weighting": weighting,
                      "lookback": 48, "band": 0.005, "turnover_cap": 1.2, "min_weight": 0.01}
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"version": 1, "default_profile": "w", "profiles": {"w": p}}))
    prof = load_manifest(path).profile("w")
    from tandem.core.store import AlignedCandles

    ts = candles[syms[0]]["ts"].to_numpy(np.int64)
    frames = {c: np.column_stack([candles[s][c].to_numpy(np.float64) for s in syms])
              for c in ("open", "high", "low", "close", "volume")}
    frames["close"][100:104, 2] = np.nan  # a gap: breaks one asset's window
    for c in ("open", "high", "low", "volume"):
        frames[c][100:104, 2] = np.nan
    start = int(ts[96])
    aligned = AlignedCandles(ts=ts, symbols=tuple(syms), **frames)
    res = run_backtest(prof, aligned, start=start, run_id="r", report=False)
    assert len(res.fills) > 10
    stepper = ProfileStepper(prof, "r")
    rows = []
    for t in range(len(ts)):
        if t == 150:
            fresh = ProfileStepper(prof, "r")
            fresh.restore(stepper.blobs())
            stepper = fresh
        sl = Slice(int(ts[t]), *(frames[c][t].copy() for c in ("open", "high", "low", "close", "volume")),
                   [], [], False)
        rows += stepper.step(sl, trade=int(ts[t]) >= start)
    cols = ["symbol", "ts", "side", "qty", "price", "fee", "reason"]
    paper = pd.DataFrame(rows)[cols].reset_index(drop=True)
    batch = res.fills[cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(paper, batch, check_exact=True, check_dtype=False)
    assert (batch["reason"] == "rebalance").any()
    # the weighting is in effect: the score rule trades other quantities
    plain = prof.model_copy(update={"portfolio": Portfolio(rebalance_every="2h", max_weight=0.4)})
    other = run_backtest(plain, aligned, start=start, run_id="r", report=False).fills
    assert len(other) != len(batch) or not np.array_equal(other["qty"], batch["qty"])


def test_a_weighting_without_scipy_is_a_manifest_error_naming_the_field(monkeypatch) -> None:
    """numba's linear algebra needs scipy (an extra): without it, a weighted profile is
    refused when the manifest loads, not a numba error at the first rebalance."""
    import json

    from tandem.core import manifest as m

    monkeypatch.setattr(m, "_have_scipy", lambda: False)
    data = json.loads((m.Path(__file__).resolve().parents[1] / "manifest.json").read_text())
    prof = data["profiles"]["crypto_rating_all"]
    prof["execution"]["mode"] = "portfolio"
    prof["portfolio"]["weighting"] = "equal"
    with pytest.raises(m.ManifestError, match=r"portfolio\.weighting.*optimizers"):
        m.parse_manifest({"profiles": {"p": prof}}, source="t")
    prof["portfolio"]["weighting"] = "score"
    m.parse_manifest({"profiles": {"p": prof}}, source="t")  # the score rule needs no scipy


def test_daemon_runs_blas_with_one_thread(tmp_path) -> None:
    """tandem-daemon sets one BLAS thread before numpy/scipy load (the weighting kernels'
    small products through scipy's OpenBLAS); without it the pool has one per core."""
    pytest.importorskip("threadpoolctl")
    code = ("import json, sys; from tandem.daemon.cli import main; "
            "main(['status', '--db', sys.argv[1]]) if sys.argv[2] == 'daemon' else None; "
            "import numpy, scipy.linalg; from threadpoolctl import threadpool_info; "
            "print(json.dumps([i['num_threads'] for i in threadpool_info() "
            "if i['user_api'] == 'blas']))")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")}
    env["PYTHONPATH"] = str(REPO)
    got = {}
    for who in ("daemon", "plain"):
        out = subprocess.run([str(MAIN_PY), "-c", code, str(tmp_path / "none.sqlite"), who],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        got[who] = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["daemon"] and set(got["daemon"]) == {1}
    if (os.cpu_count() or 1) > 1:
        assert max(got["plain"]) > 1  # the control: the default is a thread per core
