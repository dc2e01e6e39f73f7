"""Evaluate a chunk of trials: profiles → kernel parameters → result rows.

This is the body of one Dask task (or of one in-process step): it validates each trial's
profile with the manifest model, runs the valid ones through :func:`tandem.core.trials.run_trials`
on the shared :class:`~tandem.backtest.sweep.data.SweepData`, and returns one row per trial × fold
(the ``results.parquet`` schema plus two private columns: ``_params``, the canonical
parameter JSON, and ``_daily``, the trial's daily returns for the overfitting statistics).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
from tandem.backtest.runner import DataError
from tandem.backtest.sweep.data import SweepData, code_version
from tandem.backtest.sweep.space import params_key, trial_profile
from tandem.core.trials import N_SP, STAT_NAMES, TrialBatch, run_trials

TRIAL_COLUMNS = ("trial", "fold", "key", "data_fingerprint", "valid", "error")
SEG_COLUMNS = ("is_start", "is_end", "oos_start", "oos_end")


def trial_key(params: dict[str, Any], data: SweepData) -> str:
    """Resume key: sha256 of the canonical parameter JSON, the data fingerprint and the
    client's code version (:func:`tandem.backtest.sweep.data.code_version`)."""
    text = params_key(params) + "|" + data.fingerprint + "|" + data.code
    return hashlib.sha256(text.encode()).hexdigest()


def profile_rows(profiles: list[Any], data: SweepData) -> TrialBatch:
    """Kernel parameter rows of validated trial profiles."""
    from tandem.core.engine import EngineConfig
    from tandem.core.signals import SignalParams

    n = len(profiles)
    n_tf = data.ratings.shape[3]
    sp = np.zeros((n, N_SP))
    w = np.zeros((n, n_tf))
    ep = []
    port = np.zeros(n, dtype=np.bool_)
    for k, prof in enumerate(profiles):
        p = SignalParams.from_profile(prof, data.symbols)
        sp[k] = (data.rating_cols[prof.strategy], p.mode, p.entry, p.exit, p.min_agree,
                 1.0 if p.portfolio else 0.0, p.max_weight, p.every_ms, p.every_off)
        w[k] = p.weights
        ep.append(EngineConfig(**prof.engine_params()).to_params())
        port[k] = p.portfolio
    eparams = np.vstack(ep) if ep else np.zeros((0, 15))
    weighting = [p.portfolio if port[k] and not p.portfolio.plain_score() else None
                 for k, p in enumerate(profiles)]
    return TrialBatch(sparams=sp, weights=w, eparams=eparams, portfolio=port,
                      weighting=weighting)


def daily_returns(samples: np.ndarray, data: SweepData, cash: float) -> np.ndarray:
    """Daily returns of one trial from its sampled equity, segment by segment (each
    sampled segment starts from ``cash``)."""
    out = []
    for seg in data.segments:
        if not data.sampled(seg):
            continue
        sel = (data.sample_idx >= seg.lo) & (data.sample_idx < seg.hi)
        eq = samples[sel]
        prev = np.concatenate([[cash], eq[:-1]])
        out.append(eq / prev - 1.0)
    return np.concatenate(out) if out else np.empty(0)


def evaluate_chunk(data: SweepData, base: Any, trials: list[tuple[int, dict[str, Any]]]
                   ) -> pd.DataFrame:
    """Result rows of ``trials`` (``[(trial index, params)]``) on ``data``.

    ``base``: the base :class:`tandem.core.manifest.Profile`.
    """
    if data.code and data.code != code_version():
        # A Dask worker with another Tandem release computed other numbers for the same
        # trial, and they were mixed into one result table without a word.
        raise DataError(f"a sweep worker runs other Tandem code ({code_version()}) than the "
                        f"client ({data.code}): install the same version on every worker")
    valid_idx, profiles, errors = [], [], {}
    for t, params in trials:
        prof, err = trial_profile(base, params)
        if prof is None:
            errors[t] = err
        else:
            valid_idx.append(t)
            profiles.append(prof)
            if prof.strategy not in data.rating_cols:  # the driver ships every swept one
                raise ValueError(f"strategy {prof.strategy} has no ratings in this sweep")
    stats = samples = None
    if profiles:
        batch = profile_rows(profiles, data)
        lo, hi, ppy, smp = data.seg_arrays()
        stats, samples, _, _ = run_trials(
            data.ratings, data.ts_close, data.open, data.high, data.low, data.close,
            data.mtf_mask, batch, lo, hi, ppy, smp, data.sample_idx,
            warm_close=data.warm_close)
    pos = {t: k for k, t in enumerate(valid_idx)}
    rows = []
    folds = sorted({s.fold for s in data.segments})
    for t, params in trials:
        key = trial_key(params, data)
        k = pos.get(t)
        daily = (daily_returns(samples[k], data, float(profiles[k].initial_cash)).tolist()
                 if k is not None else [])
        for f in folds:
            row: dict[str, Any] = {
                "trial": t, "fold": f, "key": key, "data_fingerprint": data.fingerprint,
                "valid": k is not None, "error": errors.get(t, ""),
                "_params": params_key(params), "_daily": daily if f == folds[0] else [],
            }
            for s_idx, seg in enumerate(data.segments):
                if seg.fold != f:
                    continue
                row[f"{seg.kind}_start"] = seg.start_ms
                row[f"{seg.kind}_end"] = seg.end_ms
                for j, name in enumerate(STAT_NAMES):
                    row[f"{seg.kind}_{name}"] = (float(stats[k, s_idx, j]) if k is not None
                                                 else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def stat_columns() -> list[str]:
    return [f"{p}_{n}" for p in ("is", "oos") for n in STAT_NAMES]


def finalize(parts: pd.DataFrame, dims: list[Any]) -> pd.DataFrame:
    """The ``results.parquet`` frame: fixed column order, one ``param.*`` per dimension,
    missing out-of-sample columns as NaN, sorted by trial then fold."""
    df = parts.sort_values(["trial", "fold"], kind="stable").reset_index(drop=True)
    out = pd.DataFrame({
        "trial": df["trial"].astype("int64"), "fold": df["fold"].astype("int64"),
        "key": df["key"].astype(str), "data_fingerprint": df["data_fingerprint"].astype(str),
        "valid": df["valid"].astype(bool), "error": df["error"].fillna("").astype(str),
    })
    params = [json.loads(p) for p in df["_params"]]
    for d in dims:
        vals = [p.get(d.path) for p in params]
        out[d.column] = _param_series(vals)
    for col in stat_columns():
        out[col] = (df[col].astype("float64") if col in df.columns
                    else pd.Series(np.nan, index=df.index))
    for col in SEG_COLUMNS:
        if col in df.columns:
            # int64 ms; float only where a bound is missing (invalid rows have them too)
            out[col] = (df[col].astype("int64") if df[col].notna().all()
                        else df[col].astype("float64"))
        else:
            out[col] = pd.Series(np.nan, index=df.index)
    return out


def _param_series(vals: list[Any]) -> pd.Series:
    """One dtype per parameter column: bool, float, or str (mixed kinds become str)."""
    present = [v for v in vals if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(vals, dtype="boolean")
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pd.Series([np.nan if v is None else float(v) for v in vals], dtype="float64")
    return pd.Series(["" if v is None else str(v) for v in vals], dtype=object)
