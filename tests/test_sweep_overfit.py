"""Overfitting statistics against the papers' worked numbers and independent re-derivations.

References: Bailey & López de Prado (2012) "The Sharpe Ratio Efficient Frontier" (PSR);
Bailey & López de Prado (2014) "The Deflated Sharpe Ratio" (SR0, DSR; its numerical
example); Bailey, Borwein, López de Prado & Zhu (2015) "The Probability of Backtest
Overfitting" (CSCV, PBO).
"""

from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np
import pytest
from scipy import integrate, stats
from tandem.backtest.sweep.overfit import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    pbo_cscv,
    probabilistic_sharpe_ratio,
    return_moments,
)

# ------------------------------------------------------------------------------ DSR / PSR


def test_dsr_paper_numerical_example():
    """DSR paper, section "A numerical example": 100 trials, annualised SR 2.5 and variance
    of the trials' annualised SRs 1/2 over 5 years of daily returns (T = 1250, 250 a year),
    skewness −3, kurtosis 10 → SR0 ≈ 0.1132 (per day) and DSR ≈ 0.9004."""
    ppy = 250
    out = deflated_sharpe_ratio(2.5 / math.sqrt(ppy), 1250, -3.0, 10.0, 100, 0.5 / ppy)
    assert out["sr0"] == pytest.approx(0.1132, abs=5e-5)
    assert out["dsr"] == pytest.approx(0.9004, abs=5e-5)
    assert out["n_trials"] == 100
    assert out["psr"] > out["dsr"]  # beating 0 is easier than beating the luck of 100 trials


def _psr_scipy(sr, sr_b, t, g3, g4):
    return stats.norm.cdf((sr - sr_b) * np.sqrt(t - 1) / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))


@pytest.mark.parametrize("sr,sr_b,t,g3,g4", [
    (0.1, 0.0, 250, 0.0, 3.0), (0.05, 0.02, 1000, -1.2, 7.5), (-0.03, 0.0, 60, 0.4, 4.0),
    (0.2, 0.25, 36, -2.4, 12.0), (0.0, 0.0, 10, 0.0, 3.0),
])
def test_psr_equals_the_formula_through_scipy(sr, sr_b, t, g3, g4):
    got = probabilistic_sharpe_ratio(sr, sr_b, t, g3, g4)
    assert got == pytest.approx(_psr_scipy(sr, sr_b, t, g3, g4), abs=1e-12)


def test_psr_is_calibrated_on_simulated_normal_returns():
    """Independent truth by simulation: when the true Sharpe equals the benchmark, PSR of the
    sample Sharpe is ~uniform, so it exceeds 0.95 in ~5% of samples."""
    rng = np.random.default_rng(7)
    true_sr, t, n = 0.08, 500, 4000
    r = rng.normal(true_sr * 0.01, 0.01, size=(n, t))
    sr = r.mean(axis=1) / r.std(axis=1, ddof=1)
    psr = np.array([probabilistic_sharpe_ratio(s, true_sr, t, 0.0, 3.0) for s in sr])
    assert np.mean(psr > 0.95) == pytest.approx(0.05, abs=0.015)
    assert np.mean(psr > 0.5) == pytest.approx(0.5, abs=0.03)


def test_expected_max_sharpe_matches_the_expected_maximum_of_normals():
    """SR0 is the paper's approximation of E[max of N iid N(0, V)]; integrate the exact
    expectation with scipy: the approximation (meant for large N) is 2.3% high at N = 10,
    within 1% from N = 100."""
    for n, tol in ((10, 0.03), (100, 0.01), (1000, 0.01)):
        exact = integrate.quad(lambda x, n=n: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1),
                               -10, 10)[0]
        v = 0.04
        assert expected_max_sharpe(n, v) == pytest.approx(math.sqrt(v) * exact, rel=tol)
    # Direct formula with scipy's quantiles, exactly.
    g = 0.5772156649015329
    want = 0.3 * ((1 - g) * stats.norm.ppf(1 - 1 / 37) + g * stats.norm.ppf(1 - 1 / (37 * math.e)))
    assert expected_max_sharpe(37, 0.09) == pytest.approx(want, rel=1e-12)


def test_dsr_edge_cases():
    one = deflated_sharpe_ratio(0.1, 500, -0.5, 5.0, 1, 0.01)
    assert one["sr0"] == 0.0 and one["dsr"] == pytest.approx(one["psr"])
    flat = deflated_sharpe_ratio(0.1, 500, -0.5, 5.0, 50, 0.0)
    assert flat["sr0"] == 0.0 and flat["dsr"] == pytest.approx(flat["psr"])
    for bad in ({"sharpe": float("nan")}, {"skew": float("nan")}, {"var_trials_sharpe": float("nan")},
                {"n_trials": float("nan")}, {"n_obs": 1}, {"kurtosis": float("inf")}):
        args = {"sharpe": 0.1, "n_obs": 500, "skew": 0.0, "kurtosis": 3.0, "n_trials": 20,
                "var_trials_sharpe": 0.01, **bad}
        out = deflated_sharpe_ratio(**args)
        assert math.isnan(out["dsr"]), bad
    # Moments that make the variance term non-positive: NaN, not a made-up probability.
    assert math.isnan(probabilistic_sharpe_ratio(2.0, 0.0, 100, 5.0, 3.0))
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="var_trials_sharpe"):
        expected_max_sharpe(10, -0.1)
    # More trials, higher luck bar, lower DSR.
    d = [deflated_sharpe_ratio(0.1, 500, 0.0, 3.0, n, 0.002)["dsr"] for n in (2, 10, 100, 1000)]
    assert d == sorted(d, reverse=True)


def test_return_moments_match_scipy_and_backtest_stats():
    from tandem.backtest.stats import sharpe_ratio

    r = np.random.default_rng(8).standard_t(4, size=3000) * 0.01 + 0.0004
    m = return_moments(np.concatenate([r, [np.nan]]))
    assert m["n_obs"] == 3000
    assert m["skew"] == pytest.approx(stats.skew(r), rel=1e-12)
    assert m["kurtosis"] == pytest.approx(stats.kurtosis(r, fisher=False), rel=1e-12)
    assert m["sharpe"] == pytest.approx(sharpe_ratio(r, 1.0), rel=1e-12)  # not annualised
    assert math.isnan(return_moments(np.zeros(50))["sharpe"])
    assert math.isnan(return_moments([0.01])["kurtosis"])


# ------------------------------------------------------------------------------ PBO


def _metric_loop(r: np.ndarray, metric: str) -> float:
    """One trial's metric over its rows, written from the definitions (no shared code)."""
    if metric == "mean":
        return float(np.mean(r))
    if metric == "total_return":
        return float(np.prod(1.0 + r) - 1.0)
    if metric == "sharpe":
        sd = np.std(r, ddof=1)
        return float(np.mean(r) / sd) if sd > 1e-12 else -np.inf  # constant: undefined
    down = math.sqrt(np.mean(np.minimum(r, 0.0) ** 2))
    return float(np.mean(r) / down) if down > 0 else -np.inf


def _pbo_loop(perf: np.ndarray, s: int, metric: str) -> tuple[float, np.ndarray]:
    """CSCV step by step as in the paper: blocks, every half/half split, argmax in sample,
    relative rank out of sample (scipy's rankdata, ties averaged), logit, PBO."""
    t, n = perf.shape
    perf = perf[t % s:]
    blocks = np.array_split(perf, s)
    logits = []
    for train in combinations(range(s), s // 2):
        test = [b for b in range(s) if b not in train]
        is_rows = np.vstack([blocks[b] for b in train])
        oos_rows = np.vstack([blocks[b] for b in test])
        is_m = [_metric_loop(is_rows[:, j], metric) for j in range(n)]
        oos_m = [_metric_loop(oos_rows[:, j], metric) for j in range(n)]
        best = int(np.argmax(is_m))
        omega = stats.rankdata(oos_m, method="average")[best] / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    lg = np.array(logits)
    return float(np.mean(lg <= 0)), lg


@pytest.mark.parametrize("metric", ["sharpe", "sortino", "mean", "total_return"])
def test_pbo_equals_a_plain_loop_over_the_paper_steps(metric):
    rng = np.random.default_rng(3)
    t, n = 203, 9  # 203 = 8·25 + 3: the first 3 rows are dropped
    skill = np.linspace(-0.002, 0.002, n)
    perf = rng.normal(skill, 0.01, size=(t, n))
    perf[:, 4] = perf[:, 3]  # a tie: same returns as another trial
    perf[:, 6] = 0.0  # a trial that never trades (Sharpe undefined → ranked last)
    perf[:103, 7] = 0.0  # flat for the first half: undefined when only those blocks are used
    perf[:103, 8] = 0.0017  # constant, not zero, for the first half: undefined there too
    got = pbo_cscv(perf, n_splits=8, metric=metric)
    want_pbo, want_logits = _pbo_loop(perf, 8, metric)
    assert got["n_combinations"] == math.comb(8, 4) == len(got["logits"])
    assert got["dropped_rows"] == 3 and got["n_obs"] == 200
    np.testing.assert_allclose(got["logits"], want_logits, rtol=0, atol=1e-9)
    assert got["pbo"] == want_pbo


def test_pbo_hand_computed_example():
    """S = 2 blocks of one row, 3 trials, metric = mean.
    Split A: in-sample block 0 = [3, 2, -1] picks trial 0; out of sample it earns -2, the
    worst of [-2, 2, 4]: ω = 1/4, λ = ln(1/3). Split B: block 1 picks trial 2 (4); out of
    sample it earns -1, the worst of [3, 2, -1]: again λ = ln(1/3). PBO = 1, every split
    loses out of sample, and OOS = IS − 5 on both splits (slope 1, intercept −5)."""
    perf = np.array([[3.0, 2.0, -1.0], [-2.0, 2.0, 4.0]])
    out = pbo_cscv(perf, n_splits=2, metric="mean")
    np.testing.assert_allclose(out["logits"], [math.log(1 / 3)] * 2)
    assert out["pbo"] == 1.0 and out["prob_oos_loss"] == 1.0
    assert list(out["is_best_trial"]) == [0, 2]
    np.testing.assert_allclose(out["is_best_oos_rank"], [0.25, 0.25])
    assert out["performance_degradation"]["slope"] == pytest.approx(1.0)
    assert out["performance_degradation"]["intercept"] == pytest.approx(-5.0)
    # Same winner on both halves, best out of sample too: λ = ln 3, PBO = 0.
    good = pbo_cscv(np.array([[3.0, 2.0, -1.0], [4.0, 2.0, -2.0]]), n_splits=2, metric="mean")
    np.testing.assert_allclose(good["logits"], [math.log(3)] * 2)
    assert good["pbo"] == 0.0 and good["prob_oos_loss"] == 0.0


def test_pbo_of_a_dominant_trial_is_zero():
    rng = np.random.default_rng(1)
    perf = rng.normal(0.0, 0.01, size=(640, 30))
    perf[:, 17] = np.abs(perf[:, 17]) + 0.02  # best in every block by far
    out = pbo_cscv(perf, n_splits=16)
    assert out["pbo"] == 0.0
    assert set(out["is_best_trial"]) == {17}
    assert np.all(out["is_best_oos_rank"] == 30 / 31)


def test_pbo_of_pure_noise_is_about_one_half():
    """Trials with no skill: the in-sample winner's out-of-sample rank is uniform, so PBO
    averages ~0.5 over independent data sets (a single one varies a lot: the splits share
    data)."""
    rng = np.random.default_rng(11)
    pbos = [pbo_cscv(rng.normal(0.0, 0.01, size=(600, 40)), n_splits=10)["pbo"]
            for _ in range(30)]
    assert 0.4 < np.mean(pbos) < 0.6
    assert all(0.0 <= p <= 1.0 for p in pbos)


def test_pbo_input_validation():
    ok = np.zeros((32, 4)) + np.random.default_rng(0).normal(size=(32, 4))
    for kwargs, msg in [
        ({"perf": ok, "n_splits": 3}, "even"),
        ({"perf": ok, "n_splits": 0}, "even"),
        ({"perf": ok[:, :1], "n_splits": 4}, "at least 2 trials"),
        ({"perf": ok[:6], "n_splits": 8}, "fewer than n_splits"),
        ({"perf": ok[:, 0], "n_splits": 4}, "2-D"),
        ({"perf": ok, "n_splits": 4, "metric": "calmar"}, "unknown metric"),
        ({"perf": np.where(np.eye(32, 4) > 0, np.nan, ok), "n_splits": 4}, "NaN"),
        ({"perf": ok - 5.0, "n_splits": 4, "metric": "total_return"}, "> -1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            pbo_cscv(**kwargs)


def test_pbo_speed_at_sixteen_splits_and_two_thousand_trials():
    """C(16, 8) = 12,870 splits x 2,000 trials: ~1.5 s of CPU (measured on the shared 2-core
    box; wall time there varies with the other agents' load, so CPU time is what is bounded)."""
    perf = np.random.default_rng(5).normal(0.0, 0.01, size=(2000, 2000))
    wall, cpu = time.perf_counter(), time.process_time()
    out = pbo_cscv(perf, n_splits=16)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert out["n_combinations"] == 12_870
    assert cpu < 5.0 and wall < 30.0, f"cpu {cpu:.1f} s, wall {wall:.1f} s"
