"""PNG plot of a run (equity above, drawdown below) for places HTML cannot go, with Pillow.

Why Pillow and not matplotlib: the chart is two fixed panels with one series each, and
``import matplotlib.figure`` alone took 0.7-1.0 s of a 2-core machine (plus ~0.3 s to draw
and save): most of what the report added to ``tandem-backtest run``. ``PIL.Image`` and
``ImageDraw`` import in ~30 ms. ImageDraw does not anti-alias, so the chart is drawn at
twice its size and averaged down (2 x 2 boxes). Ticks, date labels and the drawdown rule are the
HTML report's (:mod:`tandem.backtest.svg`, :mod:`tandem.backtest.stats`); pandas is not
imported here (a run's equity arrives as an EquityCurve or a Series, read through NumPy).
The sweep's PNGs (:mod:`tandem.backtest.sweep.pngs`) are drawn with the helpers below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tandem.backtest.stats import EquityCurve, drawdown, equity_curve
from tandem.backtest.svg import decimate, fmt_date, nice_ticks

if TYPE_CHECKING:
    import pandas as pd

WIDTH, HEIGHT = 1000, 550  # the PNG's pixels
EQUITY_COLOR, DRAWDOWN_COLOR = "#1f6feb", "#d1242f"
_S = 2  # supersampling: everything is drawn at _S x and downsampled
_INK, _MUTED, _FRAME, _GRID = "#24292f", "#57606a", "#8c959f", "#e8ebef"
_FILL = (0xD1, 0x24, 0x2F, 77)  # the drawdown colour at 30 % opacity
_HOUR, _DAY = 3_600_000, 86_400_000
# Round time steps for the x ticks (ms); longer spans step in calendar months.
_STEPS_MS = [m * 60_000 for m in (1, 5, 15, 30)] + [h * _HOUR for h in (1, 2, 3, 6, 12)] + [
    d * _DAY for d in (1, 2, 7, 14)]
_STEPS_MONTHS = (1, 2, 3, 6, 12, 24, 60, 120)
_MONDAY_MS = 4 * _DAY  # 1970-01-05, a Monday: weekly ticks fall on Mondays


def _font(size: float) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size * _S)


# Pillow's built-in font has no glyph for these (they came out as empty boxes).
_PLAIN = str.maketrans({"×": "x", "−": "-", "–": "-", "∞": "inf", "→": "->"})


def _plain(text: str) -> str:
    return text.translate(_PLAIN)


def _canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white image of ``width`` x ``height`` output pixels, drawn at _S x."""
    img = Image.new("RGB", (width * _S, height * _S), "white")
    return img, ImageDraw.Draw(img, "RGBA")  # RGBA: translucent fills blend over what is there


def _save(img: Image.Image, path: str | Path) -> Path:
    img.reduce(_S).save(path, format="PNG")  # a 2x2 box average: the anti-aliasing
    return Path(path)


def _time_ticks(t0: float, t1: float, max_n: int) -> list[int]:
    """Round UTC instants in [t0, t1] (ms): the finest round step giving ≤ ``max_n``."""
    for step in _STEPS_MS:
        off = _MONDAY_MS if step % (7 * _DAY) == 0 else 0
        first = math.ceil((t0 - off) / step) * step + off
        if (t1 - first) // step + 1 <= max_n:
            return list(range(int(first), int(t1) + 1, step))
    month0 = np.datetime64(int(t0), "ms").astype("datetime64[M]").astype(np.int64)
    month1 = np.datetime64(int(t1), "ms").astype("datetime64[M]").astype(np.int64)
    for step in _STEPS_MONTHS:
        months = np.arange(math.ceil(month0 / step) * step, month1 + 1, step)
        ms = months.astype("datetime64[M]").astype("datetime64[ms]").astype(np.int64)
        ms = ms[(ms >= t0) & (ms <= t1)]
        if len(ms) <= max_n:
            return ms.tolist()
    return [int(t0)]


def _value_format(ticks: list[float], suffix: str = "") -> Callable[[float], str]:
    """Tick labels with as many decimals as the step needs (thousands separated)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if 0 < step < 1 else 0
    return lambda v: f"{round(v, decimals) + 0.0:,.{decimals}f}{suffix}"  # + 0.0: no "-0"


def _span(lo: float, hi: float, pad: float = 0.05) -> tuple[float, float]:
    """The shown range: [lo, hi] padded; a flat series gets a band around its value."""
    if hi <= lo:
        half = abs(lo) * 0.01 or 1.0
        return lo - half, hi + half
    p = (hi - lo) * pad
    return lo - p, hi + p


class _Panel:
    """One plot area: its box on the canvas and the data → pixel mapping."""

    def __init__(self, box: tuple[int, int, int, int], x: tuple[float, float],
                 y: tuple[float, float]) -> None:
        self.box, (self.x0, self.x1), (self.y0, self.y1) = box, x, y

    def px(self, v: np.ndarray | float) -> np.ndarray:
        left, _, right, _ = self.box
        return left + (np.asarray(v, dtype=np.float64) - self.x0) / (self.x1 - self.x0) * (
            right - left)

    def py(self, v: np.ndarray | float) -> np.ndarray:
        _, top, _, bottom = self.box
        return top + (self.y1 - np.asarray(v, dtype=np.float64)) / (self.y1 - self.y0) * (
            bottom - top)


def _rotated_text(img: Image.Image, xy: tuple[float, float], text: str,
                  font: ImageFont.FreeTypeFont | ImageFont.ImageFont, angle: float = 90,
                  anchor: tuple[float, float] = (0.5, 0.5), fill: str = _MUTED) -> None:
    """``text`` turned ``angle``° counter-clockwise, placed so that its point ``anchor`` (a
    fraction of the unturned box: (0.5, 0.5) the centre, (1, 0.5) the end) lands on ``xy``."""
    text = _plain(text)
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(mask).text((-left + 1, -top + 1), text, fill=255, font=font)
    # Where the anchor moves: rotate its offset from the centre (y points down).
    dx, dy = (anchor[0] - 0.5) * mask.width, (anchor[1] - 0.5) * mask.height
    a = math.radians(angle)
    mask = mask.rotate(angle, expand=True, resample=Image.Resampling.BILINEAR)
    ax = mask.width / 2 + dx * math.cos(a) + dy * math.sin(a)
    ay = mask.height / 2 - dx * math.sin(a) + dy * math.cos(a)
    img.paste(Image.new("RGB", mask.size, fill), (round(xy[0] - ax), round(xy[1] - ay)), mask)


def _dashed(draw: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float],
            fill: str, width: int, dash: float, gap: float) -> None:
    """A dashed straight line from ``a`` to ``b`` (ImageDraw has none)."""
    length = math.dist(a, b)
    ux, uy = (b[0] - a[0]) / (length or 1), (b[1] - a[1]) / (length or 1)
    at = 0.0
    while at < length:
        end = min(at + dash, length)
        draw.line([(a[0] + ux * at, a[1] + uy * at), (a[0] + ux * end, a[1] + uy * end)],
                  fill=fill, width=width)
        at = end + gap


def _series(draw: ImageDraw.ImageDraw, panel: _Panel, x: np.ndarray, y: np.ndarray, color: str,
            width: int, fill_to_zero: bool = False) -> None:
    """The line (and the area down to y = 0), one point as a dot; NaN points are skipped."""
    keep = np.isfinite(y)
    if not keep.any():
        return
    px, py = panel.px(x[keep]), panel.py(y[keep])
    pts = list(zip(px.tolist(), py.tolist(), strict=True))
    if fill_to_zero and len(pts) > 1:
        base = float(panel.py(0.0))
        draw.polygon([(pts[0][0], base), *pts, (pts[-1][0], base)], fill=_FILL)
    if len(pts) == 1:
        r = width * 1.5
        draw.ellipse([pts[0][0] - r, pts[0][1] - r, pts[0][0] + r, pts[0][1] + r], fill=color)
    else:
        draw.line(pts, fill=color, width=width, joint="curve")


def _points(equity: pd.Series | EquityCurve, initial_cash: float | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bar times (ms), finite equity values and their drawdown in % (NaN where undefined)."""
    ts, values = equity_curve(equity)
    finite = np.isfinite(values)
    ts, values = ts[finite].astype(np.float64), values[finite]
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0: equity and its peak at 0
        dd = drawdown(values, initial_cash) * 100
    dd[~np.isfinite(dd)] = np.nan
    return ts, values, dd


def _axes(draw: ImageDraw.ImageDraw, panels: list[tuple[_Panel, list[float], Callable]],
          x_ticks: list[float], font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
          x_fmt: Callable[[float], str] | None = None) -> None:
    """Grid lines and y tick labels in each panel; the x labels under the last one (``x_fmt``,
    UTC dates by default)."""
    s = _S
    width = draw.im.size[0]  # the canvas, in drawn pixels
    for panel, ticks, fmt in panels:
        x_left, y_top, x_right, y_bottom = panel.box
        for xt in x_ticks:
            xx = float(panel.px(xt))
            draw.line([(xx, y_top), (xx, y_bottom)], fill=_GRID, width=s)
        for yt in ticks:
            yy = float(panel.py(yt))
            draw.line([(x_left, yy), (x_right, yy)], fill=_GRID, width=s)
            draw.line([(x_left - 4 * s, yy), (x_left, yy)], fill=_FRAME, width=s)
            draw.text((x_left - 7 * s, yy), _plain(fmt(yt)), fill=_MUTED, font=font,
                      anchor="rm")
    last = panels[-1][0]
    y = last.box[3]
    for xt in x_ticks:
        xx = float(last.px(xt))
        draw.line([(xx, y), (xx, y + 4 * s)], fill=_FRAME, width=s)
        label = _plain(x_fmt(xt) if x_fmt else fmt_date(xt, last.x1 - last.x0))
        half = font.getlength(label) / 2  # the end labels stay inside the image
        xx = min(max(xx, half + 2 * s), width - half - 2 * s)
        draw.text((xx, y + 7 * s), label, fill=_MUTED, font=font, anchor="mt")


def write_equity_png(
    path: str | Path, equity: pd.Series | EquityCurve, initial_cash: float | None = None,
    title: str = "",
) -> Path:
    """Equity (top) and drawdown (bottom) against UTC time, as one PNG; returns ``path``.

    ``equity``: an EquityCurve or a Series indexed by epoch ms (bar close). NaN/inf values
    are skipped and the drawdown (:func:`~tandem.backtest.stats.drawdown`) is taken over
    the others.
    """
    path = Path(path)
    ts, values, dd = _points(equity, initial_cash)
    s = _S
    tick_font, label_font, title_font = _font(11), _font(12), _font(15)
    if len(ts):
        x_span = _span(float(ts.min()), float(ts.max()), pad=0.01)
        if ts.min() == ts.max():  # one bar: an hour either side
            x_span = (ts[0] - _HOUR, ts[0] + _HOUR)
        eq_span = _span(float(values.min()), float(values.max()))
        worst = float(np.nanmin(dd, initial=0.0))
        dd_span = _span(worst if worst < 0 else -1.0, 0.0)  # no drawdown: 0 % at the top
        eq_ticks, dd_ticks = nice_ticks(*eq_span, n=6), nice_ticks(*dd_span, n=4)
    else:  # frames and a note, no ticks
        x_span, eq_span, dd_span = (0.0, 1.0), (0.0, 1.0), (-1.0, 0.0)
        eq_ticks, dd_ticks = [], []
    eq_fmt, dd_fmt = _value_format(eq_ticks), _value_format(dd_ticks, "%")
    labels = [eq_fmt(t) for t in eq_ticks] + [dd_fmt(t) for t in dd_ticks]
    label_w = max((tick_font.getlength(t) for t in labels), default=0.0)

    # Layout (output pixels): title; equity panel and drawdown panel (heights 3 : 1.3); dates.
    left = round(label_w / s) + 42
    right, top, gap, bottom = WIDTH - 18, 40, 14, HEIGHT - 34
    split = top + round((bottom - top - gap) * 3 / 4.3)
    eq_panel = _Panel((left * s, top * s, right * s, split * s), x_span, eq_span)
    dd_panel = _Panel((left * s, (split + gap) * s, right * s, bottom * s), x_span, dd_span)
    date_w = tick_font.getlength(fmt_date(x_span[0], x_span[1] - x_span[0]))
    max_dates = max(2, int((right - left) * s // (date_w + 40 * s)))
    x_ticks = _time_ticks(*x_span, max_n=max_dates) if len(ts) else []

    img, draw = _canvas(WIDTH, HEIGHT)
    _axes(draw, [(eq_panel, eq_ticks, eq_fmt), (dd_panel, dd_ticks, dd_fmt)], x_ticks, tick_font)
    if len(ts):
        buckets = eq_panel.box[2] - eq_panel.box[0]  # ~ one bucket per drawn pixel column
        _series(draw, dd_panel, *decimate(ts, dd, buckets), DRAWDOWN_COLOR, 2, fill_to_zero=True)
        _series(draw, eq_panel, *decimate(ts, values, buckets), EQUITY_COLOR, 3)
    else:
        c = eq_panel.box
        draw.text(((c[0] + c[2]) / 2, (c[1] + c[3]) / 2), "no finite equity values",
                  fill=_MUTED, font=label_font, anchor="mm")
    for panel in (eq_panel, dd_panel):
        draw.rectangle(panel.box, outline=_FRAME, width=s)
    draw.text(((left + right) / 2 * s, 20 * s), _plain(title or "Equity"), fill=_INK,
              font=title_font, anchor="mm")
    for panel, name in ((eq_panel, "equity"), (dd_panel, "drawdown")):
        _rotated_text(img, (12 * s, (panel.box[1] + panel.box[3]) / 2), name, label_font)
    return _save(img, path)
