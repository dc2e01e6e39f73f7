"""The sweep's PNGs, drawn with Pillow (issue 15: matplotlib cost ~1 s of every sweep), read
back pixel by pixel: what a person sees in them is what the numbers say."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from tandem.backtest.sweep.pngs import NEG, POS, bars_png, heatmap_png, level_color, scatter_png

from tests.sweep_fixtures import make_inputs, sweep_args

_PNGS = ("sweep_heatmap.png", "sweep_is_oos.png", "sweep_equity.png")


def _rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])


def _pixels(path) -> np.ndarray:  # noqa: ANN001
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _near(img: np.ndarray, color: str, tol: int = 40) -> np.ndarray:
    return np.abs(img - _rgb(color)).sum(axis=2) < tol


def _check_png(path) -> None:  # noqa: ANN001
    with Image.open(path) as im:
        im.verify()  # a complete, uncorrupted PNG
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB", path
        assert 300 <= im.width <= 2000 and 250 <= im.height <= 1500, (path, im.size)
    assert _pixels(path).std() > 10, path  # something is drawn


def test_a_sweep_imports_no_matplotlib_and_writes_its_pngs(tmp_path):
    """The whole command in its own process (the user's wait): its three PNGs, and matplotlib
    never imported (it is installed here, vectorbt needs it)."""
    inp = make_inputs(tmp_path, days=30)
    out = tmp_path / "out"
    args = sweep_args(inp, out, "--walk-forward", "2", "--train", "5d", "--test", "2d",
                      "--warmup-bars", "48")
    code = ("import sys\nfrom tandem.backtest.cli import main\n"
            f"rc = main({args!r})\nprint(rc, 'matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stderr[-2000:]
    for name in _PNGS:
        _check_png(out / name)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    edges = np.diff(np.concatenate([[0], flags.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _cells(img: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The heatmap's cell columns and rows, found from the coloured pixels alone: white lines
    part the cells; the last coloured column run is the colour bar."""
    colored = img.max(axis=2) - img.min(axis=2) > 40
    cols = _runs(colored.any(axis=0))[:-1]
    rows = _runs(colored[:, cols[0][0]:cols[-1][1]].any(axis=1))
    return cols, rows


def _read_t(color: np.ndarray) -> float:
    """Where on the red-yellow-green scale a colour is."""
    ts = np.linspace(0, 1, 1001)
    scale = np.array([_rgb(level_color(t)) for t in ts])
    return float(ts[np.abs(scale - color).sum(axis=1).argmin()])


@pytest.mark.parametrize(("ny", "nx"), [(3, 4), (16, 16)])
def test_heatmap_cell_colours_order_like_the_values(tmp_path, ny, nx):
    rng = np.random.default_rng(ny)
    means = rng.permutation(np.linspace(-1.5, 2.5, ny * nx)).reshape(ny, nx)
    means[1, 2] = np.nan
    xl, yl = [f"{0.05 * (i + 1):g}" for i in range(nx)], [f"level {i}" for i in range(ny)]
    path = heatmap_png(tmp_path / "h.png", xl, yl, means, "entry_threshold", "stop", "Mean sharpe")
    _check_png(path)
    img = _pixels(path)
    cols, rows = _cells(img)
    assert (len(cols), len(rows)) == (nx, ny)
    fin = means[np.isfinite(means)]
    for iy in range(ny):
        (y0, y1) = rows[ny - 1 - iy]  # the first level at the bottom
        for ix, (x0, x1) in enumerate(cols):
            cell = img[y0 + 1:y1 - 1, x0 + 1:x1 - 1].reshape(-1, 3)
            color = np.median(cell, axis=0)
            inked = (np.abs(cell - color).sum(axis=1) > 150).sum()  # the value written in it
            if np.isnan(means[iy, ix]):
                assert color.min() > 250 and inked == 0  # blank
                continue
            want = (means[iy, ix] - fin.min()) / (fin.max() - fin.min())
            assert _read_t(color) == pytest.approx(want, abs=0.02), (iy, ix)
            assert (inked > 15) == (nx * ny <= 15 * 15), (iy, ix, inked)


def test_heatmap_of_one_value_and_odd_labels(tmp_path):
    """All cells equal: the middle of the scale (not a division by zero); long and non-Latin
    labels are shortened and drawn."""
    means = np.full((2, 2), 0.7)
    path = heatmap_png(tmp_path / "h.png", ["a" * 40, "−1"], ["∞", "x"], means,
                       "p" * 60, "q", "Mean sharpe: p × q")
    _check_png(path)
    cols, rows = _cells(_pixels(path))
    assert (len(cols), len(rows)) == (2, 2)
    img = _pixels(path)
    (x0, x1), (y0, y1) = cols[0], rows[0]
    assert _read_t(np.median(img[y0:y1, x0:x1].reshape(-1, 3), axis=0)) == pytest.approx(0.5,
                                                                                        abs=0.02)


def test_bars_negative_red_below_zero_positive_blue_above(tmp_path):
    path = bars_png(tmp_path / "b.png", ["ohlc", "pessimistic", "<b>bold</b>", "x"],
                    np.array([0.3, -0.2, np.nan, 1.1]), "exit_rules.intrabar", "Mean sharpe")
    _check_png(path)
    img = _pixels(path)
    red, blue = np.argwhere(_near(img, NEG)), np.argwhere(_near(img, POS))
    assert len(red) > 500 and len(blue) > 1000
    assert red[:, 0].min() >= blue[:, 0].max() - 2  # red hangs below the zero line
    # Three bars drawn (the NaN level has none): three runs of bar columns.
    assert len(_runs(_near(img, NEG).any(axis=0) | _near(img, POS).any(axis=0))) == 3


def test_scatter_winners_on_top_and_both_kinds_shown(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(1, 1, 300)
    y = 0.5 * x + rng.normal(0, 0.5, 300)
    win = np.zeros(300, dtype=bool)
    win[:5] = True
    x[5:10], y[5:10] = x[:5], y[:5]  # losers at the winners' places: the winners stay visible
    path = scatter_png(tmp_path / "s.png", x, y, win, "sharpe")
    _check_png(path)
    img = _pixels(path)
    assert _near(img, NEG).sum() > 5 * 20 and _near(img, POS, tol=200).sum() > 300
    # The dashed diagonal: grey pixels on both sides of the middle of the image.
    grey = np.argwhere(_near(img, "#8c959f", tol=30))
    assert len(grey) > 100
