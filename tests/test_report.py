"""report.html: self-contained, and its charts really render in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest import svg
from tandem.backtest.demo_data import generate_candles
from tandem.backtest.plots import DRAWDOWN_COLOR, EQUITY_COLOR, HEIGHT, WIDTH, write_equity_png
from tandem.backtest.report import ReportInput, write_report
from tandem.backtest.stats import compute_stats, fill_turnover

SYMS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
N_BARS = 1500  # short enough that the price line is not decimated (markers sit on vertices)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[ReportInput, Path]:
    """A real engine run on demo candles with random signals, and its written report."""
    from tandem.core.engine import EngineConfig, run_batch
    from tandem.core.journal import trades_table

    candles = generate_candles(SYMS, n_bars=N_BARS, seed=11)
    mat = {k: np.column_stack([candles[s][k].to_numpy() for s in SYMS])
           for k in ("open", "high", "low", "close")}
    ts_close = candles[SYMS[0]]["ts"].to_numpy() + 3_600_000
    rng = np.random.default_rng(5)
    sig = np.where(rng.random(mat["close"].shape) < 0.03, 1.0, 0.0)
    sig[rng.random(sig.shape) < 0.03] = -1.0
    cfg = EngineConfig(stop_loss_pct=0.03, take_profit_pct=0.06, size_pct=0.3)
    res = run_batch(cfg, ts_close, mat["open"], mat["high"], mat["low"], mat["close"], sig,
                    symbols=SYMS, profile="demo", run_id="t")
    trades = trades_table(res.fills)
    stats = compute_stats(res.equity, trades, res.fills, initial_cash=cfg.initial_cash,
                          symbols=SYMS)
    closes = pd.DataFrame(mat["close"], index=ts_close, columns=SYMS)
    data = ReportInput("demo", res.equity, stats, res.fills, trades, closes,
                       profile_config={"core_assets": ["ETH/USDT"], "strategy": "rating_all"},
                       meta={"run_id": "t", "mode": "discrete"}, initial_cash=cfg.initial_cash)
    out = tmp_path_factory.mktemp("report")
    path = write_report(out / "report.html", data)
    return data, path


def _chromium(args: list[str], user_dir: Path, url: str) -> subprocess.CompletedProcess:
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={user_dir}"]
    return subprocess.run(base + args + [url], capture_output=True, text=True, timeout=90)


def test_report_is_self_contained(run):
    _, path = run
    text = path.read_text()
    # No external fetches: no script/link/img sources, no URLs except the SVG namespace.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert urls <= {"http://www.w3.org/2000/svg"}
    for anchor in ("id='data-range'", "id='per-asset'", "id='profile'", "id='trades'",
                   "equity-chart", "drawdown-chart"):
        assert anchor in text


def test_trades_table_lists_the_latest_trades(run):
    data, path = run
    table = path.read_text().split("id='trades'")[1].split("</table>")[0]
    assert table.count("<tr>") - 1 == min(50, len(data.trades))
    n_open = int(data.trades["exit_ts"].isna().sum())
    last = data.trades.sort_values("entry_ts", kind="stable").tail(50)
    assert table.count("<td>open</td>") == int(last["exit_ts"].isna().sum()) <= n_open


def test_price_markers_sit_on_the_close_line():
    """Independent of the page: a marker for a fill at the close is drawn on that vertex."""
    x = np.arange(50, dtype=np.int64) * 3_600_000
    y = 100 + np.sin(np.arange(50) / 5.0)
    chart = svg.Chart("t", [svg.Line(x, y, "price")],
                      markers=[svg.Marker(int(x[i]), float(y[i]), "buy") for i in (3, 17, 42)])
    out = svg.render(chart)
    line = re.search(r'class="line price" d="([^"]+)"', out).group(1)
    verts = [tuple(map(float, p.split(","))) for p in re.findall(r"[ML]([-\d.]+,[-\d.]+)", line)]
    marks = re.findall(r'class="marker buy" d="M([-\d.]+),([-\d.]+)', out)
    assert len(verts) == 50 and len(marks) == 3
    for (mx, my), i in zip(marks, (3, 17, 42), strict=True):
        assert (float(mx), float(my)) == pytest.approx(verts[i], abs=0.051)


def test_decimate_keeps_extremes_and_nan_breaks_line():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100_000)
    x = np.arange(len(y))
    dx, dy = svg.decimate(x, y, 200)
    assert len(dx) <= 800 and dy.max() == y.max() and dy.min() == y.min()
    assert np.all(np.diff(dx) > 0)
    path = svg._path_d(np.array([0.0, 1, 2, 3]), np.array([1.0, np.nan, 2, 3]))
    assert path.count("M") == 2


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")
def test_report_renders_in_headless_chromium(run, tmp_path):
    data, path = run
    url = path.as_uri()
    dom = _chromium(["--dump-dom"], tmp_path / "u1", url).stdout
    # The equity line was drawn with many segments and the drawdown area is filled.
    eq = re.search(r'<path class="line equity" d="([^"]+)"', dom)
    assert eq and eq.group(1).count("L") > 500
    assert re.search(r'<path class="area drawdown" d="M[^"]+Z"', dom)
    # Inline JS ran: only the selected asset's price chart is visible, the others hidden.
    charts = re.findall(r'<div class="asset-chart" data-symbol="([^"]+)"( hidden="")?', dom)
    assert [s for s, hid in charts if not hid] == ["ETH/USDT"]  # core asset first
    assert len(charts) == len(SYMS)
    # One marker per ETH fill, on the ETH chart.
    eth = dom.split('data-symbol="ETH/USDT"')[1].split("</svg>")[0]
    n_eth = int((data.fills["symbol"] == "ETH/USDT").sum())
    assert n_eth > 5 and eth.count('class="marker ') == n_eth

    shot = tmp_path / "shot.png"
    _chromium(["--window-size=1200,1400", f"--screenshot={shot}"], tmp_path / "u2", url)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] >= 1000 and img.std() > 10  # not a blank page
    # The equity stroke (#1f6feb) and the drawdown fill (red tint) are actually painted.
    blue = (np.abs(img - [0x1F, 0x6F, 0xEB]).sum(axis=2) < 60).sum()
    red = ((img[..., 0] > 200) & (img[..., 1] < 150) & (img[..., 2] < 150)).sum()
    assert blue > 500 and red > 200


def _png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (WIDTH, HEIGHT)
        return np.asarray(im.convert("RGB")).astype(int)


def _near(img: np.ndarray, color: str, tol: int = 60) -> int:
    """Pixels within ``tol`` (sum of channel distances) of a #rrggbb colour."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return int((np.abs(img - rgb).sum(axis=2) < tol).sum())


def test_equity_png_is_drawn(run, tmp_path):
    data, _ = run
    png = write_equity_png(tmp_path / "equity.png", data.equity, data.initial_cash)
    assert png == tmp_path / "equity.png"
    img = _png_pixels(png)
    assert WIDTH >= 1000 and HEIGHT >= 550 and img.std() > 10
    # The equity line is blue and sits in the top panel, the drawdown (line + tinted fill)
    # in the bottom one.
    top, bottom = img[: HEIGHT * 2 // 3], img[HEIGHT * 2 // 3:]
    assert _near(top, EQUITY_COLOR) > 500 and _near(bottom, EQUITY_COLOR) < 50
    assert _near(bottom, DRAWDOWN_COLOR) > 200
    assert _near(bottom, "#f1bdc0", tol=20) > 2000  # the fill: 30 % of the red over white


H = 3_600_000
EDGE_CASES = {
    "flat": np.full(300, 10_000.0),
    "one bar": np.array([10_000.0]),
    "nan and inf inside": np.r_[np.nan, 10_000.0, 10_100.0, np.nan, np.inf, 9_800.0, 9_900.0],
    "all nan": np.array([np.nan, np.nan]),
    "empty": np.array([]),
    "zero equity": np.zeros(20),
    "many bars": 10_000 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 1e-3, 150_000))),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_equity_png_edge_cases(case, tmp_path):
    values = EDGE_CASES[case]
    equity = pd.Series(values, index=1_700_000_000_000 + H * np.arange(len(values)))
    for cash in (10_000.0, None):  # zero equity without a cash peak: 0 / 0, nothing drawn
        img = _png_pixels(write_equity_png(tmp_path / "e.png", equity, cash, title=case))
        finite = values[np.isfinite(values)]
        assert (_near(img, EQUITY_COLOR) > 0) == (len(finite) > 0)
    if case == "nan and inf inside":  # skipped, not carried on: the drawdown is drawn after
        assert _near(img[HEIGHT * 2 // 3:], DRAWDOWN_COLOR) > 100


def test_equity_png_needs_no_matplotlib(tmp_path):
    """Pillow only: matplotlib alone took ~1 s to import (issue 15); pandas is the caller's."""
    code = (
        "import sys\nfrom tandem.backtest.plots import write_equity_png\n"
        "assert 'pandas' not in sys.modules\n"
        "import numpy as np, pandas as pd\n"
        "eq = pd.Series(np.linspace(1e4, 2e4, 500), index=1_700_000_000_000 + 3_600_000 "
        "* np.arange(500))\n"
        f"write_equity_png({str(tmp_path / 'e.png')!r}, eq, 1e4)\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert (tmp_path / "e.png").stat().st_size > 1000


def _decimate_by_hand(x, y, buckets):  # noqa: ANN001, ANN202
    """The rule, one bucket at a time: first, last, first min and first max (finite)."""
    n = len(x)
    if n <= 4 * buckets:
        return x, y
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep: set[int] = set()
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        keep |= {int(a), int(b - 1)}
        seg = y[a:b]
        if np.isfinite(seg).any():
            keep |= {int(a + np.nanargmin(seg)), int(a + np.nanargmax(seg))}
    k = np.asarray(sorted(keep), dtype=np.int64)
    return x[k], y[k]


def test_decimate_keeps_each_buckets_ends_and_extremes() -> None:
    from tandem.backtest.svg import decimate

    rng = np.random.default_rng(3)
    for trial in range(200):
        n, buckets = int(rng.integers(1, 2000)), int(rng.integers(1, 150))
        y = rng.normal(size=n).round(1)  # ties: the first min/max counts
        if trial % 3 == 0:
            y[rng.random(n) < 0.3] = np.nan
        if trial % 11 == 0:
            y[:] = np.nan
        x = np.arange(n, dtype=np.float64)
        got, want = decimate(x, y, buckets), _decimate_by_hand(x, y, buckets)
        assert np.array_equal(got[0], want[0])
        assert np.array_equal(got[1], want[1], equal_nan=True)


def _hand_portfolio(mode: str = "portfolio") -> ReportInput:
    """Four bars, two assets. Rebalance at bar 2: buy 5 A @ 10 and 2 B @ 20 (equity 100);
    at bar 4: sell the 5 A @ 12 and buy 1 B @ 21 (equity 104)."""
    ts = np.array([1000, 2000, 3000, 4000], dtype=np.int64)
    equity = pd.Series([100.0, 100.0, 102.0, 104.0], index=ts)
    closes = pd.DataFrame({"A": [10.0, 10.0, 11.0, 12.0], "B": [20.0, 20.0, 20.0, 21.0]}, index=ts)
    fills = pd.DataFrame({
        "symbol": ["A", "B", "A", "B"], "ts": [2000, 2000, 4000, 4000],
        "side": ["buy", "buy", "sell", "buy"], "qty": [5.0, 2.0, 5.0, 1.0],
        "price": [10.0, 20.0, 12.0, 21.0], "fee": [0.0] * 4, "reason": ["rebalance"] * 4,
        "position_after": [5.0, 2.0, 0.0, 3.0],
    })
    trades = pd.DataFrame(columns=["symbol", "pnl", "entry_ts", "exit_ts"])
    stats = compute_stats(equity, None, fills, initial_cash=100.0, symbols=["A", "B"])
    return ReportInput("hand", equity, stats, fills, trades, closes,
                       meta={"mode": mode}, initial_cash=100.0)


def test_weights_and_turnover_by_hand(tmp_path):
    from tandem.backtest.report import portfolio_weights, rebalance_turnover

    data = _hand_portfolio()
    w = portfolio_weights(data)
    np.testing.assert_allclose(w["A"], [0.0, 0.5, 55 / 102, 0.0], rtol=1e-15)
    np.testing.assert_allclose(w["B"], [0.0, 0.4, 40 / 102, 63 / 104], rtol=1e-15)
    turn = rebalance_turnover(data)
    assert list(turn.index) == [2000, 4000]
    np.testing.assert_allclose(turn.to_numpy(), [0.9, 81 / 104], rtol=1e-15)
    assert data.stats["turnover"] == pytest.approx(0.9 + 81 / 104, rel=1e-15)
    assert data.stats["avg_holdings"] == pytest.approx((0 + 2 + 2 + 1) / 4, rel=1e-15)

    text = write_report(tmp_path / "r.html", data).read_text()
    chart = text.split('id="weights-chart"')[1].split("</svg>")[0]
    assert chart.count('<path class="band band') == 2  # A and B, largest average first
    assert chart.index("<title>B</title>") < chart.index("<title>A</title>")
    legend = text.split("id='weights-legend'>")[1].split("</div>")[0]
    assert "swatch band0'></span>B" in legend and "swatch band1'></span>A" in legend
    bars = re.search(r'<path class="bars turnover" d="([^"]+)"', text).group(1)
    assert bars.count("M") == 2
    tops = [float(v) for v in re.findall(r"V([-\d.]+)", bars)]
    assert tops[0] < tops[1]  # SVG y grows downwards: the 0.9 bar is taller than the 0.78
    assert "Turnover<b>1.68×</b>" in text and "Avg holdings<b>1.25</b>" in text


def test_discrete_report_has_no_weights_section(tmp_path):
    text = write_report(tmp_path / "r.html", _hand_portfolio("discrete")).read_text()
    assert "weights-chart" not in text and "turnover-chart" not in text
    assert "Turnover<b>" in text  # the statistic is there in every mode


def test_skipped_entries_tile(tmp_path):
    """A discrete run's stats carry the skipped entry signals: one KPI tile with the causes
    that occurred; stats without them (portfolio runs) show no tile."""
    data = _hand_portfolio("discrete")
    assert "Entries skipped" not in write_report(tmp_path / "a.html", data).read_text()
    data.stats.update(n_entries_skipped=7,
                      entries_skipped={"unfunded": 5, "below_min_trade_value": 2})
    text = write_report(tmp_path / "b.html", data).read_text()
    assert "Entries skipped<b>7 (5 unfunded · 2 &lt; min trade)</b>" in text
    data.stats.update(n_entries_skipped=0,
                      entries_skipped={"unfunded": 0, "below_min_trade_value": 0})
    assert "Entries skipped<b>0</b>" in write_report(tmp_path / "c.html", data).read_text()


def test_page_from_arrow_and_arrays_equals_page_from_pandas(run):
    """The runner hands the report an Arrow journal, trade columns and NumPy curves (no
    pandas import); the same run as pandas objects renders the same page, byte for byte."""
    import pyarrow as pa
    from tandem.backtest.report import Closes, render_report
    from tandem.backtest.stats import EquityCurve
    from tandem.core.journal import trade_columns, trade_rows

    data, _ = run
    fills = pa.Table.from_pandas(data.fills, preserve_index=False)
    plain = ReportInput(
        data.profile, EquityCurve(np.asarray(data.equity.index), data.equity.to_numpy()),
        data.stats, fills, trade_columns(trade_rows(fills)), Closes.of(data.closes),
        profile_config=data.profile_config, meta=data.meta, initial_cash=data.initial_cash)
    assert render_report(plain) == render_report(data)
    for mode in ("portfolio", "discrete"):  # the weights section too
        hand = _hand_portfolio(mode)
        arrays = ReportInput(hand.profile, hand.curve, hand.stats, {
            c: hand.fills[c].to_numpy() for c in hand.fills.columns}, hand.trades,
            hand.close, meta=hand.meta, initial_cash=hand.initial_cash)
        assert render_report(arrays) == render_report(hand)


def test_busiest_assets_in_pandas_value_counts_order():
    """Ties among the most-traded assets break as ``value_counts`` breaks them, so the
    report picks the same charts it picked when it was built on pandas."""
    from tandem.backtest.report import _by_count

    rng = np.random.default_rng(3)
    for n in (5, 40, 300):
        values = np.array([f"S{k}" for k in rng.integers(0, n // 3 + 2, n)], dtype=object)
        assert _by_count(values) == list(pd.Series(values).value_counts().index)


def test_rebalance_turnover_sums_as_a_pandas_groupby():
    from tandem.backtest.report import rebalance_turnover

    data = _hand_portfolio()
    rng = np.random.default_rng(9)
    n = 500
    fills = pd.DataFrame({
        "symbol": "A", "ts": np.sort(rng.choice([1000, 2000, 3000, 4000], n)),
        "qty": rng.random(n) * 1e3, "price": rng.random(n) * 1e-3 + 1e-9,
        "reason": "rebalance", "position_after": 1.0, "fee": 0.0, "side": "buy"})
    data = ReportInput(data.profile, data.equity, data.stats, fills, data.trades, data.closes,
                       meta=data.meta, initial_cash=data.initial_cash)
    want = pd.Series(fill_turnover(fills, data.equity), index=fills["ts"]).groupby(level=0).sum()
    got = rebalance_turnover(data)
    assert got.index.tolist() == want.index.tolist()
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)
