"""The sweep report's PNGs (heatmap, bars, in-sample vs out-of-sample scatter), with Pillow.

They were matplotlib figures, and importing matplotlib.pyplot and drawing three figures took
~1.0-1.3 s of a 36-trial sweep's ~2.9 s (issue 15); the run report's equity PNG had already
gone the same way (:mod:`tandem.backtest.plots`, whose fonts, ticks, value formats, axes and
supersampling these share). Each picture shows what its SVG twin in ``sweep.html`` shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tandem.backtest.plots import (
    _FRAME,
    _INK,
    _MUTED,
    _S,
    _axes,
    _canvas,
    _dashed,
    _font,
    _Panel,
    _plain,
    _rotated_text,
    _save,
    _span,
    _value_format,
)
from tandem.backtest.svg import nice_ticks

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

    Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

POS, NEG = "#1f6feb", "#cf222e"  # as sweep.html's bars and points
_DIAG = "#8c959f"
_X_ANGLE = 30  # category labels under an axis: turned, so long ones do not collide
_MAX_CELL_TEXT = 15 * 15  # more cells than this: no value written in them


def short(s: str, n: int = 14) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def level_color(t: float) -> str:
    """Red (worst) → yellow → green (best) for t in [0, 1]."""
    stops = [(0.0, (215, 48, 39)), (0.5, (255, 255, 191)), (1.0, (26, 152, 80))]
    t = min(max(t, 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(stops[:-1], stops[1:], strict=True):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return "#" + "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(c0, c1, strict=True))
    return "#1a9850"


def _turned_height(labels: Sequence[str], font: Font) -> int:
    """Output pixels that labels turned by _X_ANGLE take below an axis."""
    longest = max((font.getlength(_plain(t)) for t in labels), default=0.0)
    a = math.radians(_X_ANGLE)
    return round((longest * math.sin(a) + font.size * math.cos(a)) / _S) + 8


def _category_labels(img: Image.Image, draw: ImageDraw.ImageDraw, panel: _Panel,
                     labels: Sequence[str], font: Font, every: int = 1) -> None:
    """Tick marks and turned, shortened labels under ``panel`` at x = 0, 1, ...; each label
    ends at its tick."""
    s, bottom = _S, panel.box[3]
    for i, lab in enumerate(labels):
        if i % every:
            continue
        x = float(panel.px(i))
        draw.line([(x, bottom), (x, bottom + 4 * s)], fill=_FRAME, width=s)
        _rotated_text(img, (x, bottom + 8 * s), short(lab), font, _X_ANGLE, anchor=(1.0, 0.2))


def _titles(img: Image.Image, draw: ImageDraw.ImageDraw, width: int, panel: _Panel, title: str,
            x_name: str, y_name: str = "") -> None:
    """The title centred on the image, the axis names under and left of ``panel``."""
    s, label_font = _S, _font(12)
    draw.text((width / 2 * s, 20 * s), _plain(title), fill=_INK, font=_font(15), anchor="mm")
    left, top, right, _ = panel.box
    if x_name:
        draw.text(((left + right) / 2, draw.im.size[1] - 8 * s), _plain(x_name), fill=_MUTED,
                  font=label_font, anchor="md")
    if y_name:
        _rotated_text(img, (14 * s, (top + panel.box[3]) / 2), y_name, label_font)


def heatmap_png(path: Path, xl: list[str], yl: list[str], means: np.ndarray, x_name: str,
                y_name: str, title: str) -> Path:
    """``means[iy, ix]`` as coloured cells (first level bottom left) with a colour bar; NaN
    cells stay blank; the value is written in each cell of a grid of at most 15 x 15."""
    s, nx, ny = _S, len(xl), len(yl)
    tick_font, cell_font = _font(11), _font(10)
    fin = means[np.isfinite(means)]
    lo, hi = _span(float(fin.min()), float(fin.max()), pad=0) if len(fin) else (0.0, 1.0)
    bar_ticks = [t for t in nice_ticks(lo, hi, n=5) if lo <= t <= hi]
    bar_fmt = _value_format(bar_ticks)
    bar_w = max((tick_font.getlength(_plain(bar_fmt(t))) for t in bar_ticks), default=0.0)
    y_w = max((tick_font.getlength(_plain(short(t))) for t in yl), default=0.0)

    # Cells: big enough for their value, the grid at least 200 px high, at most ~720 x 440
    cw = max(44, min(90, 720 // max(nx, 1)))
    ch = max(24, min(70, 440 // max(ny, 1)), 200 // max(ny, 1))
    left, top = round(y_w / s) + 40, 40
    right, bottom = left + cw * nx, top + ch * ny
    bar_left = right + 24
    width = max(bar_left + 16 + 10 + round(bar_w / s) + 14,
                round(_font(15).getlength(_plain(title)) / s) + 20)
    height = bottom + _turned_height([short(t) for t in xl], tick_font) + 26
    grid = _Panel((left * s, top * s, right * s, bottom * s), (-0.5, nx - 0.5), (-0.5, ny - 0.5))

    img, draw = _canvas(width, height)
    for iy in range(ny):
        for ix in range(nx):
            v = float(means[iy, ix])
            if not math.isfinite(v):
                continue  # blank
            color = level_color((v - lo) / (hi - lo))
            box = [float(grid.px(ix - 0.5)), float(grid.py(iy + 0.5)),
                   float(grid.px(ix + 0.5)), float(grid.py(iy - 0.5))]
            draw.rectangle(box, fill=color, outline="white", width=s)
            if nx * ny <= _MAX_CELL_TEXT:
                r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
                ink = "white" if 0.299 * r + 0.587 * g + 0.114 * b < 120 else _INK
                draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), _plain(f"{v:.3g}"),
                          fill=ink, font=cell_font, anchor="mm")  # = the SVG's _fmt(v, 3)
    draw.rectangle(grid.box, outline=_FRAME, width=s)
    for iy, lab in enumerate(yl):
        y = float(grid.py(iy))
        draw.line([(left * s - 4 * s, y), (left * s, y)], fill=_FRAME, width=s)
        draw.text((left * s - 7 * s, y), _plain(short(lab)), fill=_MUTED, font=tick_font,
                  anchor="rm")
    _category_labels(img, draw, grid, xl, tick_font)

    # The colour bar: one row of pixels per colour, lo at the bottom.
    bar = _Panel((bar_left * s, top * s, (bar_left + 16) * s, bottom * s), (0.0, 1.0), (lo, hi))
    for y in range(bar.box[1], bar.box[3]):
        t = (bar.box[3] - y) / (bar.box[3] - bar.box[1])
        draw.line([(bar.box[0], y), (bar.box[2], y)], fill=level_color(t))
    draw.rectangle(bar.box, outline=_FRAME, width=s)
    for t in bar_ticks:
        y = float(bar.py(t))
        draw.line([(bar.box[2], y), (bar.box[2] + 4 * s, y)], fill=_FRAME, width=s)
        draw.text((bar.box[2] + 7 * s, y), _plain(bar_fmt(t)), fill=_MUTED, font=tick_font,
                  anchor="lm")
    _titles(img, draw, width, grid, title, x_name, y_name)
    return _save(img, path)


def bars_png(path: Path, labels: list[str], values: np.ndarray, x_name: str, title: str) -> Path:
    """One bar per level from 0: negative red, positive blue; a NaN level has no bar."""
    s, n = _S, max(len(labels), 1)
    vals = np.asarray(values, dtype=np.float64)
    tick_font = _font(11)
    fin = vals[np.isfinite(vals)]
    lo, hi = (min(0.0, float(fin.min())), max(0.0, float(fin.max()))) if len(fin) else (0.0, 0.0)
    y0, y1 = _span(lo, hi)
    y0, y1 = (0.0 if lo == 0 < hi else y0), (0.0 if hi == 0 > lo else y1)  # bars sit on 0
    ticks = nice_ticks(y0, y1, n=5)
    fmt = _value_format(ticks)
    label_w = max((tick_font.getlength(_plain(fmt(t))) for t in ticks), default=0.0)

    bw = max(24, min(70, 720 // n))
    left, top = round(label_w / s) + 24, 40
    right, bottom = left + bw * n, top + 260
    width = max(right + 18, round(_font(15).getlength(_plain(title)) / s) + 20)
    every = max(1, n // 20)  # at most ~20 labels
    height = bottom + _turned_height([short(t) for t in labels[::every]], tick_font) + 26
    panel = _Panel((left * s, top * s, right * s, bottom * s), (-0.5, n - 0.5), (y0, y1))

    img, draw = _canvas(width, height)
    _axes(draw, [(panel, ticks, fmt)], [], tick_font)
    zero = float(panel.py(0.0))
    for i, v in enumerate(vals):
        if math.isfinite(v):
            top_y, bot_y = sorted((float(panel.py(v)), zero))
            draw.rectangle([float(panel.px(i - 0.4)), top_y, float(panel.px(i + 0.4)),
                            max(bot_y, top_y + 1)], fill=NEG if v < 0 else POS)
    draw.line([(panel.box[0], zero), (panel.box[2], zero)], fill=_FRAME, width=s)
    draw.rectangle(panel.box, outline=_FRAME, width=s)
    _category_labels(img, draw, panel, labels, tick_font, every)
    _titles(img, draw, width, panel, title, x_name)
    return _save(img, path)


def scatter_png(path: Path, x: np.ndarray, y: np.ndarray, win: np.ndarray, label: str) -> Path:
    """One point per trial and fold (blue), the fold winners red on top, and the dashed y = x
    line: above it a trial did better out of sample. Both axes share one range."""
    s = _S
    tick_font, legend_font = _font(11), _font(11)
    both = np.concatenate([x, y])
    both = both[np.isfinite(both)]
    lo, hi = _span(float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
    ticks = nice_ticks(lo, hi, n=6)
    fmt = _value_format(ticks)
    label_w = max((tick_font.getlength(_plain(fmt(t))) for t in ticks), default=0.0)

    side = 440  # a square panel: the diagonal at 45°
    left, top = round(label_w / s) + 40, 62
    width, height = left + side + 24, top + side + 48
    panel = _Panel((left * s, top * s, (left + side) * s, (top + side) * s), (lo, hi), (lo, hi))

    img, draw = _canvas(width, height)
    _axes(draw, [(panel, ticks, fmt)], ticks, tick_font, x_fmt=fmt)
    _dashed(draw, (float(panel.px(lo)), float(panel.py(lo))),
            (float(panel.px(hi)), float(panel.py(hi))), _DIAG, s, 6 * s, 4 * s)
    win = np.asarray(win, dtype=bool)
    for mask, color, r in ((~win, (0x1F, 0x6F, 0xEB, 115), 3 * s), (win, NEG, 4.5 * s)):
        for px, py in zip(panel.px(x[mask]).tolist(), panel.py(y[mask]).tolist(), strict=True):
            if math.isfinite(px) and math.isfinite(py):
                draw.ellipse([px - r, py - r, px + r, py + r], fill=color)
    draw.rectangle(panel.box, outline=_FRAME, width=s)
    # The legend sits above the panel: inside it, it would hide points.
    entries = [("trial × fold", POS), ("fold winner", NEG)]
    texts = [_plain(t) for t, _ in entries]
    total = sum(legend_font.getlength(t) for t in texts) + len(texts) * 16 * s + 20 * s
    at = (left + side / 2) * s - total / 2
    for text, (_, color) in zip(texts, entries, strict=True):
        cy = 44 * s
        draw.ellipse([at, cy - 4 * s, at + 8 * s, cy + 4 * s], fill=color)
        draw.text((at + 13 * s, cy), text, fill=_MUTED, font=legend_font, anchor="lm")
        at += legend_font.getlength(text) + 16 * s + 20 * s
    _titles(img, draw, width, panel, "In-sample vs out-of-sample", f"in-sample {label}",
            f"out-of-sample {label}")
    return _save(img, path)
