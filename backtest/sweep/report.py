"""``sweep.html`` and PNGs: what a parameter sweep found and how far to trust it.

One self-contained page (inline SVG, a few lines of CSS and JS, no network) with: a summary
(trials, validity, the winner, the Deflated Sharpe Ratio and the Probability of Backtest
Overfitting, each with a sentence on how to read it), objective heatmaps over every pair of
parameters (a ``<select>`` switches between pre-rendered SVGs), parameter importance, the
in-sample vs out-of-sample scatter and stitched out-of-sample equity of a walk-forward, the
per-fold winners, the PBO logit histogram and the invalid trials with their messages.

How the numbers are made (so a test can rebuild them with pandas):

* **objective** of a row = its ``is_<objective>`` column (``oos_`` for out of sample);
  ``calmar`` is ``cagr / |max_drawdown|`` when there is no ``is_calmar`` column (NaN at a
  zero drawdown). Infinite values (a profit factor with no losing trade) count as NaN in
  averages: one would swamp every mean it enters.
* **per-trial objective** = mean over that trial's valid folds of the finite values.
* **heatmap cell** = mean of the per-trial objective over the trials in the cell, i.e.
  averaged over every other parameter. A numeric parameter with more than
  :data:`MAX_LEVELS` distinct values (random/TPE search) is cut into 10 quantile bins.
* **importance** = η² of a one-way ANOVA of the per-trial objective on the parameter's
  levels (bins): between-level sum of squares / total sum of squares, the share of the
  objective's variance the parameter alone explains. η² is biased up with few trials per
  level: a parameter with no effect at all still scores about (k−1)/(n−1) for k levels and n
  trials; the page prints that baseline next to it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tandem.backtest import svg
from tandem.backtest.plots import write_equity_png
from tandem.backtest.report import _CSS as _RUN_CSS  # same look as report.html
from tandem.backtest.sweep.pngs import bars_png, heatmap_png, level_color, scatter_png, short

OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "profit_factor")
MAX_LEVELS = 12  # a numeric parameter with more distinct values is binned
N_BINS = 10
MAX_PAIRS = 66  # heatmaps for every pair of the 12 most important parameters at most
MAX_INVALID_ROWS = 300
MAX_POINTS = 3000  # IS/OOS scatter: every fold winner plus a sample of this many

_CSS = _RUN_CSS + """
.heat .cell{stroke:#fff;stroke-width:1} .heat .nan{fill:#e3e8ee}
.heat text,.bars text,.scatter text{font-size:11px;fill:#1d2733}
.heat .axis,.bars .axis,.scatter .axis{font-size:12px;font-weight:600}
.bars .bar{fill:#1f6feb} .bars .bar.neg{fill:#cf222e} .bars .bar.pbo-neg{fill:#cf222e}
.scatter .pt{fill:#1f6feb;fill-opacity:.45} .scatter .pt.win{fill:#cf222e;fill-opacity:1}
.scatter .diag{stroke:#8c959f;stroke-dasharray:4 3} .scatter .frame,.bars .frame{fill:#fbfcfd;
stroke:#d5dbe1} .note{color:#5a6875;font-style:italic} .explain{max-width:900px}
svg.fig{width:100%;height:auto;display:block;margin:6px 0}
td.txt,th.txt{text-align:left} td.when{white-space:nowrap}
"""

# Shows one heatmap at a time; without JS every heatmap stays visible.
_JS = """
(function(){var s=document.getElementById('pair-select');if(!s)return;
function show(){document.querySelectorAll('.heatmap-pair').forEach(function(e){
e.hidden=(e.dataset.pair!==s.value);});}
s.addEventListener('change',show);show();})();
"""

_DSR_KEYS = ("dsr", "psr", "sr0", "n_trials", "sharpe", "n_obs", "skew", "kurtosis",
             "var_trials_sharpe")
_PBO_KEYS = ("logits", "n_combinations", "n_splits", "prob_oos_loss",
             "performance_degradation", "metric")


# ------------------------------------------------------------------ data preparation


def objective_values(results: pd.DataFrame, objective: str, side: str = "is") -> pd.Series:
    """The objective of every row, in sample (``side="is"``) or out of sample (``"oos"``).

    ±inf becomes NaN (see the module docstring); a missing column is a ValueError.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    col = f"{side}_{objective}"
    if col in results.columns:
        v = pd.to_numeric(results[col], errors="coerce").astype(np.float64)
    elif objective == "calmar" and {f"{side}_cagr", f"{side}_max_drawdown"} <= set(results.columns):
        cagr = pd.to_numeric(results[f"{side}_cagr"], errors="coerce").astype(np.float64)
        mdd = pd.to_numeric(results[f"{side}_max_drawdown"], errors="coerce").abs()
        v = cagr / mdd.where(mdd > 0)
    else:
        raise ValueError(f"results have no column {col!r} for objective {objective!r}")
    return v.replace([np.inf, -np.inf], np.nan)


def _param_column(results: pd.DataFrame, name: str) -> str:
    for col in (name, f"param.{name}"):
        if col in results.columns:
            return col
    raise ValueError(f"results have no parameter column {name!r} (nor 'param.{name}')")


def _label(name: str) -> str:
    return name[len("param."):] if name.startswith("param.") else name


def _fmt(v: Any, digits: int = 4) -> str:
    """A number for people: 4 significant digits, '–' for missing."""
    if v is None:
        return "–"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "–" if math.isnan(f) else ("∞" if f > 0 else "−∞")
    return f"{f:.{digits}g}"


def param_levels(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Each value's level index and the level labels, in display order.

    Numbers (not bools) sort numerically; more than :data:`MAX_LEVELS` distinct numbers are
    cut into quantile bins labelled ``[lo, hi]``. Anything else is a category sorted by its
    text. A missing value is its own level, ``–``, last.
    """
    missing = values.isna().to_numpy()
    present = values[~missing]
    codes = np.full(len(values), -1, dtype=np.int64)
    is_num = len(present) > 0 and all(
        isinstance(v, int | float | np.integer | np.floating)
        and not isinstance(v, bool | np.bool_) for v in present)
    if is_num:
        nums = present.astype(np.float64)
        uniq = np.unique(nums.to_numpy())
        if len(uniq) <= MAX_LEVELS:
            codes[~missing] = np.searchsorted(uniq, nums.to_numpy())
            labels = [_fmt(u, 6) for u in uniq]
        else:
            cut, edges = pd.qcut(nums, N_BINS, retbins=True, duplicates="drop", labels=False)
            codes[~missing] = np.asarray(cut, dtype=np.int64)
            labels = [f"[{_fmt(a)}, {_fmt(b)}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    else:
        text = present.map(str)
        labels = sorted(text.unique())
        codes[~missing] = text.map({t: i for i, t in enumerate(labels)}).to_numpy()
    if missing.any():
        codes[missing] = len(labels)
        labels = [*labels, "–"]
    return codes, labels


def trial_table(results: pd.DataFrame, objective: str, param_cols: Sequence[str]) -> pd.DataFrame:
    """One row per trial with a valid fold: its parameters and objective averaged over folds.

    Columns: ``trial``, the parameter columns as given in ``results``, ``objective`` (in
    sample) and ``oos_objective``.
    """
    df = _prepared(results, objective)
    cols = [_param_column(results, p) for p in param_cols]
    ok = df[df["_valid"]]
    if not len(ok):
        return pd.DataFrame(columns=["trial", *cols, "objective", "oos_objective"])
    agg = ok.groupby("_trial", sort=True).agg(
        objective=("_obj", "mean"), oos_objective=("_oos", "mean"),
        **{c: (c, "first") for c in cols})
    return agg.reset_index().rename(columns={"_trial": "trial"})


def _prepared(results: pd.DataFrame, objective: str) -> pd.DataFrame:
    df = results.copy()
    df["_trial"] = df["trial"] if "trial" in df.columns else np.arange(len(df))
    df["_fold"] = df["fold"] if "fold" in df.columns else 0
    valid = df["valid"] if "valid" in df.columns else pd.Series(True, index=df.index)
    df["_valid"] = valid.fillna(False).astype(bool)
    df["_obj"] = objective_values(df, objective, "is") if len(df) else np.nan
    try:
        df["_oos"] = objective_values(df, objective, "oos")
    except ValueError:
        df["_oos"] = np.nan
    return df


def heatmap_grid(
    trials: pd.DataFrame, x_col: str, y_col: str, value: str = "objective"
) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """x labels, y labels, mean ``value`` per (y, x) cell (NaN when empty) and trial counts."""
    xc, xl = param_levels(trials[x_col])
    yc, yl = param_levels(trials[y_col])
    v = trials[value].to_numpy(np.float64)
    ok = np.isfinite(v)
    sums = np.zeros((len(yl), len(xl)))
    counts = np.zeros((len(yl), len(xl)), dtype=np.int64)
    np.add.at(sums, (yc[ok], xc[ok]), v[ok])
    np.add.at(counts, (yc[ok], xc[ok]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return xl, yl, means, counts


def parameter_importance(trials: pd.DataFrame, param_cols: Sequence[str]) -> pd.DataFrame:
    """η² of the per-trial objective on each parameter's levels (see the module docstring).

    Columns: ``param`` (name without the ``param.`` prefix), ``column``, ``eta2``,
    ``levels``, ``baseline`` = (k−1)/(n−1), sorted by ``eta2`` (NaN last).
    """
    v_all = trials["objective"].to_numpy(np.float64) if len(trials) else np.array([])
    ok = np.isfinite(v_all)
    v = v_all[ok]
    rows = []
    for col in param_cols:
        codes, labels = param_levels(trials[col]) if len(trials) else (np.array([]), [])
        c = codes[ok]
        k = len(np.unique(c)) if len(c) else 0
        eta2 = float("nan")
        ss_tot = float(((v - v.mean()) ** 2).sum()) if len(v) else 0.0
        if len(v) >= 2 and ss_tot > 0:
            means = pd.Series(v).groupby(c).transform("mean").to_numpy()
            eta2 = float(((means - v.mean()) ** 2).sum() / ss_tot)
        base = (k - 1) / (len(v) - 1) if len(v) > 1 and k else float("nan")
        rows.append({"param": _label(col), "column": col, "eta2": eta2, "levels": len(labels),
                     "baseline": base})
    out = pd.DataFrame(rows, columns=["param", "column", "eta2", "levels", "baseline"])
    return out.sort_values("eta2", ascending=False, na_position="last", kind="stable")


def _fold_winners(df: pd.DataFrame, best: dict | None = None) -> pd.DataFrame:
    """Per fold, the winning row. The sweep's own choice when ``best["folds"]`` lists it
    (``[{"fold", "trial", ...}]``, as best.json), else a boolean ``selected`` column, else the
    valid row with the best finite in-sample objective (ties: lowest trial, the sweep's rule).
    ``df`` is :func:`_prepared`'s."""
    folds = (best or {}).get("folds")
    if isinstance(folds, list) and folds and all(isinstance(f, dict) for f in folds):
        keys = {(f.get("trial"), f.get("fold")) for f in folds if f.get("trial") is not None}
        hit = [(t, f) in keys for t, f in zip(df["_trial"], df["_fold"], strict=True)]
        return df[np.asarray(hit, dtype=bool)].sort_values("_fold", kind="stable")
    df = df[df["_valid"]]
    if "selected" in df.columns:
        return df[df["selected"].fillna(False).astype(bool)].sort_values("_fold", kind="stable")
    df = df[np.isfinite(df["_obj"])]
    ranked = df.sort_values(["_obj", "_trial"], ascending=[False, True], kind="stable")
    return ranked.drop_duplicates("_fold").sort_values("_fold", kind="stable")


# ------------------------------------------------------------------ SVG figures


def svg_heatmap(xl: list[str], yl: list[str], means: np.ndarray, counts: np.ndarray,
                x_name: str, y_name: str, title: str) -> str:
    """A heatmap; every cell is a ``rect.cell`` carrying ``data-x``, ``data-y``, ``data-value``
    (the exact mean, Python repr) and ``data-n`` so tests and people can read it back."""
    cw = max(28, min(70, 640 // max(len(xl), 1)))
    ch = max(18, min(40, 420 // max(len(yl), 1)))
    ml, mt, mb = 130, 30, 70
    w, h = max(ml + cw * len(xl) + 20, ml + 8 * len(title)), mt + ch * len(yl) + mb
    fin = means[np.isfinite(means)]
    lo, hi = (float(fin.min()), float(fin.max())) if len(fin) else (0.0, 1.0)
    show_text = len(xl) * len(yl) <= 15 * 15
    out = [f'<svg class="fig heat" viewBox="0 0 {w} {h}" style="max-width:{w}px" role="img" '
           f'aria-label="{html.escape(title)}">',
           f'<text class="axis" x="{ml}" y="18">{html.escape(title)}</text>']
    for iy, ylab in enumerate(yl):
        yy = mt + ch * (len(yl) - 1 - iy)  # first level at the bottom
        out.append(f'<text x="{ml - 6}" y="{yy + ch / 2 + 4:.1f}" text-anchor="end">'
                   f"<title>{html.escape(ylab)}</title>{html.escape(short(ylab))}</text>")
        for ix, xlab in enumerate(xl):
            v, n = float(means[iy, ix]), int(counts[iy, ix])
            xx = ml + cw * ix
            fill = level_color((v - lo) / (hi - lo) if hi > lo else 0.5) if math.isfinite(v) else ""
            cls = "cell" if fill else "cell nan"
            style = f' style="fill:{fill}"' if fill else ""
            out.append(
                f'<rect class="{cls}" x="{xx}" y="{yy}" width="{cw}" height="{ch}"{style} '
                f'data-x="{html.escape(xlab)}" data-y="{html.escape(ylab)}" '
                f'data-value="{v!r}" data-n="{n}"><title>{html.escape(x_name)}={html.escape(xlab)}, '
                f"{html.escape(y_name)}={html.escape(ylab)}: {_fmt(v)} ({n} trials)</title></rect>")
            if show_text and fill:
                out.append(f'<text x="{xx + cw / 2:.1f}" y="{yy + ch / 2 + 4:.1f}" '
                           f'text-anchor="middle">{_fmt(v, 3)}</text>')
    base = mt + ch * len(yl)
    for ix, xlab in enumerate(xl):
        xx = ml + cw * ix + cw / 2
        out.append(f'<text x="{xx:.1f}" y="{base + 14}" text-anchor="end" '
                   f'transform="rotate(-30 {xx:.1f} {base + 14})"><title>{html.escape(xlab)}'
                   f"</title>{html.escape(short(xlab))}</text>")
    out.append(f'<text class="axis" x="{ml + cw * len(xl) / 2:.1f}" y="{h - 6}" '
               f'text-anchor="middle">{html.escape(x_name)}</text>')
    out.append(f'<text class="axis" x="12" y="{mt + ch * len(yl) / 2:.1f}" '
               f'transform="rotate(-90 12 {mt + ch * len(yl) / 2:.1f})" text-anchor="middle">'
               f"{html.escape(y_name)}</text>")
    out.append("</svg>")
    return "\n".join(out)


def svg_bars(labels: Sequence[str], values: Sequence[float], title: str, x_name: str = "",
             css: Sequence[str] | None = None) -> str:
    """Vertical bars from 0 (negative bars go down), NaN bars left out, value in a tooltip."""
    vals = np.asarray(values, dtype=np.float64)
    n = max(len(labels), 1)
    bw = max(8, min(60, 700 // n))
    ml, mt, mb = 60, 30, 60
    w, h = max(ml + bw * n + 20, ml + 8 * len(title)), 300
    ph = h - mt - mb
    fin = vals[np.isfinite(vals)]
    lo = min(0.0, float(fin.min())) if len(fin) else 0.0
    hi = max(0.0, float(fin.max())) if len(fin) else 1.0
    if hi <= lo:
        hi = lo + 1.0

    def sy(v: float) -> float:
        return mt + (hi - v) / (hi - lo) * ph

    out = [f'<svg class="fig bars" viewBox="0 0 {w} {h}" style="max-width:{w}px" role="img" '
           f'aria-label="{html.escape(title)}">',
           f'<text class="axis" x="{ml}" y="18">{html.escape(title)}</text>',
           f'<rect class="frame" x="{ml}" y="{mt}" width="{bw * n}" height="{ph}"/>']
    for t in svg.nice_ticks(lo, hi):
        out.append(f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t, 3)}</text>')
    zero = sy(0.0)
    out.append(f'<line class="diag" x1="{ml}" x2="{ml + bw * n}" y1="{zero:.1f}" y2="{zero:.1f}" '
               'stroke="#8c959f"/>')
    every = max(1, n // 20)  # at most ~20 x labels
    for i, (lab, v) in enumerate(zip(labels, vals, strict=True)):
        x = ml + bw * i
        if math.isfinite(v):
            top, bot = min(sy(v), zero), max(sy(v), zero)
            extra = (f" {css[i]}" if css[i] else "") if css else (" neg" if v < 0 else "")
            out.append(f'<rect class="bar{extra}" x="{x + 1}" y="{top:.1f}" width="{bw - 2}" '
                       f'height="{max(bot - top, 0.5):.1f}"><title>{html.escape(lab)}: {_fmt(v)}'
                       "</title></rect>")
        if i % every == 0:
            out.append(f'<text x="{x + bw / 2:.1f}" y="{mt + ph + 14}" text-anchor="end" '
                       f'transform="rotate(-30 {x + bw / 2:.1f} {mt + ph + 14})">'
                       f"{html.escape(short(lab))}</text>")
    if x_name:
        out.append(f'<text class="axis" x="{ml + bw * n / 2:.1f}" y="{h - 4}" '
                   f'text-anchor="middle">{html.escape(x_name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def svg_scatter(x: np.ndarray, y: np.ndarray, win: np.ndarray, title: str, x_name: str,
                y_name: str, tips: Sequence[str]) -> str:
    """Points (winners in red) with the y = x diagonal: above it, out of sample did better."""
    w, h, ml, mt, mb, mr = 640, 420, 64, 30, 44, 16
    pw, ph = w - ml - mr, h - mt - mb
    both = np.concatenate([x, y])
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.05
    lo, hi = lo - pad, hi + pad

    def sx(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * pw

    def sy(v: float) -> float:
        return mt + (hi - v) / (hi - lo) * ph

    out = [f'<svg class="fig scatter" viewBox="0 0 {w} {h}" style="max-width:{w}px" role="img" '
           f'aria-label="{html.escape(title)}">',
           f'<text class="axis" x="{ml}" y="18">{html.escape(title)}</text>',
           f'<rect class="frame" x="{ml}" y="{mt}" width="{pw}" height="{ph}"/>',
           f'<line class="diag" x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" '
           f'y2="{sy(hi):.1f}"/>']
    for t in svg.nice_ticks(lo, hi):
        out.append(f'<text x="{ml - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t, 3)}</text>')
        out.append(f'<text x="{sx(t):.1f}" y="{mt + ph + 14}" text-anchor="middle">'
                   f"{_fmt(t, 3)}</text>")
    order = np.argsort(win, kind="stable")  # winners drawn last, on top
    for i in order:
        cls = "pt win" if win[i] else "pt"
        r = 4.5 if win[i] else 3
        out.append(f'<circle class="{cls}" cx="{sx(x[i]):.1f}" cy="{sy(y[i]):.1f}" r="{r}">'
                   f"<title>{html.escape(tips[i])}</title></circle>")
    out.append(f'<text class="axis" x="{ml + pw / 2:.1f}" y="{h - 6}" text-anchor="middle">'
               f"{html.escape(x_name)}</text>")
    out.append(f'<text class="axis" x="14" y="{mt + ph / 2:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {mt + ph / 2:.1f})">{html.escape(y_name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


# ------------------------------------------------------------------ page sections


def _split_overfit(overfit: dict[str, Any] | None) -> tuple[dict, dict, list[str]]:
    """Accept ``{"dsr": {...}, "pbo": {...}, "notes": [...]}`` (the dicts of
    :mod:`tandem.backtest.sweep.overfit`) or the same keys flat in one dict."""
    of = dict(overfit or {})
    d, p = of.get("dsr"), of.get("pbo")
    dsr = d if isinstance(d, dict) else {k: of[k] for k in _DSR_KEYS if k in of}
    if isinstance(p, dict):
        pbo = p
    elif p is not None:
        pbo = {"pbo": p, **{k: of[k] for k in _PBO_KEYS if k in of}}
    else:
        pbo = {}
    notes = of.get("notes") or []
    notes = [notes] if isinstance(notes, str) else list(notes)
    notes += [str(of[k]) for k in ("note", "dsr_note", "pbo_note", "error") if of.get(k)]
    return dsr, pbo, [str(n) for n in notes]


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _dsr_html(dsr: dict[str, Any]) -> str:
    val = _num(dsr.get("dsr"))
    if not math.isfinite(val):
        return ("<p id='dsr'><b>Deflated Sharpe Ratio</b>: not available"
                f"{' (' + html.escape(str(dsr['reason'])) + ')' if dsr.get('reason') else ''}"
                ".</p>")
    n = dsr.get("n_trials")
    return (
        f"<p id='dsr'><b>Deflated Sharpe Ratio {val:.3f}</b> (PSR against 0: "
        f"{_fmt(dsr.get('psr'), 3)}; SR0 = {_fmt(dsr.get('sr0'))} per period, "
        f"{html.escape(_fmt(n))} trials). <span class='explain'>The probability that the "
        "winner's true Sharpe ratio beats SR0, the best Sharpe that many trials with no skill "
        "would show by luck alone, after allowing for the length of the record, skewness and "
        "fat tails: above 0.95 is significant at the 5% level, near 0.5 or below means the "
        "winner cannot be told apart from luck.</span></p>"
    )


def _pbo_html(pbo: dict[str, Any]) -> str:
    val = _num(pbo.get("pbo"))
    if not math.isfinite(val):
        return ("<p id='pbo'><b>Probability of Backtest Overfitting</b>: not available"
                f"{' (' + html.escape(str(pbo['reason'])) + ')' if pbo.get('reason') else ''}"
                ".</p>")
    deg = pbo.get("performance_degradation") or {}
    details = []
    if pbo.get("n_combinations") is not None:
        details.append(f"{html.escape(_fmt(pbo.get('n_combinations')))} splits of "
                       f"{html.escape(_fmt(pbo.get('n_splits')))} blocks")
    if math.isfinite(_num(pbo.get("prob_oos_loss"))):
        details.append(f"out-of-sample loss in {_fmt(100 * _num(pbo['prob_oos_loss']), 3)}% "
                       "of them")
    if math.isfinite(_num(deg.get("slope"))):
        details.append(f"OOS ≈ {_fmt(deg.get('slope'), 3)} × IS + {_fmt(deg.get('intercept'), 3)}")
    return (
        f"<p id='pbo'><b>Probability of Backtest Overfitting {100 * val:.1f}%</b> "
        + (f"({'; '.join(details)}). " if details else "")
        + "<span class='explain'>Over every way of splitting the history into an in-sample and an "
        "out-of-sample half, the share of splits in which the parameter set that was best in "
        "sample ranks at or below the median out of sample: near 0 means the choice carries "
        "over to unseen data, 50% or more means choosing by this backtest is no better than a "
        "coin flip.</span></p>"
    )


def _kv_rows(d: dict[str, Any], prefix: str = "") -> list[str]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _kv_rows(v, f"{prefix}{k}.")
        elif isinstance(v, list | tuple) and v and all(isinstance(x, dict) for x in v):
            rows.append(f"<tr><td>{html.escape(prefix + str(k))}</td><td>({len(v)} entries: see "
                        "below and best.json)</td></tr>")
        elif isinstance(v, list | tuple | np.ndarray) and len(v) > 20:
            rows.append(f"<tr><td>{html.escape(prefix + str(k))}</td><td>({len(v)} values)</td></tr>")
        else:
            text = _fmt(v) if isinstance(v, float | np.floating) else str(v)
            rows.append(f"<tr><td>{html.escape(prefix + str(k))}</td>"
                        f"<td>{html.escape(text)}</td></tr>")
    return rows


def _params_text(row: pd.Series, cols: Sequence[str]) -> str:
    return ", ".join(f"{_label(c)}={row[c]}" for c in cols if c in row.index)


def _logit_histogram(logits: Any) -> str:
    lg = np.asarray(logits if logits is not None else [], dtype=np.float64)
    lg = lg[np.isfinite(lg)]
    if not len(lg):
        return "<p class='note'>No PBO logits to show.</p>"
    lo, hi = float(lg.min()), float(lg.max())
    # About 20 bins (a, b] with 0 on an edge: λ = 0 (overfit, PBO counts λ ≤ 0) falls in the
    # last bar at or below 0, and no bar mixes overfit and non-overfit splits.
    width = (hi - lo) / 20 if hi > lo else 1.0
    k0, k1 = math.ceil(lo / width) - 1, math.ceil(hi / width)
    edges = width * np.arange(k0, k1 + 1)  # integer multiples of the width: 0 is an edge
    idx = np.clip(np.searchsorted(edges, lg, side="left") - 1, 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    keep = np.flatnonzero(counts)
    a, b = (keep[0], keep[-1] + 1) if len(keep) else (0, len(counts))
    counts, edges = counts[a:b], edges[a:b + 1]
    centers = (edges[:-1] + edges[1:]) / 2
    labels = [f"{c:.2f}" for c in centers]
    css = ["pbo-neg" if c <= 0 else "" for c in centers]
    return ("<p class='explain'>Share of splits per logit λ of the in-sample best's "
            "out-of-sample rank; red bars (λ ≤ 0: at or below the out-of-sample median) add up "
            "to the PBO.</p>"
            + svg_bars(labels, counts / len(lg), "PBO logits", "logit λ (bin centre)", css))


# ------------------------------------------------------------------ the page


@dataclass
class _Page:
    """What every section needs: the prepared rows, per-trial table and where PNGs go."""

    out_dir: Path
    objective: str
    df: pd.DataFrame  # results + _trial, _fold, _valid, _obj, _oos
    trials: pd.DataFrame  # trial_table
    cols: list[str]  # parameter columns as in results
    imp: pd.DataFrame  # parameter_importance
    files: dict[str, Path]

    def name(self, col: str) -> str:
        return _label(col)


def _summary(pg: _Page, best: dict, dsr: dict, pbo: dict, notes: list[str]) -> list[str]:
    df = pg.df
    trial_ids = df["_trial"].unique()
    bad_trials = df.loc[~df["_valid"], "_trial"].unique()
    n_nan = int((df["_valid"] & ~np.isfinite(df["_obj"])).sum())
    kpis = [("Trials", len(trial_ids)), ("Valid trials", len(trial_ids) - len(bad_trials)),
            ("Invalid trials", len(bad_trials)),
            ("Folds", int(df["_fold"].nunique()) if len(df) else 0),
            ("Rows (trial × fold)", len(df)), ("Objective", pg.objective)]
    p = ["<h2>Summary</h2><div class='kpi' id='summary'>"]
    p += [f"<div>{html.escape(k)}<b>{html.escape(str(v))}</b></div>" for k, v in kpis]
    p.append("</div>")
    if n_nan:
        p.append(f"<p class='note'>{n_nan} valid row{'s have' if n_nan > 1 else ' has'} no "
                 f"finite {html.escape(pg.objective)} (no trades, flat equity or an infinite "
                 "profit factor), left out of the averages.</p>")
    p.append("<h3>Best</h3>")
    if best:
        p.append("<table id='best'>" + "".join(_kv_rows(best)) + "</table>")
    else:
        p.append("<p class='note' id='best'>No best trial (no valid trial).</p>")
    p += [_dsr_html(dsr), _pbo_html(pbo)]
    p += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    return p


def _heatmaps(pg: _Page) -> list[str]:
    obj = pg.objective
    p = ["<h2>Objective by parameter</h2>",
         f"<p class='explain'>Mean in-sample {html.escape(obj)} of the trials in each cell, "
         "averaged over every other parameter (each trial first averaged over its folds). "
         f"Numeric parameters with more than {MAX_LEVELS} values are cut into {N_BINS} "
         "quantile bins.</p>"]
    t = pg.trials
    t = t[np.isfinite(t["objective"].astype(np.float64))] if len(t) else t
    if not len(t):
        return [*p, "<p class='note' id='heatmaps'>No valid trial with a finite objective: "
                    "nothing to map.</p>"]
    if not pg.cols:
        return [*p, "<p class='note' id='heatmaps'>No swept parameter.</p>"]
    png = pg.out_dir / "sweep_heatmap.png"
    if len(pg.cols) == 1:  # no pair: the objective per level
        c = pg.cols[0]
        codes, labels = param_levels(t[c])
        means = t.groupby(codes)["objective"].mean().reindex(range(len(labels))).to_numpy()
        title = f"Mean {obj} by {pg.name(c)}"
        pg.files["sweep_heatmap.png"] = bars_png(png, labels, means, pg.name(c), title)
        return [*p, "<div id='heatmaps'>" + svg_bars(labels, means, title, pg.name(c)) + "</div>"]
    ranked = [c for c in pg.imp["column"] if c in pg.cols]
    pairs = list(combinations(ranked[:12], 2))[:MAX_PAIRS]  # the first: the 2 most important
    opts = "".join(f"<option value='{i}'>{html.escape(pg.name(a))} × {html.escape(pg.name(b))}"
                   "</option>" for i, (a, b) in enumerate(pairs))
    p += [f"<label>Parameters <select id='pair-select'>{opts}</select></label>",
          "<div id='heatmaps'>"]
    for i, (a, b) in enumerate(pairs):
        xl, yl, means, counts = heatmap_grid(t, a, b)
        title = f"Mean {obj}: {pg.name(a)} × {pg.name(b)}"
        p.append(f"<div class='heatmap-pair' data-pair='{i}' data-x-param='"
                 f"{html.escape(pg.name(a))}' data-y-param='{html.escape(pg.name(b))}'>")
        p.append(svg_heatmap(xl, yl, means, counts, pg.name(a), pg.name(b), title))
        p.append("</div>")
        if i == 0:
            pg.files["sweep_heatmap.png"] = heatmap_png(png, xl, yl, means, pg.name(a), pg.name(b), title)
    p.append("</div>")
    return p


def _importance(pg: _Page) -> list[str]:
    p = ["<h2>Parameter importance</h2>",
         "<p class='explain'>η² of a one-way analysis of variance: the share of the variance "
         "of the per-trial objective explained by that parameter alone (1 = it determines the "
         "objective, 0 = no effect). With few trials per level even a parameter without effect "
         "scores about (levels − 1)/(trials − 1), the baseline column; interactions between "
         "parameters are not counted.</p>",
         "<table id='importance'><tr><th>parameter</th><th>η²</th><th>baseline</th>"
         "<th>levels</th></tr>"]
    for r in pg.imp.itertuples(index=False):
        p.append(f"<tr><td>{html.escape(r.param)}</td><td>{_fmt(r.eta2, 3)}</td>"
                 f"<td>{_fmt(r.baseline, 3)}</td><td>{r.levels}</td></tr>")
    p.append("</table>")
    return p


def _is_vs_oos(pg: _Page, winners: pd.DataFrame) -> list[str]:
    obj, df = pg.objective, pg.df
    p = ["<h2>In-sample vs out-of-sample</h2><div id='is-oos'>"]
    ok = df[df["_valid"] & np.isfinite(df["_obj"]) & np.isfinite(df["_oos"])]
    if not len(ok):
        return [*p, "<p class='note'>No out-of-sample results (the sweep ran without "
                    "walk-forward), so there is nothing to compare.</p></div>"]
    win_keys = set(zip(winners["_trial"], winners["_fold"], strict=True))
    win = np.array([k in win_keys for k in zip(ok["_trial"], ok["_fold"], strict=True)], dtype=bool)
    if len(ok) > MAX_POINTS:  # keep the page light: every winner plus a fixed sample
        keep = win | (np.random.default_rng(0).random(len(ok)) < MAX_POINTS / len(ok))
        ok, win = ok[keep], win[keep]
    tips = [f"trial {t}, fold {f}: IS {_fmt(a)}, OOS {_fmt(b)}"
            for t, f, a, b in zip(ok["_trial"], ok["_fold"], ok["_obj"], ok["_oos"], strict=True)]
    x, y = ok["_obj"].to_numpy(np.float64), ok["_oos"].to_numpy(np.float64)
    p.append("<p class='explain'>One point per valid trial and fold; red points are the fold "
             "winners (best in sample). Above the dashed diagonal a trial did better out of "
             "sample than in sample; winners far below it are what overfitting looks like.</p>")
    p.append(svg_scatter(x, y, win, f"{obj}: in sample vs out of sample", f"in-sample {obj}",
                         f"out-of-sample {obj}", tips))
    pg.files["sweep_is_oos.png"] = scatter_png(pg.out_dir / "sweep_is_oos.png", x, y, win, obj)
    p.append("</div>")
    return p


def _equity(pg: _Page, oos_equity: pd.Series | None) -> list[str]:
    p = ["<h2>Walk-forward out-of-sample equity</h2>"]
    if oos_equity is None or not len(oos_equity):
        return [*p, "<p class='note' id='oos-equity'>No walk-forward equity.</p>"]
    eq = oos_equity.astype(np.float64)
    if isinstance(eq.index, pd.DatetimeIndex):  # the charts want epoch ms, like run's equity
        idx = eq.index.tz_localize("UTC") if eq.index.tz is None else eq.index.tz_convert("UTC")
        eq = pd.Series(eq.to_numpy(), index=idx.as_unit("ms").asi8.astype(np.int64))
    chart = svg.Chart("Stitched out-of-sample equity (each fold's winner)",
                      [svg.Line(np.asarray(eq.index, dtype=np.int64), eq.to_numpy(), "equity",
                                "equity")],
                      y_format=lambda v: f"{v:,.0f}", css_id="oos-equity")
    pg.files["sweep_equity.png"] = write_equity_png(pg.out_dir / "sweep_equity.png", eq,
                                          title="Walk-forward out-of-sample equity")
    return [*p, svg.render(chart)]


def _folds(pg: _Page, winners: pd.DataFrame) -> list[str]:
    obj = html.escape(pg.objective)
    if not len(winners):
        return ["<h2>Per fold</h2><p class='note' id='folds'>No fold has a valid trial.</p>"]
    p = ["<h2>Per fold</h2><table id='folds'><tr><th>fold</th><th>in sample</th>"
         f"<th>out of sample</th><th>winner</th><th class='txt'>parameters</th><th>IS {obj}</th>"
         f"<th>OOS {obj}</th></tr>"]
    for _, r in winners.iterrows():
        p.append(f"<tr><td>{html.escape(str(r['_fold']))}</td>"
                 f"<td class='when'>{_range(r, 'is')}</td><td class='when'>{_range(r, 'oos')}</td>"
                 f"<td>{html.escape(str(r['_trial']))}</td>"
                 f"<td class='txt'>{html.escape(_params_text(r, pg.cols))}</td>"
                 f"<td>{_fmt(r['_obj'])}</td><td>{_fmt(r['_oos'])}</td></tr>")
    p.append("</table>")
    return p


def _invalid(pg: _Page) -> list[str]:
    bad = pg.df[~pg.df["_valid"]]
    if not len(bad):
        return ["<h2>Invalid trials</h2><p class='note' id='invalid'>Every trial was valid.</p>"]
    msgs = (bad["error"].fillna("").astype(str) if "error" in bad.columns
            else pd.Series("", index=bad.index))
    p = ["<h2>Invalid trials</h2><table id='invalid-summary'><tr><th class='txt'>message</th>"
         "<th>rows</th></tr>"]
    for m, n in msgs.value_counts().head(20).items():
        p.append(f"<tr><td class='txt'>{html.escape(m or '(no message)')}</td><td>{n}</td></tr>")
    p.append("</table>")
    shown = bad.head(MAX_INVALID_ROWS)
    p.append("<table id='invalid'><tr><th>trial</th><th>fold</th><th class='txt'>parameters</th>"
             "<th class='txt'>message</th></tr>")
    for idx, r in shown.iterrows():
        p.append(f"<tr><td>{html.escape(str(r['_trial']))}</td>"
                 f"<td>{html.escape(str(r['_fold']))}</td>"
                 f"<td class='txt'>{html.escape(_params_text(r, pg.cols))}</td>"
                 f"<td class='txt'>{html.escape(msgs[idx])}</td></tr>")
    p.append("</table>")
    if len(bad) > len(shown):
        p.append(f"<p class='note'>… and {len(bad) - len(shown)} more invalid rows "
                 "(see results.parquet).</p>")
    return p


def write_sweep_report(
    out_dir: Path,
    results: pd.DataFrame,
    *,
    objective: str,
    param_cols: list[str],
    best: dict,
    oos_equity: pd.Series | None,
    overfit: dict,
) -> dict[str, Path]:
    """Write ``sweep.html`` and the PNGs into ``out_dir``; return ``{file name: path}``.

    Files: ``sweep.html`` (always), ``sweep_heatmap.png`` (the two most important parameters,
    or the objective per level with one parameter; absent with no valid trial),
    ``sweep_is_oos.png`` (only with out-of-sample values) and ``sweep_equity.png`` (only when
    ``oos_equity`` has points). ``param_cols`` may name the
    columns with or without the ``param.`` prefix. ``overfit`` is ``{"dsr": <dict of
    deflated_sharpe_ratio>, "pbo": <dict of pbo_cscv>, "notes": [str]}`` (any part may be
    missing, or carry a ``reason`` string when it could not be computed; a ``note`` string is
    shown). Fold winners: see :func:`_fold_winners`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = [_param_column(results, c) for c in param_cols]
    trials = trial_table(results, objective, param_cols)
    pg = _Page(out_dir, objective, _prepared(results, objective), trials, cols,
               parameter_importance(trials, cols), {})
    dsr, pbo, notes = _split_overfit(overfit)
    winners = _fold_winners(pg.df, best)
    p = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         f"<title>Tandem sweep — {html.escape(objective)}</title>",
         f"<style>{_CSS}</style></head><body>",
         f"<h1>Parameter sweep: {html.escape(objective)}</h1>"]
    p += _summary(pg, best, dsr, pbo, notes)
    p += _heatmaps(pg)
    p += _importance(pg)
    p += _is_vs_oos(pg, winners)
    p += _equity(pg, oos_equity)
    p += _folds(pg, winners)
    p += ["<h2>PBO logit distribution</h2><div id='pbo-logits'>",
          _logit_histogram(pbo.get("logits")), "</div>"]
    p += _invalid(pg)
    p.append(f"<script>{_JS}</script></body></html>")
    page = out_dir / "sweep.html"
    page.write_text("\n".join(p), encoding="utf-8")
    return {**pg.files, "sweep.html": page}


def _range(row: pd.Series, side: str) -> str:
    a, b = row.get(f"{side}_start"), row.get(f"{side}_end")

    def day(v: Any) -> str:
        f = _num(v)
        return pd.Timestamp(int(f), unit="ms", tz="UTC").strftime("%Y-%m-%d") \
            if math.isfinite(f) else "–"

    return "–" if a is None and b is None else f"{day(a)} → {day(b)}"
