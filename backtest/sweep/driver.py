"""The sweep driver: trials → chunks → executor → parts → results, winners, statistics.

Results are written per chunk as they finish (``<out>/parts/<hash>.parquet``); with
``resume`` the parts already on disk are read first and every trial whose key (parameters +
data fingerprint) is in them is not run again, so an interrupted sweep resumed ends with
the same ``results.parquet`` as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog
from tandem.backtest.sweep.data import SweepData
from tandem.backtest.sweep.evaluate import finalize, stat_columns, trial_key
from tandem.backtest.sweep.space import Dim

log = structlog.get_logger(__name__)

OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "profit_factor")
#: Trials per task at most (smaller when there are few trials per worker).
MAX_CHUNK = 32
#: Files of --out that only some sweeps write (removed before writing the new set).
STALE_OUTPUTS = ("daily_returns.parquet", "sweep_heatmap.png", "sweep_is_oos.png",
                 "sweep_equity.png")


@dataclass
class SweepConfig:
    search: str = "grid"
    trials: int | None = None
    seed: int = 0
    objective: str = "sharpe"
    resume: bool = False
    progress: bool | None = None


@dataclass
class SweepOutcome:
    results: pd.DataFrame
    best: dict[str, Any]
    daily: dict[int, np.ndarray] = field(default_factory=dict)  # trial -> daily returns
    oos_equity: pd.Series | None = None
    overfit: dict[str, Any] = field(default_factory=dict)


def objective_values(df: pd.DataFrame, objective: str, prefix: str = "is") -> pd.Series:
    """The objective per row (calmar = cagr / |max_drawdown|); NaN where undefined."""
    if objective == "calmar":
        dd = df[f"{prefix}_max_drawdown"].abs()
        v = df[f"{prefix}_cagr"] / dd.where(dd > 0)
    else:
        v = df[f"{prefix}_{objective}"].astype("float64")
    v = v.where(df["valid"])
    return v.where(np.isfinite(v))


def fold_winners(results: pd.DataFrame, objective: str) -> list[dict[str, Any]]:
    """Per fold: the best in-sample trial (ties: lowest trial; NaN never wins)."""
    out = []
    for fold, g in results.groupby("fold", sort=True):
        v = objective_values(g, objective, "is")
        ok = g[v.notna()].assign(_v=v[v.notna()])
        if ok.empty:
            out.append({"fold": int(fold), "trial": None})
            continue
        row = ok.sort_values(["_v", "trial"], ascending=[False, True], kind="stable").iloc[0]
        oos = objective_values(ok.loc[[row.name]], objective, "oos").iloc[0]
        out.append({"fold": int(fold), "trial": int(row["trial"]), "is_value": float(row["_v"]),
                    "oos_value": None if pd.isna(oos) else float(oos)})
    return out


def no_effect_fields(results: pd.DataFrame, dims: list[Dim],
                     params: dict[int, dict[str, Any]]) -> list[str]:
    """Swept fields whose value never changed a valid trial's statistics (every fold, in
    and out of sample) while the other fields stayed the same.

    A percent given as 5 (take_profit_pct 500 %: never reached), risk_pct under fraction
    sizing, max_weight in discrete mode: every value gave the same numbers, the winner was
    the lowest trial of the tie, and its value was written to the profile as the best one,
    exit 0. A field only counts when some pair of trials differing in it alone was run
    (random draws of continuous values seldom give one: nothing is claimed then).
    """
    ok = results[results["valid"]].sort_values(["trial", "fold"], kind="stable")
    if ok.empty:
        return []
    # One row of every fold's statistics per trial (each trial has the same folds); NaN as
    # 0 plus a mask, so equal rows give equal bytes. A frame, not a groupby: 10^5 trials.
    trials = ok["trial"].to_numpy()[:: ok["fold"].nunique()]
    vals = ok[stat_columns()].to_numpy(dtype=np.float64).reshape(len(trials), -1)
    keys = np.hstack([np.where(np.isnan(vals), 0.0, vals), np.isnan(vals)])
    sig = {int(t): k.tobytes() for t, k in zip(trials, keys, strict=True)}
    out = []
    for d in dims:
        groups: dict[str, dict[str, bytes]] = {}
        for t, s in sig.items():
            p = params.get(t, {})
            rest = json.dumps({k: v for k, v in p.items() if k != d.path}, sort_keys=True)
            groups.setdefault(rest, {})[json.dumps(p.get(d.path))] = s
        pairs = [g for g in groups.values() if len(g) > 1]
        if pairs and all(len(set(g.values())) == 1 for g in pairs):
            out.append(d.path)
    return out


def _oos_run(data: SweepData, fold: int) -> dict[str, Any]:
    """``{"oos_run": {from, to, warmup_bars}}``: the ``tandem-backtest run`` options that
    give a fold's out-of-sample figures with its winner's parameters. Its ratings come from
    the whole loaded window, so ``run --from <fold start>`` with the profile's own warm-up
    can trade differently (README); this warm-up loads what the sweep loaded."""
    oos = [s for s in data.segments if s.fold == fold and s.kind == "oos"]
    if not oos:
        return {}
    seg = oos[0]
    iso = [pd.Timestamp(t, unit="ms", tz="UTC").isoformat() for t in (seg.start_ms, seg.end_ms)]
    return {"oos_run": {"from": iso[0], "to": iso[1],
                        "warmup_bars": data.warmup_bars_for(seg.start_ms)}}


def _chunks(items: list[tuple[int, dict]], n_workers: int) -> list[list[tuple[int, dict]]]:
    size = max(1, min(MAX_CHUNK, math.ceil(len(items) / (4 * max(1, n_workers)))))
    return [items[k:k + size] for k in range(0, len(items), size)]


class PartStore:
    """Chunk results on disk, keyed by trial key."""

    def __init__(self, out: Path, resume: bool) -> None:
        self.dir = out / "parts"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows: dict[str, pd.DataFrame] = {}
        if not resume:
            for p in self.dir.glob("*.parquet"):
                p.unlink()  # a fresh sweep never mixes in an older one's rows
            return
        for p in sorted(self.dir.glob("*.parquet")):
            try:
                df = pd.read_parquet(p)
            except Exception:  # noqa: BLE001 - a part cut short by a kill: rerun its trials
                log.warning("sweep_part_unreadable", path=str(p))
                continue
            for key, g in df.groupby("key", sort=False):
                self.rows.setdefault(str(key), g)

    def add(self, df: pd.DataFrame) -> None:
        keys = sorted(df["key"].unique())
        name = hashlib.sha256("|".join(keys).encode()).hexdigest()[:20]
        tmp = self.dir / f".{name}.tmp"
        df.to_parquet(tmp, index=False)
        tmp.replace(self.dir / f"{name}.parquet")  # atomic: a kill leaves no half part
        for key, g in df.groupby("key", sort=False):
            self.rows.setdefault(str(key), g)


def run_sweep(base: Any, data: SweepData, dims: list[Dim], cfg: SweepConfig, out: Path,
              executor: Any) -> SweepOutcome:
    """Generate, evaluate and collect every trial; pick winners; compute DSR/PBO."""
    from tandem.backtest.sweep import search

    store = PartStore(out, cfg.resume)
    trial_rows: dict[int, str] = {}  # trial index -> key
    bar = _bar(cfg, _total(dims, cfg))

    def evaluate(batch: list[tuple[int, dict]]) -> None:
        todo, seen = [], set()
        for t, params in batch:
            key = trial_key(params, data)
            trial_rows[t] = key
            if key in store.rows or key in seen:
                if bar is not None:
                    bar.update(1)
                continue
            seen.add(key)
            todo.append((t, params))
        for _, df in executor.run(_chunks(todo, executor.n_workers)):
            store.add(df)
            if bar is not None:
                bar.update(df["trial"].nunique())

    try:
        if cfg.search == "tpe":
            tpe = search.TpeSearch(dims, cfg.seed)
            n = cfg.trials or 100
            t = 0
            while t < n:
                params = tpe.ask(min(search.TPE_BATCH, n - t))
                batch = list(enumerate(params, start=t))
                evaluate(batch)
                vals = []
                for k, _ in batch:
                    rows = store.rows[trial_rows[k]]
                    # Only the first fold's in-sample objective steers the search: a later
                    # fold's training window covers earlier folds' test windows (rolling
                    # and anchored alike), so the mean over folds let out-of-sample bars
                    # choose the candidates those folds' winners were then picked from.
                    rows = rows[rows["fold"] == rows["fold"].min()]
                    v = objective_values(rows, cfg.objective, "is")
                    vals.append(float(v.iloc[0]) if v.notna().all() else float("nan"))
                tpe.tell(vals)
                t += len(batch)
        else:
            if cfg.search == "grid":
                params = search.grid_trials(dims)
                if cfg.trials is not None:
                    params = params[:cfg.trials]
            else:
                params = search.random_trials(dims, cfg.trials or 100, cfg.seed)
            evaluate(list(enumerate(params)))
    finally:
        if bar is not None:
            bar.close()

    frames = []
    daily: dict[int, np.ndarray] = {}
    params: dict[int, dict[str, Any]] = {}
    counted: set[str] = set()
    for t in sorted(trial_rows):
        g = store.rows[trial_rows[t]].copy()
        g["trial"] = t
        frames.append(g)
        # The values the trial ran with (its canonical JSON), not read back from the typed
        # param.* columns: a column mixing kinds is text, and '0.03' was then written to
        # the profile (a ManifestError traceback after the whole sweep).
        params[t] = json.loads(g["_params"].iloc[0])
        if trial_rows[t] in counted:
            # The same parameters drawn again (random/tpe, or a grid --trials larger than
            # the grid's distinct values): one trial for DSR/PBO, not another independent
            # one — 60 draws of 18 combinations gave another DSR and PBO than the 18.
            continue
        counted.add(trial_rows[t])
        first = g.sort_values("fold").iloc[0]
        if bool(first["valid"]):
            daily[t] = np.asarray(first["_daily"], dtype=np.float64)
    results = finalize(pd.concat(frames, ignore_index=True), dims)
    return summarize(results, daily, dims, cfg, data, base, params)


def _total(dims: list[Dim], cfg: SweepConfig) -> int:
    from tandem.backtest.sweep.search import grid_size

    if cfg.search == "grid":
        n = grid_size(dims)
        return min(n, cfg.trials) if cfg.trials is not None else n
    return cfg.trials or 100


def _bar(cfg: SweepConfig, total: int) -> Any:
    if cfg.progress is False:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="trial", desc="sweep", leave=False,
                disable=None if cfg.progress is None else False)


def params_of(results: pd.DataFrame, trial: int, dims: list[Dim]) -> dict[str, Any]:
    row = results[results["trial"] == trial].iloc[0]
    out = {}
    for d in dims:
        v = row[d.column]
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and d.integer:
            v = int(v)
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[d.path] = v
    return out


def summarize(results: pd.DataFrame, daily: dict[int, np.ndarray], dims: list[Dim],
              cfg: SweepConfig, data: SweepData, base: Any,
              params: dict[int, dict[str, Any]] | None = None) -> SweepOutcome:
    """Fold winners, the chosen trial (the last fold's winner), stitched OOS equity, DSR/PBO.

    ``params``: trial -> the parameters it ran with (default: read from ``results``).
    """
    def pick(t: int | None) -> dict[str, Any] | None:
        if t is None:
            return None
        if params is None:
            return params_of(results, t, dims)
        return {d.path: params[t].get(d.path) for d in dims}  # in the space file's order

    winners = fold_winners(results, cfg.objective)
    chosen = winners[-1]["trial"] if winners else None
    first_fold = results[results["fold"] == results["fold"].min()]
    n_valid = int(first_fold["valid"].sum())
    best: dict[str, Any] = {
        "objective": cfg.objective, "search": cfg.search, "seed": cfg.seed,
        "n_trials": int(results["trial"].nunique()), "n_valid": n_valid,
        "n_distinct": int(first_fold["key"].nunique()),
        "data_fingerprint": data.fingerprint, "trial": chosen,
        "params": pick(chosen),
        "value": winners[-1].get("is_value") if winners else None,
        "profile_hash": None,
        "folds": [dict(w, params=pick(w["trial"]), **_oos_run(data, w["fold"]))
                  for w in winners],
    }
    oos = stitched_oos_equity(results, winners, dims, data, base, pick) if (
        data.n_folds > 1 or any(s.kind == "oos" for s in data.segments)) else None
    overfit = overfit_stats(daily, chosen, cfg.objective)
    summary = overfit_summary(overfit)
    best["no_effect"] = no_effect_fields(results, dims, params or {})
    best["dsr"] = summary.get("dsr", {}).get("dsr")
    best["pbo"] = summary.get("pbo", {}).get("pbo")
    best["overfit"] = summary
    return SweepOutcome(results=results, best=best, daily=daily, oos_equity=oos,
                        overfit=overfit)


def single_trial(data: SweepData, base: Any, params: dict[str, Any], seg_index: int,
                 keep_fills: int = 0) -> tuple[np.ndarray, np.ndarray, Any]:
    """One trial on one segment through the sweep kernel: ``(equity, raw fills, profile)``."""
    from tandem.backtest.sweep.evaluate import profile_rows
    from tandem.backtest.sweep.space import trial_profile
    from tandem.core.trials import run_trials

    prof, err = trial_profile(base, params)
    if prof is None:
        raise ValueError(err)
    seg = data.segments[seg_index]
    lo, hi, ppy, smp = data.seg_arrays()
    sl = slice(seg_index, seg_index + 1)
    _, _, eq, raw = run_trials(data.ratings, data.ts_close, data.open, data.high, data.low,
                               data.close, data.mtf_mask, profile_rows([prof], data), lo[sl],
                               hi[sl], ppy[sl], smp[sl], data.sample_idx, keep_fills=keep_fills,
                               warm_close=data.warm_close)
    return eq[seg.lo:seg.hi], raw, prof


def stitched_oos_equity(results: pd.DataFrame, winners: list[dict[str, Any]], dims: list[Dim],
                        data: SweepData, base: Any, pick: Any = None) -> pd.Series | None:
    """Each fold winner's out-of-sample equity, chained by returns from its initial cash.
    ``pick``: trial -> its parameters (default: read from ``results``)."""
    parts, level = [], None
    for w in winners:
        if w["trial"] is None:
            continue
        k = next(i for i, s in enumerate(data.segments) if s.fold == w["fold"] and s.kind == "oos")
        params = pick(w["trial"]) if pick is not None else params_of(results, w["trial"], dims)
        eq, _, prof = single_trial(data, base, params, k)
        cash = float(prof.initial_cash)
        level = cash if level is None else level
        scaled = level * eq / cash
        seg = data.segments[k]
        parts.append(pd.Series(scaled, index=data.ts_close[seg.lo:seg.hi]))
        level = float(scaled[-1])
    if not parts:
        return None
    s = pd.concat(parts)
    s.index.name = "ts"
    s.name = "equity"
    return s


def overfit_stats(daily: dict[int, np.ndarray], chosen: int | None,
                  objective: str = "sharpe") -> dict[str, Any]:
    """``{"dsr": ..., "pbo": ..., "notes": [...]}`` of the chosen trial and of all valid trials.

    Inputs are daily returns (equity sampled at each UTC day's last bar): the full range
    without walk-forward, the out-of-sample folds end to end with it. DSR: per-period (daily)
    Sharpe, skew and plain kurtosis of the chosen trial, the number of valid trials and the
    variance of their daily Sharpe ratios. PBO: CSCV over the (days × trials) matrix,
    ranking the trials by the sweep's ``objective`` where CSCV has it per period (sharpe,
    sortino, total_return), else by Sharpe (noted): PBO judges the selection the sweep made,
    and a total-return sweep's PBO was that of picking by Sharpe, without a word.
    ``daily`` holds each distinct parameter set once (:func:`run_sweep` drops repeats), and
    trials whose daily returns are identical count once too (the chosen one stands for its
    group): a swept field without effect (risk_pct under fraction sizing) gave N clones
    whose tied out-of-sample ranks made PBO 1.0 ("overfit") and inflated DSR's trial count.
    """
    from tandem.backtest.sweep.overfit import (
        PBO_METRICS,
        deflated_sharpe_ratio,
        pbo_cscv,
        return_moments,
    )

    notes: list[str] = []
    if chosen is not None and chosen in daily:
        groups: dict[bytes, list[int]] = {}
        for t in sorted(daily):
            groups.setdefault(np.asarray(daily[t], dtype=np.float64).tobytes(), []).append(t)
        keep = [chosen if chosen in g else g[0] for g in groups.values()]
        if len(keep) < len(daily):
            notes.append(f"{len(daily) - len(keep)} trial(s) with the same daily returns as "
                         "another counted once")
            daily = {t: daily[t] for t in keep}
    if chosen is None or chosen not in daily or len(daily) < 2:
        return {"notes": notes + ["fewer than two valid trials with distinct daily returns: "
                                  "no DSR/PBO"]}
    if len({len(v) for v in daily.values()}) != 1:
        return {"notes": ["the trials' daily return series differ in length: no DSR/PBO"]}
    trials = sorted(daily)
    perf = np.column_stack([daily[t] for t in trials])
    perf = np.where(np.isfinite(perf), perf, 0.0)
    out: dict[str, Any] = {}
    sharpes = np.array([return_moments(perf[:, j])["sharpe"] for j in range(perf.shape[1])])
    finite = sharpes[np.isfinite(sharpes)]
    mom = return_moments(perf[:, trials.index(chosen)])
    if len(finite) >= 2 and np.isfinite(mom["sharpe"]):
        out["dsr"] = deflated_sharpe_ratio(
            sharpe=mom["sharpe"], n_obs=int(mom["n_obs"]), skew=mom["skew"],
            kurtosis=mom["kurtosis"], n_trials=len(trials),
            var_trials_sharpe=float(np.var(finite, ddof=1)))
    else:
        notes.append("DSR undefined: the chosen trial (or all but one) has flat daily returns")
    n_splits = min(16, (perf.shape[0] // 4) * 2)
    metric = objective if objective in PBO_METRICS else "sharpe"
    if n_splits >= 4:
        if metric != objective:
            notes.append(f"PBO ranks the trials by sharpe: {objective} has no per-period form "
                         "for CSCV")
        try:
            out["pbo"] = pbo_cscv(perf, n_splits=n_splits, metric=metric)
            if dropped := out["pbo"]["dropped_rows"]:
                # CSCV needs equal blocks: the first days are left out. Said, since the
                # figure reads as the whole history's (45 days kept only the last 32).
                notes.append(f"PBO leaves out the first {dropped} of {perf.shape[0]} days "
                             f"({n_splits} blocks of equal length)")
        except ValueError as exc:
            notes.append(f"PBO not computed: {exc}")
    else:
        notes.append(f"PBO needs at least 8 days of returns, got {perf.shape[0]}")
    out["notes"] = notes
    return out


def overfit_summary(overfit: dict[str, Any]) -> dict[str, Any]:
    """The scalar figures of :func:`overfit_stats` (for best.json: no per-combination arrays)."""
    out: dict[str, Any] = {}
    for part in ("dsr", "pbo"):
        d = overfit.get(part)
        if isinstance(d, dict):
            out[part] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in d.items()
                         if not isinstance(v, np.ndarray | list | tuple)}
    out["notes"] = list(overfit.get("notes", []))
    return out


def write_outputs(outcome: SweepOutcome, out: Path, dims: list[Dim]) -> dict[str, Path]:
    """results.parquet, best.json, the daily returns, and the report when available."""
    from tandem.backtest.stats import _json_safe

    files = {"results.parquet": out / "results.parquet", "best.json": out / "best.json"}
    # Outputs this sweep may not write (no daily returns without a valid trial, a plot it
    # has no data for) were otherwise a previous sweep's in the same --out, read as this one's.
    for name in STALE_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    outcome.results.to_parquet(files["results.parquet"], index=False)
    if outcome.daily:
        trials = sorted(outcome.daily)
        lengths = {len(outcome.daily[t]) for t in trials}
        if len(lengths) == 1:
            pd.DataFrame({str(t): outcome.daily[t] for t in trials}).to_parquet(
                out / "daily_returns.parquet", index=False)
            files["daily_returns.parquet"] = out / "daily_returns.parquet"
    from tandem.backtest.sweep.report import write_sweep_report

    # The report marks our fold winners (ties: lowest trial) through `selected`.
    sel = outcome.results.copy()
    picks = {(f["fold"], f["trial"]) for f in outcome.best["folds"]}
    sel["selected"] = [(f, t) in picks for f, t in zip(sel["fold"], sel["trial"], strict=True)]
    files.update(write_sweep_report(out, sel, objective=outcome.best["objective"],
                                    param_cols=[d.column for d in dims], best=outcome.best,
                                    oos_equity=outcome.oos_equity, overfit=outcome.overfit))
    files["best.json"].write_text(json.dumps(_json_safe(outcome.best), indent=2,
                                             allow_nan=False) + "\n")
    return files
