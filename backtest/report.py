"""``report.html``: one self-contained page a person opens in a browser after a run.

Contents: the profile and data range it came from, headline statistics, equity and
drawdown curves, a per-asset table, and close-price charts with the trade markers for a
few chosen assets (a ``<select>`` switches between them). Portfolio-mode runs also get the
weights over time (stacked area) and the turnover of each rebalance. Everything is inline — SVG drawn
by :mod:`tandem.backtest.svg`, a few lines of CSS and JS — so the file opens offline and can be
mailed around. Timestamps in the page are UTC.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tandem.backtest import svg
from tandem.backtest.stats import drawdown_series, fill_turnover

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5a6875} table{border-collapse:collapse;margin:8px 0}
td,th{padding:3px 10px;border-bottom:1px solid #e3e8ee;text-align:right}
th{background:#f4f6f8} td:first-child,th:first-child{text-align:left}
.kpi{display:flex;flex-wrap:wrap;gap:8px} .kpi div{border:1px solid #e3e8ee;border-radius:6px;
padding:6px 12px;min-width:120px} .kpi b{display:block;font-size:18px}
svg.chart{width:100%;max-width:1100px;height:auto;display:block;margin:6px 0}
svg .plot{fill:#fbfcfd;stroke:#d5dbe1} svg .grid{stroke:#e9edf1}
svg .tick{font-size:11px;fill:#5a6875} svg .title{font-size:13px;font-weight:600;fill:#1d2733}
svg .legend{font-size:12px} svg .line{fill:none;stroke-width:1.4}
svg .equity{stroke:#1f6feb;fill:#1f6feb} svg .drawdown{stroke:#d1242f}
svg .area.drawdown{fill:#d1242f;fill-opacity:.18;stroke:none}
svg .price{stroke:#57606a;fill:#57606a} svg .marker{stroke:#fff;stroke-width:.8}
svg .marker.buy{fill:#1a7f37} svg .marker.sell{fill:#cf222e}
svg path.line{fill:none}
.neg{color:#cf222e} pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}
"""

# Only portfolio-mode pages carry the weights section, and only they get its styles.
_WEIGHTS_CSS = """
svg .band{stroke:none} svg .bars.turnover{stroke:#8250df;stroke-width:2}
.band0{fill:#1f6feb;background:#1f6feb}.band1{fill:#e16f24;background:#e16f24}.band2{fill:#1a7f37;background:#1a7f37}.band3{fill:#cf222e;background:#cf222e}
.band4{fill:#8250df;background:#8250df}.band5{fill:#bf8700;background:#bf8700}.band6{fill:#0a7ea4;background:#0a7ea4}.band7{fill:#d63384;background:#d63384}
.band-other{fill:#8c959f;background:#8c959f}
.swatch{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
"""

# Shows one price chart at a time; without JS every chart stays visible.
_JS = """
(function(){var s=document.getElementById('asset-select');if(!s)return;
function show(){document.querySelectorAll('.asset-chart').forEach(function(e){
e.hidden=(e.dataset.symbol!==s.value);});}
s.addEventListener('change',show);show();})();
"""


@dataclass
class ReportInput:
    """Everything the report shows; the runner fills it from one backtest run."""

    profile: str
    equity: pd.Series  # equity at each bar close, index = ts_close (int ms)
    stats: dict[str, Any]
    fills: pd.DataFrame  # the journal
    trades: pd.DataFrame  # core.journal.trades_table
    closes: pd.DataFrame  # index = ts_close (int ms), one column per symbol
    profile_config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # run id, mode, data source, range...
    initial_cash: float | None = None


def _iso(ms: Any) -> str:
    if ms is None or (isinstance(ms, float) and not math.isfinite(ms)):
        return "–"
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M UTC")


def _bar_range(stats: dict[str, Any], meta: dict[str, Any]) -> str:
    """The header's date range, in bar **open** times like the CLI summary and the Run table.

    The equity index holds bar *close* times (equity is marked once a bar has closed), so
    using it here showed a range one bar later than everything else the user sees.
    """
    first, last = meta.get("first_tradable_bar"), meta.get("last_bar")
    if first and last:
        return f"Bars {_iso(pd.Timestamp(first).value // 1_000_000)} → " \
               f"{_iso(pd.Timestamp(last).value // 1_000_000)} (open times)"
    return f"Equity {_iso(stats.get('start_ts'))} → {_iso(stats.get('end_ts'))} (bar closes)"


def _trade_count(stats: dict[str, Any]) -> str:
    """Closed round trips, plus the open ones (the trades table lists both)."""
    n_open = int(stats.get("n_open_trades") or 0)
    closed = str(stats.get("n_trades", 0))
    return f"{closed} (+{n_open} open)" if n_open else closed


def _pct(v: Any) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.2f}%"


def _num(v: Any, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):,.{digits}f}"


def _cls(v: Any) -> str:
    return ' class="neg"' if v is not None and math.isfinite(float(v)) and float(v) < 0 else ""


def per_asset_table(data: ReportInput) -> pd.DataFrame:
    """One row per asset: trades, win rate, pnl, fees, time in market, buy-and-hold return."""
    symbols = list(data.closes.columns)
    tr, fills = data.trades, data.fills
    closed_mask = np.isfinite(tr["pnl"].to_numpy(np.float64)) if len(tr) else np.zeros(0, bool)
    # Row positions per symbol, found once (a boolean mask per asset cost seconds at 100).
    trade_rows = tr.groupby("symbol", sort=False).indices if len(tr) else {}
    fill_rows = fills.groupby("symbol", sort=False).indices if len(fills) else {}
    none = np.zeros(0, dtype=np.int64)
    pnl_all = tr["pnl"].to_numpy(np.float64) if len(tr) else np.zeros(0)
    fill_ts = fills["ts"].to_numpy(np.int64) if len(fills) else none
    fill_pos = fills["position_after"].to_numpy(np.float64) if len(fills) else np.zeros(0)
    fill_fee = fills["fee"].to_numpy(np.float64) if len(fills) else np.zeros(0)
    rows = []
    ts = np.asarray(data.closes.index, dtype=np.int64)
    for sym in symbols:
        t_rows = trade_rows.get(sym, none)
        pnl = pnl_all[t_rows[closed_mask[t_rows]]]
        f_rows = fill_rows.get(sym, none)
        px = data.closes[sym].dropna()
        held = 0.0
        if len(f_rows):
            k = np.searchsorted(fill_ts[f_rows], ts, side="right") - 1
            pos = fill_pos[f_rows]
            held = float((np.where(k >= 0, pos[np.clip(k, 0, None)], 0.0) != 0).mean())
        rows.append(
            {
                "symbol": sym,
                "trades": len(pnl),
                "open": int(len(t_rows) - len(pnl)),
                "win_rate": float((pnl > 0).mean()) if len(pnl) else float("nan"),
                "pnl": float(pnl.sum()) if len(pnl) else 0.0,
                "fees": float(fill_fee[f_rows].sum()) if len(f_rows) else 0.0,
                "in_market": held,
                "buy_hold": float(px.iloc[-1] / px.iloc[0] - 1.0) if len(px) > 1 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def default_chart_symbols(data: ReportInput, limit: int = 8) -> list[str]:
    """Core assets first (from the profile), then the most-traded assets, up to ``limit``."""
    symbols = list(data.closes.columns)
    core = [s for s in data.profile_config.get("core_assets", []) if s in symbols]
    counts = data.fills["symbol"].value_counts() if len(data.fills) else pd.Series(dtype=int)
    busy = [s for s in counts.index if s in symbols]
    out: list[str] = []
    for s in core + busy + symbols:
        if s not in out:
            out.append(s)
    return out[:limit]


def _price_chart(data: ReportInput, sym: str, max_markers: int = 3000) -> svg.Chart:
    px = data.closes[sym]
    f = data.fills[data.fills["symbol"] == sym] if len(data.fills) else data.fills
    markers = [
        svg.Marker(
            x=int(r.ts),
            y=float(r.price),
            side=str(r.side),
            tooltip=f"{r.side} {r.qty:.6g} @ {r.price:.6g} ({r.reason}"
            + (f", ambiguous bar: {r.intrabar}" if getattr(r, "intrabar", "") else "")
            + f") {_iso(r.ts)}",
        )
        for r in f.head(max_markers).itertuples(index=False)
    ]
    return svg.Chart(
        title=f"{sym} close with fills (▲ buy, ▼ sell)",
        lines=[svg.Line(np.asarray(px.index, dtype=np.int64), px.to_numpy(np.float64), "price",
                        "close")],
        markers=markers,
        y_format=lambda v: f"{v:,.6g}",
        css_id=f"price-{sym.replace('/', '-')}",
    )


#: Bars drawn in the weights chart (evenly spaced) and assets with a band of their own.
WEIGHT_SAMPLES, WEIGHT_BANDS = 400, 8


def portfolio_weights(data: ReportInput) -> pd.DataFrame:
    """Each asset's weight at every bar close: position (from the fills' ``position_after``)
    × close / equity; index = the equity's bar closes, one column per asset. A missing bar
    is valued at the asset's last close."""
    ts = np.asarray(data.equity.index, dtype=np.int64)
    eq = data.equity.to_numpy(np.float64)
    closes = data.closes.reindex(ts).ffill()
    out = pd.DataFrame(0.0, index=ts, columns=list(closes.columns))
    if not len(data.fills):
        return out
    rows = data.fills.groupby("symbol", sort=False).indices
    f_ts = data.fills["ts"].to_numpy(np.int64)
    f_pos = data.fills["position_after"].to_numpy(np.float64)
    for sym, r in rows.items():
        if sym not in out.columns:
            continue
        r = r[np.argsort(f_ts[r], kind="stable")]
        k = np.searchsorted(f_ts[r], ts, side="right") - 1
        pos = np.where(k >= 0, f_pos[r][np.clip(k, 0, None)], 0.0)
        out[sym] = np.where(pos != 0.0, pos * closes[sym].to_numpy(np.float64) / eq, 0.0)
    return out


def rebalance_turnover(data: ReportInput) -> pd.Series:
    """Turnover of each rebalance: Σ ``|qty · price| / equity`` over its ``rebalance``
    fills (the ``turnover`` statistic's rule), indexed by the rebalance bar's close."""
    f = data.fills[data.fills["reason"] == "rebalance"] if len(data.fills) else data.fills
    if not len(f):
        return pd.Series(dtype=np.float64)
    per_fill = pd.Series(fill_turnover(f, data.equity), index=f["ts"].to_numpy(np.int64))
    return per_fill.groupby(level=0).sum()


def _weights_section(data: ReportInput) -> list[str]:
    """The weights chart (largest average weights in bands of their own, the rest as
    ``other``; cash is what lies above the top) and the turnover per rebalance."""
    w = portfolio_weights(data)
    out = ["<h2>Portfolio weights</h2>"]
    if len(w):
        pick = np.unique(np.linspace(0, len(w) - 1, min(len(w), WEIGHT_SAMPLES)).astype(np.int64))
        w = w.iloc[pick]
        x = np.asarray(w.index, dtype=np.int64)
        mean = w.mean().sort_values(ascending=False, kind="stable")
        top = [s for s in mean.index[:WEIGHT_BANDS] if mean[s] > 0]
        rest = [s for s in w.columns if s not in top]
        bands = [svg.Line(x, w[s].to_numpy(), f"band{i}", s) for i, s in enumerate(top)]
        if rest and (w[rest].to_numpy() != 0).any():
            bands.append(svg.Line(x, w[rest].sum(axis=1).to_numpy(), "band-other", "other"))
        if bands:
            out.append(svg.render(svg.Chart("Weights over time (share of equity; cash above)",
                                            bands, y_format=lambda v: f"{100 * v:.0f}%",
                                            css_id="weights-chart", stacked=True)))
            out.append("<div class='meta' id='weights-legend'>" + "".join(
                f"<span class='swatch {b.css}'></span>{html.escape(b.label)}" for b in bands)
                + "</div>")
    turn = rebalance_turnover(data)
    if len(turn):
        out.append(svg.render(svg.Chart(
            "Turnover per rebalance (traded value / equity)",
            [svg.Line(np.asarray(turn.index, dtype=np.int64), turn.to_numpy(), "turnover",
                      "turnover", bars=True)],
            y_format=lambda v: f"{100 * v:.0f}%", height=200, css_id="turnover-chart")))
    else:
        out.append("<p>No rebalance trades.</p>")
    return out


def _trades_table(trades: pd.DataFrame, last: int = 50) -> str:
    """The most recent ``last`` trades (open ones included), newest first."""
    if not len(trades):
        return "<h2>Trades</h2><p>No trades.</p>"
    t = trades.sort_values("entry_ts", kind="stable").tail(last).iloc[::-1]
    out = [f"<h2>Trades (last {len(t)} of {len(trades)})</h2><table id='trades'><tr>"
           "<th>symbol</th><th>side</th><th>entry</th><th>exit</th><th>entry price</th>"
           "<th>exit price</th><th>pnl</th><th>return</th><th>exit reason</th></tr>"]
    for r in t.to_dict("records"):
        exit_at = _iso(r["exit_ts"]) if math.isfinite(float(r["exit_ts"])) else "open"
        out.append(
            f"<tr><td>{html.escape(str(r['symbol']))}</td><td>{html.escape(str(r['direction']))}"
            f"</td><td>{_iso(r['entry_ts'])}</td><td>{exit_at}</td>"
            f"<td>{_num(r['entry_price'], 6)}</td><td>{_num(r['exit_price'], 6)}</td>"
            f"<td{_cls(r['pnl'])}>{_num(r['pnl'])}</td><td{_cls(r['pnl'])}>{_pct(r['return'])}</td>"
            f"<td>{html.escape(str(r['exit_reason']))}</td></tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def render_report(data: ReportInput, chart_symbols: Sequence[str] | None = None) -> str:
    """The whole page as one HTML string."""
    st = data.stats
    eq = data.equity
    x = np.asarray(eq.index, dtype=np.int64)
    dd = drawdown_series(eq, data.initial_cash)
    charts_top = [
        svg.Chart("Equity", [svg.Line(x, eq.to_numpy(np.float64), "equity", "equity")],
                  y_format=lambda v: f"{v:,.0f}", css_id="equity-chart"),
        svg.Chart("Drawdown", [svg.Line(x, dd.to_numpy(), "drawdown", "drawdown", area=True)],
                  y_format=lambda v: f"{100 * v:.0f}%", height=200, css_id="drawdown-chart"),
    ]
    syms = list(chart_symbols) if chart_symbols is not None else default_chart_symbols(data)
    syms = [s for s in syms if s in data.closes.columns]

    kpis = [
        ("Total return", _pct(st.get("total_return"))),
        ("CAGR", _pct(st.get("cagr"))),
        ("Sharpe", _num(st.get("sharpe"))),
        ("Sortino", _num(st.get("sortino"))),
        ("Max drawdown", _pct(st.get("max_drawdown"))),
        ("Win rate", _pct(st.get("win_rate"))),
        ("Profit factor", _num(st.get("profit_factor"))),
        ("Exposure", _pct(st.get("exposure"))),
        ("Trades", _trade_count(st)),
        ("Fees", _num(st.get("fees"))),
        ("Final equity", _num(st.get("final_equity"))),
        ("Turnover", _num(st.get("turnover")) + "×"),
        ("Avg holdings", _num(st.get("avg_holdings"))),
    ]
    meta = {"profile": data.profile, **data.meta}
    p = []
    p.append("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    p.append(f"<title>Tandem backtest — {html.escape(data.profile)}</title>")
    portfolio = data.meta.get("mode") == "portfolio"
    p.append(f"<style>{_CSS}{_WEIGHTS_CSS if portfolio else ''}</style></head><body>")
    p.append(f"<h1>Backtest: {html.escape(data.profile)}</h1>")
    p.append(
        f"<div class='meta' id='data-range'>{_bar_range(st, data.meta)} · "
        f"{st.get('n_bars', 0)} bars · "
        f"{len(data.closes.columns)} assets</div>"
    )
    p.append("<h2>Summary</h2><div class='kpi' id='kpis'>")
    p += [f"<div>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in kpis]
    p.append("</div>")
    p.append("<h2>Equity and drawdown</h2>")
    p.append(svg.render_all(charts_top))
    if portfolio:
        p += _weights_section(data)

    p.append("<h2>Trades on price</h2>")
    if syms:
        opts = "".join(f"<option value='{html.escape(s)}'>{html.escape(s)}</option>" for s in syms)
        p.append(f"<label>Asset <select id='asset-select'>{opts}</select></label>")
        for s in syms:
            p.append(f"<div class='asset-chart' data-symbol='{html.escape(s)}'>")
            p.append(svg.render(_price_chart(data, s)))
            p.append("</div>")

    p.append("<h2>Per asset</h2><table id='per-asset'><tr><th>symbol</th><th>trades</th>"
             "<th>open</th><th>win rate</th><th>pnl</th><th>fees</th><th>in market</th>"
             "<th>buy &amp; hold</th></tr>")
    for r in per_asset_table(data).itertuples(index=False):
        p.append(
            f"<tr><td>{html.escape(r.symbol)}</td><td>{r.trades}</td><td>{r.open}</td>"
            f"<td>{_pct(r.win_rate)}</td><td{_cls(r.pnl)}>{_num(r.pnl)}</td>"
            f"<td>{_num(r.fees)}</td><td>{_pct(r.in_market)}</td>"
            f"<td{_cls(r.buy_hold)}>{_pct(r.buy_hold)}</td></tr>"
        )
    p.append("</table>")

    p.append(_trades_table(data.trades))

    p.append("<h2>Run</h2><table id='run-meta'>")
    p += [f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
          for k, v in meta.items()]
    p.append("</table>")
    if data.profile_config:
        p.append("<h2>Profile</h2><pre id='profile'>")
        p.append(html.escape(json.dumps(data.profile_config, indent=2, default=str)))
        p.append("</pre>")
    p.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(p)


def write_report(
    path: str | Path, data: ReportInput, chart_symbols: Sequence[str] | None = None
) -> Path:
    """Write ``report.html`` (UTF-8) and return its path."""
    path = Path(path)
    path.write_text(render_report(data, chart_symbols), encoding="utf-8")
    return path
