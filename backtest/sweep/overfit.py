"""Overfitting statistics of a parameter sweep: PSR, Deflated Sharpe Ratio and PBO (CSCV).

Definitions (stated so the tests can rebuild them from the papers):

* **PSR** — Bailey & López de Prado (2012), "The Sharpe Ratio Efficient Frontier":
  ``PSR(SR*) = Φ((SR − SR*)·√(T−1) / √(1 − γ3·SR + (γ4−1)/4·SR²))`` with SR the
  *per-period* (not annualised) Sharpe ratio of T returns, γ3 their skewness and γ4 their
  kurtosis (non-excess: 3 for normal returns).
* **SR0**, the Sharpe ratio the best of N unskilled trials reaches by luck alone —
  Bailey & López de Prado (2014), "The Deflated Sharpe Ratio":
  ``SR0 = √V·((1−γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))``, γ the Euler–Mascheroni constant
  and V the variance of the trials' (per-period) Sharpe ratios.
* **DSR** = PSR(SR0): the probability that the winner's true Sharpe exceeds SR0.
* **PBO** — Bailey, Borwein, López de Prado & Zhu (2015), "The Probability of Backtest
  Overfitting": combinatorially symmetric cross-validation, see :func:`pbo_cscv`.

Only the standard library's :class:`statistics.NormalDist` is used for Φ and Φ⁻¹ (no scipy
dependency); the tests check against scipy and against the papers' worked numbers.
"""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np

EULER_GAMMA = 0.5772156649015329
_N01 = NormalDist()
PBO_METRICS = ("sharpe", "sortino", "mean", "total_return")


def _finite(*values: float) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def probabilistic_sharpe_ratio(
    sharpe: float, sr_benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """P(true Sharpe > ``sr_benchmark``) given a per-period ``sharpe`` from ``n_obs`` returns.

    ``kurtosis`` is the plain (non-excess) kurtosis, 3 for normal returns. NaN when any input
    is NaN, when there are fewer than 2 observations, or when the variance term
    ``1 − γ3·SR + (γ4−1)/4·SR²`` is not positive (moments inconsistent with that Sharpe).
    """
    if not _finite(sharpe, sr_benchmark, n_obs, skew, kurtosis) or float(n_obs) < 2:
        return float("nan")
    sr = float(sharpe)
    var_term = 1.0 - float(skew) * sr + (float(kurtosis) - 1.0) / 4.0 * sr * sr
    if var_term <= 0.0:
        return float("nan")
    z = (sr - float(sr_benchmark)) * math.sqrt(float(n_obs) - 1.0) / math.sqrt(var_term)
    return _N01.cdf(z)


def return_moments(returns: Any) -> dict[str, float]:
    """The DSR inputs of one return series: per-period ``sharpe`` (mean / std, ddof=1, as
    :mod:`tandem.backtest.stats` before annualising), ``skew`` and plain ``kurtosis`` (normal = 3;
    population moments, as the papers) and ``n_obs``. NaN values are dropped first; fewer than
    2 returns or a flat series give NaN statistics.
    """
    r = np.asarray(returns, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    nan = float("nan")
    if len(r) < 2:
        return {"sharpe": nan, "skew": nan, "kurtosis": nan, "n_obs": len(r)}
    d = r - r.mean()
    m2 = float(np.mean(d * d))
    sd = float(np.std(r, ddof=1))
    if m2 <= 0.0 or sd <= 1e-12 * max(abs(float(r.mean())), 1e-300):
        return {"sharpe": nan, "skew": nan, "kurtosis": nan, "n_obs": len(r)}
    return {"sharpe": float(r.mean()) / sd, "skew": float(np.mean(d**3)) / m2**1.5,
            "kurtosis": float(np.mean(d**4)) / m2**2, "n_obs": len(r)}


def expected_max_sharpe(n_trials: float, var_trials_sharpe: float) -> float:
    """SR0: the expected best per-period Sharpe of ``n_trials`` unskilled trials (DSR paper).

    ``n_trials`` may be fractional (an effective number of independent trials) but must be
    ≥ 1; one trial has nothing to be selected from, so SR0 = 0, and so has a zero variance.
    NaN in, NaN out; a negative variance or fewer than one trial is a ValueError.
    """
    if not _finite(n_trials, var_trials_sharpe):
        return float("nan")
    n, v = float(n_trials), float(var_trials_sharpe)
    if n < 1.0:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if v < 0.0:
        raise ValueError(f"var_trials_sharpe must be >= 0, got {var_trials_sharpe}")
    if n == 1.0 or v == 0.0:
        return 0.0
    z1 = _N01.inv_cdf(1.0 - 1.0 / n)
    z2 = _N01.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(v) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
    n_trials: int,
    var_trials_sharpe: float,
) -> dict[str, Any]:
    """The Deflated Sharpe Ratio of a sweep's winner, with its ingredients.

    All Sharpe ratios are per period (an annualised Sharpe ``S`` over ``ppy`` periods a year
    is ``S / √ppy`` here; so is the variance: ``V_annual / ppy``). Returns
    ``{"dsr", "psr", "sr0", "n_trials", "sharpe", "n_obs", "skew", "kurtosis",
    "var_trials_sharpe"}`` where ``psr`` is PSR against a zero benchmark and
    ``dsr`` = PSR against ``sr0``. Any NaN input gives NaN statistics (no exception).
    """
    sr0 = expected_max_sharpe(n_trials, var_trials_sharpe)
    return {
        "dsr": probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skew, kurtosis),
        "psr": probabilistic_sharpe_ratio(sharpe, 0.0, n_obs, skew, kurtosis),
        "sr0": sr0,
        "n_trials": n_trials,
        "sharpe": sharpe,
        "n_obs": n_obs,
        "skew": skew,
        "kurtosis": kurtosis,
        "var_trials_sharpe": var_trials_sharpe,
    }


# ---------------------------------------------------------------------------------------
# Probability of Backtest Overfitting (CSCV)
# ---------------------------------------------------------------------------------------


def _validate_perf(perf: Any, n_splits: int, metric: str) -> np.ndarray:
    m = np.asarray(perf, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"perf must be a 2-D (periods x trials) array, got {m.ndim} dimension(s)")
    if metric not in PBO_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(PBO_METRICS)}")
    if isinstance(n_splits, bool) or int(n_splits) != n_splits or n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even integer >= 2, got {n_splits}")
    t, n = m.shape
    if n < 2:
        raise ValueError(f"perf needs at least 2 trials (columns) to rank, got {n}")
    if t < n_splits:
        raise ValueError(f"perf has {t} periods (rows), fewer than n_splits={n_splits}")
    if not np.isfinite(m).all():
        raise ValueError("perf holds NaN or infinite returns; fill or drop them first")
    if metric == "total_return" and (m <= -1.0).any():
        raise ValueError("metric total_return needs every return > -1")
    return m


def _block_moments(m: np.ndarray, n_splits: int, metric: str) -> dict[str, Any]:
    """Per-block additive sums (S x N), from which any union of blocks' metric follows.

    Returns are centred on each trial's overall mean first, so the variance from
    Σd² − (Σd)²/n does not cancel catastrophically when the mean dwarfs the spread.
    """
    t = m.shape[0]
    blocks = m.reshape(n_splits, t // n_splits, m.shape[1])
    centre = m.mean(axis=0)
    d = blocks - centre
    out: dict[str, Any] = {"n_half": t // 2, "centre": centre}
    if metric in ("sharpe", "mean"):
        out["s1"] = d.sum(axis=1)
    if metric == "sharpe":
        out["s2"] = (d * d).sum(axis=1)
    if metric == "sortino":
        out["s1"] = d.sum(axis=1)
        out["down2"] = (np.minimum(blocks, 0.0) ** 2).sum(axis=1)
    if metric == "total_return":
        out["log"] = np.log1p(blocks).sum(axis=1)
    return out


def _sum_blocks(per_block: np.ndarray, combos: np.ndarray) -> np.ndarray:
    """Σ over the blocks listed in each row of ``combos`` (C x S/2) of ``per_block`` (S x N).

    A gather-and-add instead of a 0/1 matrix product: BLAS threads spinning next to
    other work on a busy 2-core box made the product 3x slower than this loop.
    """
    acc = per_block[combos[:, 0]]
    for j in range(1, combos.shape[1]):
        acc += per_block[combos[:, j]]
    return acc


def _metric_pair(
    mom: dict[str, Any], combos: np.ndarray, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """The metric of each trial over the blocks in each row of ``combos`` (C x S/2) and over
    the complementary blocks. Undefined values (a flat trial) are -inf so they rank last.

    Both halves hold S/2 equal blocks, so both have n = T/2 rows. The out-of-sample sums
    are the totals minus the in-sample ones (the split is symmetric).
    Operations are in place: at C x N = 12,870 x 2,000 every pass over memory counts.
    """
    n = float(mom["n_half"])
    keys = [k for k in ("s1", "s2", "down2", "log") if k in mom]
    sums = {k: _sum_blocks(mom[k], combos) for k in keys}
    out = []
    for side in (0, 1):
        if side == 0:
            part = sums
        else:
            part = {k: np.subtract(mom[k].sum(axis=0), v) for k, v in sums.items()}
        if metric == "total_return":
            # Side 0 must not overwrite ``sums``: side 1 is computed from them.
            out.append(np.expm1(part["log"], out=part["log"] if side else None))
            continue
        s1 = part["s1"]
        if metric == "sharpe":
            # sd·√(n−1) = √(Σd² − (Σd)²/n); the constant √(n−1) is folded in below.
            den = np.multiply(s1, s1)
            den *= -1.0 / n
            den += part["s2"]
            # A constant stretch (no position for half the history: all zeros, or any
            # constant) leaves only float residue here, ~n·ε of Σd², never exactly 0 once
            # centred on the whole-history mean. Its Sharpe is undefined, not 1e7.
            flat = den <= 1e-9 * part["s2"]
            np.maximum(den, 0.0, out=den)
            np.sqrt(den, out=den)
            den *= 1.0 / math.sqrt(n - 1.0)
        elif metric == "sortino":
            den = np.sqrt(part["down2"] * (1.0 / n))
            flat = den == 0.0  # no downside at all: undefined (the stats module's rule)
        mean = np.multiply(s1, 1.0 / n, out=s1 if side else None)
        mean += mom["centre"]
        if metric == "mean":
            out.append(mean)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            mean /= den
        np.copyto(mean, -np.inf, where=flat)
        out.append(mean)
    return out[0], out[1]


def _ranks_of(values: np.ndarray, pick: np.ndarray) -> np.ndarray:
    """1-based rank (ascending, ties averaged) of column ``pick[c]`` within row c."""
    mine = values[np.arange(len(values)), pick][:, None]
    below = (values < mine).sum(axis=1)
    equal = (values == mine).sum(axis=1)  # includes itself
    return below + (equal + 1) / 2.0


def pbo_cscv(perf: np.ndarray, n_splits: int = 16, metric: str = "sharpe") -> dict[str, Any]:
    """Probability of Backtest Overfitting by combinatorially symmetric cross-validation.

    ``perf`` holds per-period returns, one row per period and one column per trial (N ≥ 2).
    Rows are cut into ``n_splits`` (S, even) equal consecutive blocks; the first
    ``T mod S`` rows are dropped so the blocks are equal (reported as ``dropped_rows``).
    For each of the C(S, S/2) ways to pick half the blocks as in-sample (the rest is
    out-of-sample) the trial with the best in-sample ``metric`` is found, its relative rank
    out of sample ω = rank/(N+1) (rank 1 = worst, ties averaged) gives the logit
    λ = ln(ω/(1−ω)), and PBO = share of λ ≤ 0 (the in-sample best is at or below the
    out-of-sample median).

    ``metric``: ``sharpe`` (per-period mean/std, ddof=1), ``sortino`` (mean / √mean(min(r,0)²),
    as :mod:`tandem.backtest.stats`), ``mean``, or ``total_return`` (compounded). A trial whose
    metric is undefined (flat returns) ranks below every other; an in-sample tie goes to the
    lowest column index.

    Returns ``pbo``, ``logits`` (array, one per combination), ``n_combinations``,
    ``n_splits``, ``is_best_trial`` (column index chosen in each combination),
    ``is_best_oos_rank`` (its relative rank ω out of sample, in (0, 1)), ``is_metric`` and
    ``oos_metric`` of that trial, ``performance_degradation`` = ``{"slope", "intercept"}``
    of the least-squares line OOS ~ IS over the combinations (a negative slope means the
    better in sample, the worse out of sample), ``prob_oos_loss`` = share of combinations
    whose chosen trial has an out-of-sample metric < 0, ``n_trials``, ``n_obs`` and
    ``dropped_rows``. Bad input raises ValueError with a one-line message.
    """
    m = _validate_perf(perf, n_splits, metric)
    s = int(n_splits)
    t, n_trials = m.shape
    dropped = t % s
    m = m[dropped:]
    mom = _block_moments(m, s, metric)

    combos = np.array(list(combinations(range(s), s // 2)), dtype=np.int64)

    picks, is_vals, oos_vals, ranks = [], [], [], []
    # Chunks keep the (combinations x trials) matrices to a few MB each at N ~ 2000.
    chunk = max(1, 2_000_000 // max(n_trials, 1))
    for a in range(0, len(combos), chunk):
        is_m, oos_m = _metric_pair(mom, combos[a:a + chunk], metric)
        best = np.argmax(is_m, axis=1)
        rows = np.arange(len(best))
        picks.append(best)
        is_vals.append(is_m[rows, best])
        oos_vals.append(oos_m[rows, best])
        ranks.append(_ranks_of(oos_m, best))

    pick = np.concatenate(picks)
    # -inf marked "undefined" for ranking; report it as NaN.
    is_best = np.concatenate(is_vals)
    is_best[np.isinf(is_best)] = np.nan
    oos_best = np.concatenate(oos_vals)
    oos_best[np.isinf(oos_best)] = np.nan
    omega = np.concatenate(ranks) / (n_trials + 1.0)
    logits = np.log(omega / (1.0 - omega))

    ok = np.isfinite(is_best) & np.isfinite(oos_best)
    slope = intercept = float("nan")
    if ok.sum() >= 2 and np.ptp(is_best[ok]) > 0:
        slope, intercept = (float(c) for c in np.polyfit(is_best[ok], oos_best[ok], 1))
    return {
        "pbo": float(np.mean(logits <= 0.0)),
        "logits": logits,
        "n_combinations": int(len(combos)),
        "n_splits": s,
        "is_best_trial": pick,
        "is_best_oos_rank": omega,
        "is_metric": is_best,
        "oos_metric": oos_best,
        "performance_degradation": {"slope": slope, "intercept": intercept},
        "prob_oos_loss": float(np.mean(oos_best < 0.0)),  # NaN (flat) is no loss
        "metric": metric,
        "n_trials": int(n_trials),
        "n_obs": int(m.shape[0]),
        "dropped_rows": int(dropped),
    }
