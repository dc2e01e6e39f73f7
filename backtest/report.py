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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from tandem.backtest import svg
from tandem.backtest.stats import EquityCurve, drawdown, equity_curve, fill_turnover
from tandem.core.arrow_numpy import column_values
from tandem.core.utc import EPOCH, ms_from_iso

if TYPE_CHECKING:  # the page is built from NumPy columns; pandas objects are accepted too
    import pandas as pd
    import pyarrow as pa

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


class Closes(NamedTuple):
    """Close prices without pandas: ``values`` is ``n_bars x n_assets`` (NaN = no bar)."""

    ts: np.ndarray  # bar close times, int64 ms
    values: np.ndarray
    symbols: list[str]

    @classmethod
    def of(cls, closes: pd.DataFrame | Closes) -> Closes:
        """A frame (index = ts_close in ms, one column per symbol) or a Closes."""
        if isinstance(closes, Closes):
            return closes
        return cls(np.asarray(closes.index, dtype=np.int64), closes.to_numpy(np.float64),
                   [str(c) for c in closes.columns])


@dataclass
class ReportInput:
    """Everything the report shows; the runner fills it from one backtest run.

    The page is built from NumPy columns (importing pandas would cost a run ~0.3 s); the
    pandas objects of a run (Series, frames) are accepted as well.
    """

    profile: str
    equity: pd.Series | EquityCurve  # equity at each bar close (ts_close, int ms)
    stats: dict[str, Any]
    fills: pd.DataFrame | pa.Table  # the journal
    trades: pd.DataFrame | Mapping[str, np.ndarray]  # core.journal.trades_table / trade_columns
    closes: pd.DataFrame | Closes  # one column per symbol, index = ts_close (int ms)
    profile_config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # run id, mode, data source, range...
    initial_cash: float | None = None

    @cached_property
    def curve(self) -> EquityCurve:
        return equity_curve(self.equity)

    @cached_property
    def close(self) -> Closes:
        return Closes.of(self.closes)

    @cached_property
    def _fill_names(self) -> list[str]:
        f = self.fills
        return list(f.column_names) if hasattr(f, "column_names") else [str(c) for c in f.keys()]

    @cached_property
    def n_fills(self) -> int:
        return len(self.fill(self._fill_names[0])) if self._fill_names else 0

    def fill(self, name: str) -> np.ndarray | None:
        """A journal column as NumPy (None when the journal has no such column)."""
        return column_values(self.fills, name) if name in self._fill_names else None

    @cached_property
    def trade_cols(self) -> dict[str, np.ndarray]:
        return {str(c): _numeric(self.trades[c]) for c in self.trades}


def _numeric(column: Any) -> np.ndarray:
    """A trades column as NumPy; a pandas nullable integer column (``Int64``: ``exit_ts``,
    ``duration_ms`` of :func:`tandem.core.journal.trades_table`) as float with NaN for
    missing, as :func:`tandem.core.journal.trade_columns` gives it."""
    if str(getattr(column, "dtype", "")) == "Int64":
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(column)


def _n_trades(data: ReportInput) -> int:
    cols = data.trade_cols
    return len(next(iter(cols.values()))) if cols else 0


def _groups(values: np.ndarray) -> dict[Any, np.ndarray]:
    """Row positions per value, values in order of first appearance (a groupby's indices)."""
    rows: dict[Any, list[int]] = {}
    for k, v in enumerate(values.tolist()):
        rows.setdefault(v, []).append(k)
    return {v: np.asarray(r, dtype=np.int64) for v, r in rows.items()}


def _iso(ms: Any) -> str:
    if ms is None or (isinstance(ms, float) and not math.isfinite(ms)):
        return "–"
    return (EPOCH + timedelta(milliseconds=int(ms))).strftime("%Y-%m-%d %H:%M UTC")


def _periods_note(stats: dict[str, Any], meta: dict[str, Any]) -> str:
    """`` of 2880 periods (gaps)``: the span has slices with no bar (stats.json bar_periods)."""
    periods, bars = meta.get("bar_periods") or 0, stats.get("n_bars", 0)
    return f" of {periods} periods (gaps)" if periods > bars else ""


def without_bars_note(meta: dict[str, Any]) -> str:
    """`` (1 without bars: LPT/USDT)``: assets counted in the run that trade nothing (the
    summary and the page said "3 assets" for two that had bars)."""
    none = meta.get("assets_without_bars") or []
    if not none:
        return ""
    shown = ", ".join(none[:5]) + (f" ... ({len(none)})" if len(none) > 5 else "")
    return f" ({len(none)} without bars: {shown})"


def _bar_range(stats: dict[str, Any], meta: dict[str, Any]) -> str:
    """The header's date range, in bar **open** times like the CLI summary and the Run table.

    The equity index holds bar *close* times (equity is marked once a bar has closed), so
    using it here showed a range one bar later than everything else the user sees.
    """
    first, last = meta.get("first_tradable_bar"), meta.get("last_bar")
    if first and last:
        return f"Bars {_iso(ms_from_iso(first))} → {_iso(ms_from_iso(last))} (open times)"
    return f"Equity {_iso(stats.get('start_ts'))} → {_iso(stats.get('end_ts'))} (bar closes)"


def _trade_count(stats: dict[str, Any]) -> str:
    """Closed round trips, plus the open ones (the trades table lists both)."""
    n_open = int(stats.get("n_open_trades") or 0)
    closed = str(stats.get("n_trades", 0))
    return f"{closed} (+{n_open} open)" if n_open else closed


def _skipped_kpis(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The "Entries skipped" tile (discrete runs: stats carry the count), with its causes
    when any: entry signals the engine did not act on, per bar and asset while flat."""
    n = stats.get("n_entries_skipped")
    if n is None:
        return []
    by = stats.get("entries_skipped") or {}
    parts = [f"{by[k]} {label}" for k, label in (("unfunded", "unfunded"),
                                                 ("below_min_trade_value", "< min trade"))
             if by.get(k)]
    return [("Entries skipped", f"{n} ({' · '.join(parts)})" if parts else str(n))]


def _pct(v: Any) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{100 * float(v):.2f}%"


def _num(v: Any, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):,.{digits}f}"


def _cls(v: Any) -> str:
    return ' class="neg"' if v is not None and math.isfinite(float(v)) and float(v) < 0 else ""


def per_asset_rows(data: ReportInput) -> list[dict[str, Any]]:
    """One row per asset: trades, win rate, pnl, fees, time in market, buy-and-hold return."""
    close = data.close
    n_tr = _n_trades(data)
    tr = data.trade_cols
    pnl_all = tr["pnl"].astype(np.float64) if n_tr else np.zeros(0)
    closed_mask = np.isfinite(pnl_all)
    # Row positions per symbol, found once (a boolean mask per asset cost seconds at 100).
    trade_rows = _groups(tr["symbol"]) if n_tr else {}
    has_fills = data.n_fills > 0
    fill_rows = _groups(data.fill("symbol")) if has_fills else {}
    none = np.zeros(0, dtype=np.int64)
    fill_ts = data.fill("ts").astype(np.int64) if has_fills else none
    fill_pos = data.fill("position_after").astype(np.float64) if has_fills else np.zeros(0)
    fill_fee = data.fill("fee").astype(np.float64) if has_fills else np.zeros(0)
    rows = []
    for j, sym in enumerate(close.symbols):
        t_rows = trade_rows.get(sym, none)
        pnl = pnl_all[t_rows[closed_mask[t_rows]]]
        f_rows = fill_rows.get(sym, none)
        col = close.values[:, j]
        px = col[~np.isnan(col)]
        held = 0.0
        if len(f_rows):
            k = np.searchsorted(fill_ts[f_rows], close.ts, side="right") - 1
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
                "buy_hold": float(px[-1] / px[0] - 1.0) if len(px) > 1 else float("nan"),
            }
        )
    return rows


def per_asset_table(data: ReportInput) -> pd.DataFrame:
    """:func:`per_asset_rows` as a frame."""
    import pandas as pd

    return pd.DataFrame(per_asset_rows(data))


def _by_count(values: np.ndarray) -> list[Any]:
    """Distinct values, most frequent first, ties in order of first appearance (the order
    of ``Series.value_counts()``)."""
    groups = _groups(values)
    keys = list(groups)
    counts = np.array([len(r) for r in groups.values()], dtype=np.int64)
    return [keys[k] for k in np.argsort(-counts, kind="stable")]


def default_chart_symbols(data: ReportInput, limit: int = 8) -> list[str]:
    """Core assets first (from the profile), then the most-traded assets, up to ``limit``."""
    symbols = data.close.symbols
    core = [s for s in data.profile_config.get("core_assets", []) if s in symbols]
    counts = _by_count(data.fill("symbol")) if data.n_fills else []
    busy = [s for s in counts if s in symbols]
    out: list[str] = []
    for s in core + busy + symbols:
        if s not in out:
            out.append(s)
    return out[:limit]


def _price_chart(data: ReportInput, sym: str, max_markers: int = 3000) -> svg.Chart:
    close = data.close
    markers = []
    if data.n_fills:
        rows = np.flatnonzero(data.fill("symbol") == sym)[:max_markers]
        cols = {c: data.fill(c) for c in ("ts", "price", "side", "qty", "reason", "intrabar")}
        ts, price, side, qty, reason = (cols[c][rows].tolist()
                                        for c in ("ts", "price", "side", "qty", "reason"))
        intrabar = cols["intrabar"][rows].tolist() if cols["intrabar"] is not None else [""] * len(rows)
        markers = [
            svg.Marker(
                x=int(t), y=float(p), side=str(sd),
                tooltip=f"{sd} {q:.6g} @ {p:.6g} ({why}"
                + (f", ambiguous bar: {ib}" if ib else "") + f") {_iso(t)}",
            )
            for t, p, sd, q, why, ib in zip(ts, price, side, qty, reason, intrabar, strict=True)
        ]
    return svg.Chart(
        title=f"{sym} close with fills (▲ buy, ▼ sell)",
        lines=[svg.Line(close.ts, close.values[:, close.symbols.index(sym)], "price", "close")],
        markers=markers,
        y_format=lambda v: f"{v:,.6g}",
        css_id=f"price-{sym.replace('/', '-')}",
    )


#: Bars drawn in the weights chart (evenly spaced) and assets with a band of their own.
WEIGHT_SAMPLES, WEIGHT_BANDS = 400, 8


def _weights(data: ReportInput) -> np.ndarray:
    """Each asset's weight at every bar close, ``n_assets x n_bars`` (see
    :func:`portfolio_weights`)."""
    ts, eq = data.curve
    close = data.close
    # Closes at the equity's bar closes, a missing bar valued at the asset's last close.
    k = np.searchsorted(close.ts, ts)
    hit = (k < len(close.ts)) & (close.ts[np.clip(k, 0, len(close.ts) - 1)] == ts)
    px = np.full((len(ts), len(close.symbols)), np.nan)
    px[hit] = close.values[k[hit]]
    last = np.where(~np.isnan(px), np.arange(len(ts))[:, None], -1)
    last = np.maximum.accumulate(last, axis=0)
    px = np.where(last >= 0, px[np.clip(last, 0, None), np.arange(len(close.symbols))], np.nan)
    out = np.zeros((len(close.symbols), len(ts)))
    if not data.n_fills:
        return out
    f_ts = data.fill("ts").astype(np.int64)
    f_pos = data.fill("position_after").astype(np.float64)
    for sym, r in _groups(data.fill("symbol")).items():
        if sym not in close.symbols:
            continue
        j = close.symbols.index(sym)
        r = r[np.argsort(f_ts[r], kind="stable")]
        k = np.searchsorted(f_ts[r], ts, side="right") - 1
        pos = np.where(k >= 0, f_pos[r][np.clip(k, 0, None)], 0.0)
        out[j] = np.where(pos != 0.0, pos * px[:, j] / eq, 0.0)
    return out


def portfolio_weights(data: ReportInput) -> pd.DataFrame:
    """Each asset's weight at every bar close: position (from the fills' ``position_after``)
    × close / equity; index = the equity's bar closes, one column per asset. A missing bar
    is valued at the asset's last close."""
    import pandas as pd

    return pd.DataFrame(_weights(data).T, index=data.curve.ts, columns=data.close.symbols)


def _turnover(data: ReportInput) -> tuple[np.ndarray, np.ndarray]:
    """Rebalance bar closes and the turnover of each (see :func:`rebalance_turnover`)."""
    if not data.n_fills:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    rows = np.flatnonzero(data.fill("reason") == "rebalance")
    per_fill = fill_turnover({c: data.fill(c)[rows] for c in ("ts", "qty", "price")},
                             data.curve)
    ts = data.fill("ts").astype(np.int64)[rows]
    bars, at = np.unique(ts, return_inverse=True)
    ok = ~np.isnan(per_fill)  # NaN (no equity yet) adds nothing
    sums = np.bincount(at[ok], weights=per_fill[ok], minlength=len(bars))
    return bars, sums


def rebalance_turnover(data: ReportInput) -> pd.Series:
    """Turnover of each rebalance: Σ ``|qty · price| / equity`` over its ``rebalance``
    fills (the ``turnover`` statistic's rule), indexed by the rebalance bar's close."""
    import pandas as pd

    bars, sums = _turnover(data)
    return pd.Series(sums, index=bars, dtype=np.float64)


def _weights_section(data: ReportInput) -> list[str]:
    """The weights chart (largest average weights in bands of their own, the rest as
    ``other``; cash is what lies above the top) and the turnover per rebalance."""
    w = _weights(data)  # n_assets x n_bars
    symbols = data.close.symbols
    out = ["<h2>Portfolio weights</h2>"]
    n = w.shape[1]
    if n:
        pick = np.unique(np.linspace(0, n - 1, min(n, WEIGHT_SAMPLES)).astype(np.int64))
        w = np.ascontiguousarray(w[:, pick])
        x = data.curve.ts[pick]
        mean = w.sum(axis=1) / w.shape[1]
        ranked = np.argsort(-mean, kind="stable")  # largest first, ties in column order
        top = [int(j) for j in ranked[:WEIGHT_BANDS] if mean[j] > 0]
        rest = [j for j in range(len(symbols)) if j not in top]
        bands = [svg.Line(x, w[j], f"band{i}", symbols[j]) for i, j in enumerate(top)]
        if rest and (w[rest] != 0).any():
            bands.append(svg.Line(x, w[rest].sum(axis=0), "band-other", "other"))
        if bands:
            out.append(svg.render(svg.Chart("Weights over time (share of equity; cash above)",
                                            bands, y_format=lambda v: f"{100 * v:.0f}%",
                                            css_id="weights-chart", stacked=True)))
            out.append("<div class='meta' id='weights-legend'>" + "".join(
                f"<span class='swatch {b.css}'></span>{html.escape(b.label)}" for b in bands)
                + "</div>")
    bars, turn = _turnover(data)
    if len(turn):
        out.append(svg.render(svg.Chart(
            "Turnover per rebalance (traded value / equity)",
            [svg.Line(bars, turn, "turnover", "turnover", bars=True)],
            y_format=lambda v: f"{100 * v:.0f}%", height=200, css_id="turnover-chart")))
    else:
        out.append("<p>No rebalance trades.</p>")
    return out


def _trades_table(data: ReportInput, last: int = 50) -> str:
    """The most recent ``last`` trades (open ones included), newest first."""
    n = _n_trades(data)
    if not n:
        return "<h2>Trades</h2><p>No trades.</p>"
    cols = data.trade_cols
    pick = np.argsort(cols["entry_ts"], kind="stable")[-last:][::-1]
    records = [dict(zip(cols, row, strict=True))
               for row in zip(*(v[pick].tolist() for v in cols.values()), strict=True)]
    out = [f"<h2>Trades (last {len(pick)} of {n})</h2><table id='trades'><tr>"
           "<th>symbol</th><th>side</th><th>entry</th><th>exit</th><th>entry price</th>"
           "<th>exit price</th><th>pnl</th><th>return</th><th>exit reason</th></tr>"]
    for r in records:
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
    x, eq = data.curve
    dd = drawdown(eq, data.initial_cash)
    charts_top = [
        svg.Chart("Equity", [svg.Line(x, eq, "equity", "equity")],
                  y_format=lambda v: f"{v:,.0f}", css_id="equity-chart"),
        svg.Chart("Drawdown", [svg.Line(x, dd, "drawdown", "drawdown", area=True)],
                  y_format=lambda v: f"{100 * v:.0f}%", height=200, css_id="drawdown-chart"),
    ]
    syms = list(chart_symbols) if chart_symbols is not None else default_chart_symbols(data)
    syms = [s for s in syms if s in data.close.symbols]

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
        *_skipped_kpis(st),
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
        f"{st.get('n_bars', 0)} bars{_periods_note(st, data.meta)} · "
        f"{len(data.close.symbols)} assets{html.escape(without_bars_note(data.meta))}</div>"
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
    for r in per_asset_rows(data):
        p.append(
            f"<tr><td>{html.escape(r['symbol'])}</td><td>{r['trades']}</td><td>{r['open']}</td>"
            f"<td>{_pct(r['win_rate'])}</td><td{_cls(r['pnl'])}>{_num(r['pnl'])}</td>"
            f"<td>{_num(r['fees'])}</td><td>{_pct(r['in_market'])}</td>"
            f"<td{_cls(r['buy_hold'])}>{_pct(r['buy_hold'])}</td></tr>"
        )
    p.append("</table>")

    p.append(_trades_table(data))

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
