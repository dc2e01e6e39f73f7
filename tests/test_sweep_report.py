"""sweep.html and its PNGs, from synthetic results frames whose answers pandas computes here."""

from __future__ import annotations

import html as html_mod
import math
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.sweep.overfit import deflated_sharpe_ratio, pbo_cscv
from tandem.backtest.sweep.report import objective_values, write_sweep_report

DAY = 86_400_000
EVIL = "<script>alert('x')</script> entry_threshold below exit"
A = [0.05, 0.1, 0.2, 0.4]
B = ["ohlc", "pessimistic", "<b>bold</b>"]
C = [1, 2, 3]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _grid(n_folds: int = 2, seed: int = 0, walk_forward: bool = True) -> pd.DataFrame:
    """Grid of 3 params x folds. In-sample Sharpe = 10·a + 0.1·fold + tiny noise: ``a``
    decides it, ``b`` and ``c`` do nothing. Trial 5 is invalid (an HTML-looking message),
    trial 7 has no finite objective in fold 0."""
    rng = np.random.default_rng(seed)
    rows = []
    for t, (a, b, c) in enumerate(product(A, B, C)):
        for f in range(n_folds):
            is_s = 10 * a + 0.1 * f + rng.normal(0, 0.01)
            rows.append({
                "trial": t, "fold": f, "key": f"k{t}", "data_fingerprint": "fp", "valid": t != 5,
                "error": EVIL if t == 5 else "",
                "param.entry_threshold": a, "param.exit_rules.intrabar": b,
                "param.mtf.min_agree": c,
                "is_sharpe": np.nan if t == 5 or (t == 7 and f == 0) else is_s,
                "oos_sharpe": (0.5 * is_s + rng.normal(0, 0.3)) if walk_forward and t != 5
                else np.nan,
                "is_cagr": 0.1 + a, "is_max_drawdown": -0.1 - 0.1 * c,
                "oos_cagr": np.nan, "oos_max_drawdown": np.nan,
                "is_start": f * 30 * DAY, "is_end": (f * 30 + 180) * DAY,
                "oos_start": (f * 30 + 180) * DAY if walk_forward else np.nan,
                "oos_end": (f * 30 + 240) * DAY if walk_forward else np.nan,
            })
    return pd.DataFrame(rows)


PARAMS = ["entry_threshold", "exit_rules.intrabar", "param.mtf.min_agree"]


def _overfit() -> dict:
    rng = np.random.default_rng(2)
    return {"dsr": deflated_sharpe_ratio(0.12, 1000, -0.4, 5.0, 36, 0.002),
            "pbo": pbo_cscv(rng.normal(0, 0.01, size=(480, 36)), n_splits=8)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    df = _grid()
    eq = pd.Series(1000 * np.cumprod(1 + np.random.default_rng(4).normal(0, 0.01, 600)),
                   index=np.arange(600, dtype=np.int64) * 3_600_000)
    out = tmp_path_factory.mktemp("sweep")
    of = _overfit()
    files = write_sweep_report(out, df, objective="sharpe", param_cols=PARAMS,
                               best={"trial": 30, "objective": 4.1,
                                     "params": {"entry_threshold": 0.4, "note": "<i>x</i>"}},
                               oos_equity=eq, overfit=of)
    return df, files, files["sweep.html"].read_text(encoding="utf-8"), of


class _Checker(HTMLParser):
    """Collects tag-balance errors (void elements aside)."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}
    SVG_VOID = {"rect", "line", "circle", "path"}  # may be self-closed inside SVG

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)
        self._in_script = tag == "script"

    def handle_startendtag(self, tag, attrs):
        if tag not in self.VOID | self.SVG_VOID:
            self.errors.append(f"self-closed <{tag}/>")

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def test_files_exist_and_pngs_are_drawn(built):
    from PIL import Image

    _, files, _, _ = built
    assert set(files) == {"sweep.html", "sweep_heatmap.png", "sweep_is_oos.png", "sweep_equity.png"}
    assert all(path.name == name and path.parent == files["sweep.html"].parent
               for name, path in files.items())
    for key in ("sweep_heatmap.png", "sweep_is_oos.png", "sweep_equity.png"):
        img = np.asarray(Image.open(files[key]).convert("RGB")).astype(int)
        assert img.shape[0] > 250 and img.std() > 10, key


def test_page_is_offline_well_formed_and_has_every_section(built):
    _, _, page, _ = built
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    for anchor in ("id='summary'", "id='best'", "id='dsr'", "id='pbo'", "id='heatmaps'",
                   "id='pair-select'", "id='importance'", "id='is-oos'", "oos-equity",
                   "id='folds'", "id='pbo-logits'", "id='invalid'", "id='invalid-summary'"):
        assert anchor in page, anchor
    # 3 parameters: 3 pairs, one option and one pre-rendered heatmap each.
    assert page.count("<option ") == 3 and page.count("class='heatmap-pair'") == 3
    text = html_mod.unescape(re.sub(r"<[^>]+>", " ", page))
    assert re.search(r"Trials\s+36\b", text) and re.search(r"Invalid trials\s+1\b", text)
    assert "Deflated Sharpe Ratio" in text and "Probability of Backtest Overfitting" in text


def test_every_string_from_data_is_escaped(built):
    _, _, page, _ = built
    assert page.count("<script") == 1  # ours, at the end
    assert "alert(" not in page.split("<script>")[-1]
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<i>x</i>" not in page and "&lt;i&gt;x&lt;/i&gt;" in page


def _cells(page: str) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """(x param, y param) → {(x label, y label): value} read back from the SVG cells."""
    out = {}
    for block in re.findall(r"<div class='heatmap-pair'(.*?)</div>", page, re.S):
        xp = html_mod.unescape(re.search(r"data-x-param='([^']*)'", block).group(1))
        yp = html_mod.unescape(re.search(r"data-y-param='([^']*)'", block).group(1))
        cells = {}
        for x, y, v in re.findall(r'data-x="([^"]*)" data-y="([^"]*)" data-value="([^"]*)"', block):
            cells[(html_mod.unescape(x), html_mod.unescape(y))] = float(v)
        out[(xp, yp)] = cells
    return out


def _lab(v) -> str:
    return f"{v:.6g}" if isinstance(v, float | int) and not isinstance(v, bool) else str(v)


def test_heatmap_cells_equal_pandas_groupby_means(built):
    df, _, page, _ = built
    ok = df[df["valid"]]
    per_trial = ok.groupby("trial").agg(
        obj=("is_sharpe", "mean"), **{p: (f"param.{p}", "first") for p in
                                      ("entry_threshold", "exit_rules.intrabar", "mtf.min_agree")})
    maps = _cells(page)
    assert len(maps) == 3
    for (xp, yp), cells in maps.items():
        want = per_trial.groupby([xp, yp])["obj"].mean()
        assert len(cells) == len(want) == len(set(per_trial[xp])) * len(set(per_trial[yp]))
        for (xv, yv), value in want.items():
            assert cells[(_lab(xv), _lab(yv))] == pytest.approx(value, abs=1e-12)
    # The first (shown) pair holds the most important parameter.
    assert next(iter(maps))[0] == "entry_threshold"


def test_importance_is_one_for_the_deciding_parameter_and_zero_for_noise(built):
    _, _, page, _ = built
    table = page.split("id='importance'")[1].split("</table>")[0]
    rows = {html_mod.unescape(n): float(v) for n, v in
            re.findall(r"<tr><td>([^<]+)</td><td>([-\d.e]+)</td>", table)}
    assert rows["entry_threshold"] > 0.999
    # Not exactly 0: trial 5 is missing and trial 7 lacks a fold, so the grid is unbalanced.
    assert rows["exit_rules.intrabar"] < 0.01 and rows["mtf.min_agree"] < 0.01
    # And independently: η² = SS_between / SS_total from pandas.
    df = built[0]
    t = df[df["valid"]].groupby("trial").agg(o=("is_sharpe", "mean"),
                                             a=("param.entry_threshold", "first"))
    ss_b = (t.groupby("a")["o"].transform("mean") - t["o"].mean()).pow(2).sum()
    assert rows["entry_threshold"] == pytest.approx(ss_b / (t["o"] - t["o"].mean()).pow(2).sum(),
                                                    abs=1e-3)


def test_fold_table_lists_each_folds_in_sample_winner(built):
    df, _, page, _ = built
    table = page.split("id='folds'")[1].split("</table>")[0]
    got = re.findall(r"<tr><td>(\d+)</td><td[^>]*>[^<]*</td><td[^>]*>[^<]*</td><td>(\d+)</td>",
                     table)
    ok = df[df["valid"] & df["is_sharpe"].notna()]
    want = ok.loc[ok.groupby("fold")["is_sharpe"].idxmax(), ["fold", "trial"]]
    assert [(int(f), int(t)) for f, t in got] == list(want.itertuples(index=False, name=None))
    day = lambda ms: pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d")  # noqa: E731
    f1 = df[df["fold"] == 1].iloc[0]
    assert f"{day(f1['oos_start'])} → {day(f1['oos_end'])}" in table


def test_pbo_histogram_red_share_is_the_pbo(built):
    _, _, page, of = built
    block = page.split("id='pbo-logits'")[1].split("</svg>")[0]
    bars = re.findall(r'<rect class="bar( pbo-neg)?"[^>]*><title>[^:]*: ([^<]+)</title>', block)
    red = sum(float(v) for neg, v in bars if neg)
    assert red == pytest.approx(of["pbo"]["pbo"], abs=2e-3)  # shares printed with 4 digits
    assert sum(float(v) for _, v in bars) == pytest.approx(1.0, abs=5e-3)


def test_calmar_is_derived_from_cagr_and_drawdown():
    df = _grid(walk_forward=False)
    v = objective_values(df, "calmar")
    np.testing.assert_allclose(v, df["is_cagr"] / df["is_max_drawdown"].abs())
    df.loc[0, "is_max_drawdown"] = 0.0
    assert math.isnan(objective_values(df, "calmar")[0])
    with pytest.raises(ValueError, match="unknown objective"):
        objective_values(df, "alpha")


def test_one_parameter_one_fold_no_walk_forward(tmp_path):
    df = _grid(n_folds=1, walk_forward=False)
    files = write_sweep_report(tmp_path, df, objective="calmar", param_cols=["entry_threshold"],
                               best={}, oos_equity=None, overfit={})
    assert set(files) == {"sweep.html", "sweep_heatmap.png"}
    page = files["sweep.html"].read_text()
    assert "id='pair-select'" not in page and 'class="fig bars"' in page
    assert "No out-of-sample results" in page and "No walk-forward equity" in page
    assert "Deflated Sharpe Ratio</b>: not available" in page
    # Bar heights: mean calmar per entry_threshold level, over valid trials.
    ok = df[df["valid"]]
    want = (ok["is_cagr"] / ok["is_max_drawdown"].abs()).groupby(ok["param.entry_threshold"]).mean()
    bars = re.findall(r'<rect class="bar[^"]*"[^>]*><title>([^:]+): ([^<]+)</title>',
                      page.split("id='heatmaps'")[1])
    assert [float(k) for k, _ in bars] == list(want.index)
    assert [float(v) for _, v in bars] == pytest.approx(list(want), rel=1e-3)  # 4 digits shown


def test_all_invalid_trials(tmp_path):
    df = _grid()
    df["valid"] = False
    df["error"] = "entry below exit"
    files = write_sweep_report(tmp_path, df, objective="sharpe", param_cols=PARAMS, best={},
                               oos_equity=None, overfit={"notes": ["PBO needs 2 valid trials"]})
    assert set(files) == {"sweep.html"}
    page = files["sweep.html"].read_text()
    assert "nothing to map" in page and "No fold has a valid trial" in page
    assert "PBO needs 2 valid trials" in page
    assert page.count("entry below exit") >= 72 // 2  # the invalid table lists the rows


def test_nan_objectives_everywhere(tmp_path):
    df = _grid()
    df["is_sharpe"] = np.nan
    df["oos_sharpe"] = np.nan
    files = write_sweep_report(tmp_path, df, objective="sharpe", param_cols=PARAMS, best={},
                               oos_equity=None, overfit={})
    page = files["sweep.html"].read_text()
    assert "nothing to map" in page and "have no finite sharpe" in page


def test_hundreds_of_random_trials_with_continuous_parameters(tmp_path):
    rng = np.random.default_rng(9)
    n = 800
    df = pd.DataFrame({
        "trial": np.repeat(np.arange(n), 2), "fold": np.tile([0, 1], n), "valid": True,
        "error": "", "param.stop": np.repeat(rng.uniform(0.01, 0.1, n), 2),
        "param.size": np.repeat(rng.uniform(0.1, 1.0, n), 2),
        "param.mode": np.repeat(rng.choice(["discrete", "continuous"], n), 2),
        "param.on": np.repeat(rng.choice([True, False], n), 2),
    })
    df["is_sharpe"] = 20 * df["param.stop"] + rng.normal(0, 0.05, 2 * n)
    df["oos_sharpe"] = df["is_sharpe"] * 0.3 + rng.normal(0, 0.2, 2 * n)
    t0 = time.perf_counter()
    files = write_sweep_report(tmp_path, df, objective="sharpe",
                               param_cols=["stop", "size", "mode", "on"], best={"trial": 1},
                               oos_equity=None, overfit={})
    assert time.perf_counter() - t0 < 30
    page = files["sweep.html"].read_text()
    maps = _cells(page)
    assert len(maps) == 6
    stop_size = maps[("stop", "size")]
    assert len(stop_size) == 100  # 10 x 10 quantile bins
    assert {k[1] for k in maps[("stop", "on")]} == {"False", "True"}
    assert page.count('class="pt') == 2 * n  # every trial x fold in the IS/OOS scatter


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed")
def test_page_runs_in_headless_chromium_without_errors(built, tmp_path):
    _, files, _, _ = built
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={tmp_path / 'u'}"]
    res = subprocess.run(base + ["--dump-dom", files["sweep.html"].as_uri()], capture_output=True,
                         text=True, timeout=90)
    # The page logs nothing: any console line is an error or a stray message.
    assert "CONSOLE" not in res.stderr and "Uncaught" not in res.stderr, res.stderr[-2000:]
    shown = re.findall(r'<div class="heatmap-pair" data-pair="(\d+)"[^>]*?( hidden="")?>', res.stdout)
    assert len(shown) == 3 and [p for p, hid in shown if not hid] == ["0"]  # the JS ran


def test_odd_inputs(tmp_path):
    """Missing values, no fold/oos columns, infinite profit factors, an empty frame, a flat
    overfit dict: a page, never an exception; an unknown parameter is a ValueError."""
    df = _grid()
    df["valid"] = df["valid"].astype(object)
    df.loc[0, "valid"] = None  # unknown validity counts as invalid
    df["param.mtf.min_agree"] = df["param.mtf.min_agree"].astype(object)
    df.loc[df["trial"] == 3, "param.mtf.min_agree"] = None
    of = {**deflated_sharpe_ratio(0.1, 100, 0.0, 3.0, 10, 0.01), "pbo": 0.3}
    files = write_sweep_report(tmp_path / "a", df, objective="sharpe", param_cols=PARAMS,
                               best={"trial": np.int64(3), "x": np.nan, "arr": np.arange(50)},
                               oos_equity=pd.Series(dtype=float), overfit=of)
    page = files["sweep.html"].read_text()
    assert "Deflated Sharpe Ratio 0.284" in page and "Overfitting 30.0%</b> <span" in page
    assert 'data-y="–"' in page or 'data-x="–"' in page  # the missing value is its own level
    assert re.search(r"Invalid trials\s*<b>2</b>", page)

    pf = df.drop(columns=["fold", "oos_sharpe"]).assign(
        is_profit_factor=np.where(df["trial"] % 2 == 0, np.inf, 1.5))
    files = write_sweep_report(tmp_path / "b", pf, objective="profit_factor", param_cols=PARAMS,
                               best={}, oos_equity=None, overfit={})
    cells = _cells(files["sweep.html"].read_text())
    assert {v for c in cells.values() for v in c.values() if math.isfinite(v)} == {1.5}

    when = pd.date_range("2024-03-01", periods=48, freq="h")
    files = write_sweep_report(tmp_path / "e", df, objective="sharpe", param_cols=PARAMS, best={},
                               oos_equity=pd.Series(np.linspace(1000, 1100, 48), index=when),
                               overfit={})
    assert "2024-03-01 00:00" in files["sweep.html"].read_text() and "sweep_equity.png" in files

    files = write_sweep_report(tmp_path / "c", df.iloc[:0], objective="sharpe", param_cols=PARAMS,
                               best={}, oos_equity=None, overfit={})
    assert set(files) == {"sweep.html"} and "nothing to map" in files["sweep.html"].read_text()
    with pytest.raises(ValueError, match="nope"):
        write_sweep_report(tmp_path / "d", df, objective="sharpe", param_cols=["nope"], best={},
                           oos_equity=None, overfit={})


def _fold_rows(page: str) -> list[tuple[int, int]]:
    table = page.split("id='folds'")[1].split("</table>")[0]
    return [(int(f), int(t)) for f, t in re.findall(
        r"<tr><td>(\d+)</td><td[^>]*>[^<]*</td><td[^>]*>[^<]*</td><td>(\d+)</td>", table)]


def test_fold_winners_follow_the_sweep_and_its_tie_rule(tmp_path):
    df = _grid().sample(frac=1.0, random_state=3)  # row order must not matter
    df.loc[df["trial"] == 30, "is_sharpe"] = 9.0
    df.loc[df["trial"] == 12, "is_sharpe"] = 9.0  # a tie: the lower trial wins
    files = write_sweep_report(tmp_path / "a", df, objective="sharpe", param_cols=PARAMS,
                               best={}, oos_equity=None, overfit={})
    assert _fold_rows(files["sweep.html"].read_text()) == [(0, 12), (1, 12)]
    # The driver's own choice (best.json "folds") is what the page shows.
    best = {"trial": 4, "folds": [{"fold": 0, "trial": 3, "is_value": 1.0},
                                  {"fold": 1, "trial": 4, "is_value": 1.0}]}
    files = write_sweep_report(tmp_path / "b", df, objective="sharpe", param_cols=PARAMS,
                               best=best, oos_equity=None, overfit={})
    page = files["sweep.html"].read_text()
    assert _fold_rows(page) == [(0, 3), (1, 4)]
    assert "(2 entries: see below and best.json)" in page
