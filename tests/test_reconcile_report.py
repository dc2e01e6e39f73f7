"""Reconcile's faces: the CLI's exit codes and files, and the HTML report in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from tandem.backtest.reconcile.cli import main

from tests.test_reconcile import SYMS, Plan, make_candles, write_backtest, write_paper

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def altered(tmp_path_factory):
    """A backtest and a daemon db that saw one altered candle (BTC bar 60)."""
    root = tmp_path_factory.mktemp("rec")
    candles = make_candles()
    bt = write_backtest(root, candles)
    c = candles["BTC/USDT"].loc[60]
    db = write_paper(root, candles, Plan(altered={("BTC/USDT", 60): {"close": c["close"] * 1.03,
                                                                      "high": max(c["high"], c["close"] * 1.03)}}))
    return root, db, bt


def test_cli_exit_codes_and_files(altered, tmp_path, capsys):
    root, db, bt = altered
    out = tmp_path / "out"
    code = main(["reconcile", "--paper", str(db), "--backtest", str(bt), "--history", str(root / "store"),
                 "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert "DIFFERENT" in text and "causes: data" in text and "logic 0" in text
    for name in ("reconcile.md", "reconcile.html", "reconcile_differences.csv"):
        assert (out / name).is_file()
    md = (out / "reconcile.md").read_text()
    assert "## Differences" in md and "altered candle BTC/USDT" in md
    # Same journal on both sides: exit 0.
    assert main(["reconcile", "--paper", str(bt), "--backtest", str(bt)]) == 0
    assert "OK: paper and backtest agree" in capsys.readouterr().out
    # Unreadable input: exit 2, one error line.
    junk = tmp_path / "junk.csv"
    junk.write_text("not,a,journal\n1,2,3\n")
    assert main(["reconcile", "--paper", str(junk), "--backtest", str(bt)]) == 2
    assert capsys.readouterr().err.startswith("reconcile: error:")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs it)")
def test_html_report_renders_in_headless_chromium(altered, tmp_path, capsys):
    root, db, bt = altered
    html_path = tmp_path / "report.html"
    main(["reconcile", "--paper", str(db), "--backtest", str(bt), "--history", str(root / "store"),
          "--html", str(html_path)])
    capsys.readouterr()
    html = html_path.read_text()
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    profile_dir = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={profile_dir}", "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'id="verdict"' in dom and "DIFFERENT" in dom
    assert re.search(r'<polyline class="drift"[^>]*points="[\d., -]{20,}', dom)
    assert dom.count('class="cat-data"') >= 1
    for sym in SYMS[:1]:
        assert sym in dom
    assert "Data events" in dom and "altered" in dom


def test_markdown_and_terminal_agree_on_counts(altered):
    from tandem.backtest.reconcile import reconcile

    root, db, bt = altered
    r = reconcile(db, bt, history=root / "store")
    p = r.profiles[0]
    term = r.to_terminal()
    assert f"mismatched {p.mismatched}" in term
    md = r.to_markdown()
    assert f"| {p.profile} | {p.paper_fills} | {p.backtest_fills} |" in md
    assert Path(bt).exists()


def test_fingerprints_command_lists_every_trade(altered, capsys):
    from tandem.core.fingerprint import fingerprint_line
    from tandem.core.journal import read_csv, trades_table

    _, db, bt = altered
    assert main(["fingerprints", str(bt)]) == 0
    out = capsys.readouterr().out.splitlines()
    fills = read_csv(bt)
    assert out[0] == fingerprint_line(fills)
    assert len(out) - 1 == len(trades_table(fills))  # independent trade split
    assert all(re.fullmatch(r"[0-9a-f]{16}  p1:[A-Z]+/USDT:\d+  fills=\d+( open)?", ln) for ln in out[1:])
    # The daemon db of the altered run: the same command, a different run fingerprint.
    assert main(["fingerprints", str(db)]) == 0
    other = capsys.readouterr().out.splitlines()
    assert other[0] != out[0] and other[0].startswith("fingerprint run=")
