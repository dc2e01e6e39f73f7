"""Tiny inline-SVG chart primitives for the self-contained HTML report.

Why hand-written SVG: the report must open offline (no CDN, no network) and be checkable
in a headless browser; a few hundred lines of SVG text do that with no dependency. Charts
are time series on a UTC time axis (x = epoch ms), drawn as ``<path>`` elements whose
classes (``line``, ``area``, ``marker buy``/``marker sell``) the tests and the CSS address.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

# Plot area margins inside the SVG viewBox (left room for y labels, bottom for dates).
_ML, _MR, _MT, _MB = 64, 16, 28, 28


@dataclass
class Line:
    """One series: x in epoch ms, y values (NaN = gap), CSS class and legend label."""

    x: np.ndarray
    y: np.ndarray
    css: str
    label: str = ""
    area: bool = False  # fill between the line and y = 0 (drawdown)
    bars: bool = False  # one vertical bar from y = 0 per point (turnover per rebalance)


@dataclass
class Marker:
    """A trade marker: ▲ for buys, ▼ for sells, with a hover tooltip."""

    x: int
    y: float
    side: str  # "buy" | "sell"
    tooltip: str = ""


@dataclass
class Chart:
    """A chart: its lines, optional markers, title and y-axis number format."""

    title: str
    lines: list[Line]
    markers: list[Marker] = field(default_factory=list)
    y_format: Callable[[float], str] = lambda v: f"{v:,.2f}"
    width: int = 960
    height: int = 280
    css_id: str = ""
    #: lines are bands stacked on one another (weights): each drawn as the area between the
    #: running sum below it and the running sum including it; NaN counts as 0
    stacked: bool = False


def _stack(lines: list[Line]) -> list[Line]:
    """Each band's top edge: the running sum of the lines up to and including it."""
    out, acc = [], None
    for ln in lines:
        y = np.nan_to_num(np.asarray(ln.y, dtype=np.float64))
        acc = y if acc is None else acc + y
        out.append(Line(ln.x, acc, ln.css, ln.label))
    return out


def _band_paths(lines: list[Line], sx: Callable, sy: Callable) -> list[str]:
    """Closed ``<path class="band ...">`` areas between consecutive stacked edges."""
    out = []
    below = np.zeros(len(lines[0].x)) if lines else np.zeros(0)
    for ln in lines:
        px = sx(np.asarray(ln.x, dtype=np.float64))
        top, bot = sy(ln.y), sy(below)
        d = "M" + "L".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, top, strict=True))
        d += "L" + "L".join(f"{a:.1f},{b:.1f}" for a, b in zip(px[::-1], bot[::-1], strict=True))
        out.append(f'<path class="band {html.escape(ln.css)}" d="{d}Z"><title>'
                   f"{html.escape(ln.label)}</title></path>")
        below = ln.y
    return out


def decimate(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each bucket's first, min, max and last point so spikes survive downsampling.

    A 100k-bar series becomes ~4·``buckets`` points: small HTML, same visual envelope.
    (The first min and the first max of a bucket; a bucket of NaN keeps its ends only.)
    """
    n = len(x)
    if n <= 4 * buckets:
        return x, y
    edges = np.unique(np.linspace(0, n, buckets + 1).astype(np.int64))
    starts, ends = edges[:-1], edges[1:]
    sizes = ends - starts
    bucket = np.repeat(np.arange(len(starts)), sizes)
    finite = np.isfinite(y)
    lows = np.minimum.reduceat(np.where(finite, y, np.inf), starts)
    highs = np.maximum.reduceat(np.where(finite, y, -np.inf), starts)
    keep = [starts, ends - 1]
    for extreme in (lows, highs):
        hit = np.flatnonzero(finite & (y == np.repeat(extreme, sizes)))
        _, first = np.unique(bucket[hit], return_index=True)  # first hit of each bucket
        keep.append(hit[first])
    k = np.unique(np.concatenate(keep))
    return x[k], y[k]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1-2-5 steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fmt_date(ms: float, span_ms: float) -> str:
    """A UTC time-axis label: the day, with the time of day when the axis spans < 5 days."""
    # datetime, not pandas: the PNG plot (backtest.plots) shares these labels without pandas.
    ts = _EPOCH + timedelta(milliseconds=int(ms))
    return ts.strftime("%Y-%m-%d %H:%M" if span_ms < 5 * 86_400_000 else "%Y-%m-%d")


def _path_d(px: np.ndarray, py: np.ndarray) -> str:
    """SVG path data; NaN values break the line (a gap in the data stays a gap)."""
    parts: list[str] = []
    pen_down = False
    for a, b in zip(px, py, strict=True):
        if not (math.isfinite(a) and math.isfinite(b)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{a:.1f},{b:.1f}")
        pen_down = True
    return "".join(parts)


def render(chart: Chart) -> str:
    """The chart as one ``<svg>`` element (responsive width, fixed aspect)."""
    w, h = chart.width, chart.height
    pw, ph = w - _ML - _MR, h - _MT - _MB
    lines = _stack(chart.lines) if chart.stacked else chart.lines
    xs = [ln.x for ln in lines if len(ln.x)] + (
        [np.array([m.x for m in chart.markers])] if chart.markers else []
    )
    ys = [ln.y[np.isfinite(ln.y)] for ln in lines] + (
        [np.array([m.y for m in chart.markers])] if chart.markers else []
    )
    ys += [np.array([0.0])] if chart.stacked or any(ln.area or ln.bars for ln in lines) else []
    allx = np.concatenate(xs) if xs else np.array([0.0])
    ally = np.concatenate([y for y in ys if len(y)]) if any(len(y) for y in ys) else np.array([0.0])
    x0, x1 = float(allx.min()), float(allx.max())
    y0, y1 = float(ally.min()), float(ally.max())
    if x1 <= x0:
        x1 = x0 + 1.0
    if y1 <= y0:
        y0, y1 = y0 - 1.0, y1 + 1.0
    pad = (y1 - y0) * 0.04
    y0, y1 = y0 - pad, y1 + pad

    def sx(v: np.ndarray | float) -> np.ndarray | float:
        return _ML + (np.asarray(v, dtype=np.float64) - x0) / (x1 - x0) * pw

    def sy(v: np.ndarray | float) -> np.ndarray | float:
        return _MT + (y1 - np.asarray(v, dtype=np.float64)) / (y1 - y0) * ph

    out = [
        f'<svg class="chart" id="{html.escape(chart.css_id)}" viewBox="0 0 {w} {h}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(chart.title)}">',
        f'<text class="title" x="{_ML}" y="18">{html.escape(chart.title)}</text>',
        f'<rect class="plot" x="{_ML}" y="{_MT}" width="{pw}" height="{ph}"/>',
    ]
    for t in nice_ticks(y0, y1):
        yy = float(sy(t))
        out.append(f'<line class="grid" x1="{_ML}" x2="{_ML + pw}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        out.append(
            f'<text class="tick" x="{_ML - 6}" y="{yy + 4:.1f}" text-anchor="end">'
            f"{html.escape(chart.y_format(t))}</text>"
        )
    for i in range(6):
        t = x0 + (x1 - x0) * i / 5
        xx = float(sx(t))
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<text class="tick" x="{xx:.1f}" y="{h - 8}" text-anchor="{anchor}">'
            f"{fmt_date(t, x1 - x0)}</text>"
        )
    if chart.stacked:
        out += _band_paths(lines, sx, sy)
    for ln in [] if chart.stacked else lines:
        if ln.bars:
            base = float(sy(0.0))
            d = "".join(f"M{a:.1f},{base:.1f}V{b:.1f}"
                        for a, b in zip(sx(ln.x), sy(ln.y), strict=True) if math.isfinite(b))
            out.append(f'<path class="bars {html.escape(ln.css)}" d="{d}"><title>'
                       f"{html.escape(ln.label)}</title></path>")
            continue
        dx, dy = decimate(np.asarray(ln.x, dtype=np.float64), np.asarray(ln.y, dtype=np.float64),
                          buckets=pw)
        px, py = sx(dx), sy(dy)
        d = _path_d(px, py)
        if ln.area and d:
            base = float(sy(0.0))
            fin = np.isfinite(py)
            area = f"M{px[fin][0]:.1f},{base:.1f}" + "L" + d[1:] + f"L{px[fin][-1]:.1f},{base:.1f}Z"
            out.append(f'<path class="area {html.escape(ln.css)}" d="{area}"/>')
        out.append(f'<path class="line {html.escape(ln.css)}" d="{d}"><title>'
                   f"{html.escape(ln.label)}</title></path>")
    for m in chart.markers:
        mx, my = float(sx(m.x)), float(sy(m.y))
        # Buy: triangle pointing up below the price; sell: pointing down above it.
        d = (f"M{mx:.1f},{my:.1f}l-5,9h10z" if m.side == "buy"
             else f"M{mx:.1f},{my:.1f}l-5,-9h10z")
        out.append(f'<path class="marker {m.side}" d="{d}"><title>'
                   f"{html.escape(m.tooltip)}</title></path>")
    legend = [] if chart.stacked else [ln for ln in lines if ln.label]
    for i, ln in enumerate(legend):
        lx = w - _MR - 150 * (len(legend) - i)
        out.append(f'<text class="legend {html.escape(ln.css)}" x="{lx}" y="18">'
                   f"— {html.escape(ln.label)}</text>")
    out.append("</svg>")
    return "\n".join(out)


def render_all(charts: Sequence[Chart]) -> str:
    """Several charts, one after the other."""
    return "\n".join(render(c) for c in charts)
