"""Render a :class:`~tandem.backtest.reconcile.report.ReconcileReport`: terminal, Markdown, HTML.

The HTML page is self-contained — inline CSS and inline SVG charts, no script, no font,
no CDN — so it opens offline, in a mail attachment or in a headless browser alike.
"""

from __future__ import annotations

import html as _html
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tandem.backtest.reconcile.classify import CATEGORIES, fmt_ts

if TYPE_CHECKING:  # annotations only: report.py imports this module, not the reverse
    from tandem.backtest.reconcile.report import ProfileSummary, ReconcileReport

#: Differences listed in full in the Markdown/HTML reports (all are in the CSV).
MAX_ROWS = 200
_SHOW_COLS = ["category", "status", "symbol", "ts", "side", "reason", "fields", "deltas", "evidence"]


def _num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:,.6g}" if abs(x) < 1e-3 and x != 0 else f"{x:,.2f}"


def _deltas(row: pd.Series) -> str:
    parts = []
    for c in ("price", "qty", "fee"):
        d = row.get(f"d_{c}")
        if d is not None and not (isinstance(d, float) and math.isnan(d)) and d != 0:
            parts.append(f"Δ{c} {d:+.6g}")
    return " ".join(parts)


def _config_text(p: ProfileSummary) -> str:
    cd = p.config
    if cd.hash_differs is None:
        return "profile hash unknown on a side (config not checked)"
    if not cd.hash_differs:
        return f"same profile hash {(cd.paper_hash or cd.backtest_hash or '')[:12]}"
    fields = ", ".join(cd.fields) if cd.fields else "unknown fields"
    return f"profile hash differs: {fields}"


def _verdict(r: ReconcileReport) -> str:
    if r.ok:
        return "OK: paper and backtest agree within tolerance"
    n = len(r.beyond_tolerance)
    extra = ""
    if r.tolerance.equity is not None and r.max_abs_equity_drift > r.tolerance.equity:
        extra = f"; equity drift {r.max_abs_equity_drift:.6g} > {r.tolerance.equity:g}"
    return f"DIFFERENT: {n} fill differences beyond tolerance{extra}"


def _tol_text(r: ReconcileReport) -> str:
    t = r.tolerance
    if t.rel == 0 and t.abs == 0 and t.equity is None:
        return "exact"
    s = f"rel {t.rel:g}, abs {t.abs:g}"
    return s + (f", equity {t.equity:g}" if t.equity is not None else "")


def _rows(r: ReconcileReport, limit: int = MAX_ROWS) -> pd.DataFrame:
    d = r.differences
    if not len(d):
        return pd.DataFrame(columns=_SHOW_COLS)
    d = d.head(limit).copy()
    d["deltas"] = [_deltas(row) for _, row in d.iterrows()]
    d["ts"] = [fmt_ts(t) for t in d["ts"]]
    return d[_SHOW_COLS]


# ------------------------------------------------------------------------------------------
# terminal


def terminal(r: ReconcileReport, max_diffs: int = 10) -> str:
    """A compact plain-text summary (the CLI prints it)."""
    lines = [
        f"reconcile  paper: {', '.join(r.inputs.get('paper', []))}",
        f"           backtest: {', '.join(r.inputs.get('backtest', []))}",
        f"tolerance: {_tol_text(r)}",
        *(f"caveat: {c}" for c in r.caveats),
    ]
    for p in r.profiles:
        same_fp = p.paper_fingerprint == p.backtest_fingerprint
        lines += [
            f"profile {p.profile}: fills paper {p.paper_fills} / backtest {p.backtest_fills}; "
            f"identical {p.identical} ({p.identical_pct:.2f}%), within tolerance {p.within_tolerance}, "
            f"mismatched {p.mismatched}, missing in paper {p.missing_in_paper}, "
            f"missing in backtest {p.missing_in_backtest}",
            f"  fingerprint paper {p.paper_fingerprint[:12]} backtest {p.backtest_fingerprint[:12]} "
            f"({'equal' if same_fp else 'DIFFER'}); trades {p.paper_trades}/{p.backtest_trades}, "
            f"{p.trades_differing} differ",
            f"  config: {_config_text(p)}; data events: {p.data_events}",
            "  causes: " + ", ".join(f"{c} {p.categories.get(c, 0)}" for c in CATEGORIES),
            f"  drift: max |equity| {p.max_abs_equity_drift:.6g}, final equity "
            f"{p.final_equity_drift:+.6g}, final realized PnL {p.final_pnl_drift:+.6g}",
        ]
    rows = _rows(r, max_diffs)
    if len(rows):
        lines.append(f"first {len(rows)} of {len(r.differences)} differences:")
        for _, row in rows.iterrows():
            lines.append(
                f"  [{row['category']}] {row['status']} {row['symbol']} {row['ts']} {row['side']} "
                f"{row['reason']} {row['fields']} {row['deltas']} - {row['evidence']}"
            )
    lines.append(_verdict(r))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Markdown


def _md_escape(x: object) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _md_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        out.append("| " + " | ".join(_md_escape(row[c]) for c in cols) + " |")
    return "\n".join(out)


def _summary_frame(r: ReconcileReport) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "profile": p.profile,
                "paper fills": p.paper_fills,
                "backtest fills": p.backtest_fills,
                "identical": f"{p.identical} ({p.identical_pct:.2f}%)",
                "within tol.": p.within_tolerance,
                "mismatched": p.mismatched,
                "missing in paper": p.missing_in_paper,
                "missing in backtest": p.missing_in_backtest,
                **{c: p.categories.get(c, 0) for c in CATEGORIES},
                "max abs equity drift": _num(p.max_abs_equity_drift),
                "final PnL drift": _num(p.final_pnl_drift),
            }
            for p in r.profiles
        ]
    )


def _fp_frame(r: ReconcileReport) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "profile": p.profile,
                "paper run": p.paper_fingerprint[:12],
                "backtest run": p.backtest_fingerprint[:12],
                "equal": "yes" if p.paper_fingerprint == p.backtest_fingerprint else "no",
                "trades (paper/backtest)": f"{p.paper_trades}/{p.backtest_trades}",
                "trades differing": p.trades_differing,
                "config": _config_text(p),
            }
            for p in r.profiles
        ]
    )


def _trades_frame(r: ReconcileReport, limit: int = 20) -> pd.DataFrame:
    rows = [
        {"profile": p.profile, "symbol": t.split(":")[-2], "entry": fmt_ts(int(t.split(":")[-1]))}
        for p in r.profiles for t in p.differing_trades[:limit]
    ]
    return pd.DataFrame(rows, columns=["profile", "symbol", "entry"])


def markdown(r: ReconcileReport) -> str:
    """A Markdown report (summary, fingerprints, data events, differences)."""
    parts = [
        "# Reconcile report",
        "",
        f"- paper: {', '.join(r.inputs.get('paper', []))}",
        f"- backtest: {', '.join(r.inputs.get('backtest', []))}",
        f"- candles: {', '.join(r.inputs.get('candles', [])) or 'none'}; "
        f"history: {', '.join(r.inputs.get('history', [])) or 'none'}",
        f"- tolerance: {_tol_text(r)}",
        *(f"- **caveat**: {_md_escape(c)}" for c in r.caveats),
        f"- **{_verdict(r)}**",
        "",
        "## Summary",
        "",
        _md_table(_summary_frame(r)) if r.profiles else "_no fills on either side_",
        "",
        "## Fingerprints",
        "",
        _md_table(_fp_frame(r)) if r.profiles else "",
        "",
    ]
    trades = _trades_frame(r)
    if len(trades):
        parts += ["First trades whose fingerprints differ:", "", _md_table(trades), ""]
    if len(r.events):
        ev = r.events.head(MAX_ROWS).copy()
        ev["ts"] = [fmt_ts(t) for t in ev["ts"]]
        parts += ["## Data events", "", _md_table(ev[["profile", "symbol", "ts", "kind", "detail"]]), ""]
    rows = _rows(r)
    parts += [f"## Differences ({len(r.differences)}; first {len(rows)} shown)", ""]
    parts.append(_md_table(rows) if len(rows) else "_none_")
    parts.append("")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.cat-data{background:#fff8c5}.cat-intrabar{background:#ddf4ff}.cat-rounding{background:#eef}
.cat-config{background:#fbefff}.cat-logic{background:#ffebe9}
svg{background:#fff;border:1px solid #d0d7de}.legend span{margin-right:1rem}
"""

_COLORS = {"drift": "#cf222e", "paper": "#0969da", "backtest": "#8250df"}


def _svg_chart(d: pd.DataFrame, width: int = 760, height: int = 220) -> str:
    """Equity drift (paper − backtest) over time as an inline SVG line chart."""
    pad_l, pad_r, pad_t, pad_b = 70, 10, 10, 30
    x = d["ts"].to_numpy(np.float64)
    y = d["equity_drift"].to_numpy(np.float64)
    if not len(x):
        return "<p>no data</p>"
    x0, x1 = float(x.min()), float(x.max())
    lo, hi = float(min(0.0, np.nanmin(y))), float(max(0.0, np.nanmax(y)))
    if hi == lo:
        hi, lo = lo + 1.0, lo - 1.0
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def px(v: float) -> float:
        return pad_l + (0.5 * w if x1 == x0 else (v - x0) / (x1 - x0) * w)

    def py(v: float) -> float:
        return pad_t + (hi - v) / (hi - lo) * h

    pts = " ".join(f"{px(a):.1f},{py(b):.1f}" for a, b in zip(x, y, strict=True) if not math.isnan(b))
    zero = py(0.0)
    esc = _html.escape
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="equity drift">'
        f'<line x1="{pad_l}" y1="{zero:.1f}" x2="{pad_l + w}" y2="{zero:.1f}" stroke="#8c959f" stroke-dasharray="4 3"/>'
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#57606a"/>'
        f'<polyline class="drift" fill="none" stroke="{_COLORS["drift"]}" stroke-width="1.5" points="{pts}"/>'
        f'<text x="{pad_l - 5}" y="{pad_t + 10}" font-size="11" text-anchor="end">{esc(_num(hi))}</text>'
        f'<text x="{pad_l - 5}" y="{pad_t + h}" font-size="11" text-anchor="end">{esc(_num(lo))}</text>'
        f'<text x="{pad_l}" y="{height - 8}" font-size="11">{esc(fmt_ts(int(x0)))}</text>'
        f'<text x="{pad_l + w}" y="{height - 8}" font-size="11" text-anchor="end">{esc(fmt_ts(int(x1)))}</text>'
        "</svg>"
    )


def _html_table(df: pd.DataFrame, row_class: str | None = None) -> str:
    esc = _html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in df.columns)
    body = []
    for _, row in df.iterrows():
        cls = f' class="cat-{esc(str(row[row_class]))}"' if row_class else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{esc(str(row[c]))}</td>" for c in df.columns) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html(r: ReconcileReport) -> str:
    """A self-contained HTML report with one equity-drift chart per profile."""
    esc = _html.escape
    verdict_cls = "ok" if r.ok else "bad"
    charts = []
    for p in r.profiles:
        d = r.drift[r.drift["profile"] == p.profile]
        charts.append(
            f'<h3>{esc(p.profile)}</h3><div class="chart" id="chart-{esc(p.profile)}">{_svg_chart(d)}</div>'
            f'<p class="legend"><span style="color:{_COLORS["drift"]}">— equity paper − backtest</span>'
            f"max |drift| {esc(_num(p.max_abs_equity_drift))}, final realized PnL drift "
            f"{esc(_num(p.final_pnl_drift))}</p>"
        )
    rows = _rows(r)
    events = ""
    if len(r.events):
        ev = r.events.head(MAX_ROWS).copy()
        ev["ts"] = [fmt_ts(t) for t in ev["ts"]]
        events = "<h2>Data events</h2>" + _html_table(ev[["profile", "symbol", "ts", "kind", "detail"]])
    inputs = "".join(
        f"<li>{esc(k)}: {esc(', '.join(v) or 'none')}</li>" for k, v in r.inputs.items()
    )
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Tandem reconcile report</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>Tandem reconcile report</h1>"
        f'<p id="verdict" class="{verdict_cls}">{esc(_verdict(r))}</p>'
        + "".join(f'<p class="caveat bad">caveat: {esc(c)}</p>' for c in r.caveats)
        + f"<ul>{inputs}<li>tolerance: {esc(_tol_text(r))}</li></ul>"
        "<h2>Summary</h2>"
        + (_html_table(_summary_frame(r)) if r.profiles else "<p>no fills on either side</p>")
        + "<h2>Fingerprints</h2>"
        + (_html_table(_fp_frame(r)) if r.profiles else "")
        + (("<p>First trades whose fingerprints differ:</p>" + _html_table(_trades_frame(r)))
           if len(_trades_frame(r)) else "")
        + "<h2>Equity drift</h2>"
        + "".join(charts)
        + events
        + f"<h2>Differences ({len(r.differences)}; first {len(rows)} shown)</h2>"
        + (_html_table(rows, "category") if len(rows) else "<p>none</p>")
        + "</body></html>"
    )
