"""``tandem-backtest`` on generated candles (always on): outputs, determinism, parity with
the core called directly, warm-up, and clear errors with the right exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.cli import build_parser, main
from tandem.backtest.demo_data import generate_candles, write_csv_folder

SYMS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "ADA/USDT"]  # 3 core (MTF) assets + 1 base-only
HOUR = 3_600_000
WARMUP = 24 * 40  # shortened warm-up keeps the test fast; the rule is the same
N_BARS = 24 * 140
FROM = "2024-02-15"  # data starts 2024-01-01: 45 days of history before --from
TO = "2024-05-01"


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("candles")
    write_csv_folder(generate_candles(SYMS, start="2024-01-01", n_bars=N_BARS, seed=3), folder)
    return folder


def _run(csv_dir: Path, out: Path, *extra: str) -> int:
    return main(["run", "--profile", "crypto_rating_all", "--data", str(csv_dir),
                 "--symbols", ",".join(SYMS), "--from", FROM, "--to", TO,
                 "--warmup-bars", str(WARMUP), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run_dir(csv_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert _run(csv_dir, out) == 0
    return out


def test_run_writes_every_output(run_dir):
    from tandem.core.journal import FILL_COLUMNS, fills_to_models, read_csv, read_parquet

    for name in ("fills.csv", "fills.parquet", "trades.csv", "equity.csv", "stats.json",
                 "report.html", "equity.png"):
        assert (run_dir / name).stat().st_size > 0, name
    fills = read_parquet(run_dir / "fills.parquet")
    assert list(fills.columns) == FILL_COLUMNS and len(fills) > 10
    pd.testing.assert_frame_equal(fills, read_csv(run_dir / "fills.csv"))
    fills_to_models(fills)  # every row validates against the journal model
    assert set(fills["source"]) == {"backtest"} and set(fills["profile"]) == {"crypto_rating_all"}
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["n_fills"] == len(fills) and stats["warmup_bars"] == WARMUP
    assert stats["warmup_bars_available"] == WARMUP
    assert set(stats["trades_per_asset"]) == set(SYMS)
    eq = pd.read_csv(run_dir / "equity.csv")
    assert eq["ts"].iloc[0] == pd.Timestamp(FROM, tz="UTC").value // 10**6 + HOUR
    assert eq["ts"].iloc[-1] == pd.Timestamp(TO, tz="UTC").value // 10**6  # last bar's close


def test_nothing_trades_during_warmup(run_dir):
    fills = pd.read_parquet(run_dir / "fills.parquet")
    first_close = pd.Timestamp(FROM, tz="UTC").value // 10**6 + HOUR
    assert fills["ts"].min() >= first_close


def test_fills_equal_the_core_called_directly(run_dir, csv_dir):
    """No logic in the CLI: the core's batch path on the same bars gives the same journal."""
    from tandem.core.engine import EngineConfig, run_batch
    from tandem.core.journal import read_parquet
    from tandem.core.manifest import load_manifest
    from tandem.core.signals import signals_from_candles
    from tandem.core.store import CsvFolderSource

    prof = load_manifest(Path(__file__).resolve().parents[1] / "manifest.json").profile(
        "crypto_rating_all")
    syms = [s for s in prof.assets if s in SYMS]
    start = pd.Timestamp(FROM, tz="UTC").value // 10**6
    a = CsvFolderSource(csv_dir, timeframe="1h").load_aligned(syms, "1h", start - WARMUP * HOUR,
                                                               TO)
    # One call over all bars (the runner chunks its ratings loop; this one does not).
    _, sig, _ = signals_from_candles(prof, a.ts, a.open, a.high, a.low, a.close, a.volume, syms)
    k0 = int(np.searchsorted(a.ts, start))
    assert k0 == WARMUP
    stats = json.loads((run_dir / "stats.json").read_text())
    res = run_batch(EngineConfig(**prof.engine_params()), a.ts[k0:] + HOUR, a.open[k0:],
                    a.high[k0:], a.low[k0:], a.close[k0:], sig.signal[k0:], symbols=syms,
                    profile=prof.name, run_id=stats["run_id"])
    pd.testing.assert_frame_equal(read_parquet(run_dir / "fills.parquet"), res.fills)
    eq = pd.read_csv(run_dir / "equity.csv")
    np.testing.assert_array_equal(eq["equity"].to_numpy(), res.equity.to_numpy())


def test_rerun_is_byte_identical_and_warmup_is_exact(run_dir, csv_dir, tmp_path):
    # Same inputs -> same bytes. Data cut to exactly the warm-up window -> same fills too,
    # which shows the run reads exactly WARMUP bars before --from and nothing earlier.
    start = pd.Timestamp(FROM, tz="UTC").value // 10**6
    cut = tmp_path / "cut"
    cut.mkdir()
    for f in csv_dir.glob("*.csv"):
        df = pd.read_csv(f)
        df[df["timestamp"] >= start - WARMUP * HOUR].to_csv(cut / f.name, index=False)
    assert _run(cut, tmp_path / "again") == 0
    for name in ("fills.csv", "fills.parquet", "trades.csv", "equity.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (run_dir / name).read_bytes(), name


def test_run_without_pandas_writes_the_same_files(run_dir, csv_dir, tmp_path):
    """``run`` on Arrow data never imports pandas (~0.3 s of every run, issue 15), report
    included, and writes what the frames of the same run serialise to: the journal and
    trades as ``DataFrame.to_csv`` prints them, and the same bytes as a run with pandas
    loaded (the report's equality is tests/test_report.py's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tandem.core.journal import read_parquet, trades_table

    frames = [pd.read_csv(f).assign(symbol=f.name.split("_")[1].replace("-", "/"))
              for f in sorted(csv_dir.glob("*.csv"))]
    universe = tmp_path / "binance_USDT_1h_universe.parquet"
    pq.write_table(pa.Table.from_pandas(pd.concat(frames, ignore_index=True),
                                        preserve_index=False), universe)
    out = tmp_path / "out"
    args = ["run", "--profile", "crypto_rating_all", "--data", str(universe), "--symbols",
            ",".join(SYMS), "--from", FROM, "--to", TO, "--warmup-bars", str(WARMUP),
            "--out", str(out)]
    probe = (f"import sys\nfrom tandem.backtest.cli import main\nrc = main({args!r})\n"
             "print('pandas' in sys.modules, rc)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=600)
    assert done.stdout.strip().splitlines()[-1] == "False 0", done.stderr[-2000:]
    for name in ("fills.csv", "trades.csv", "equity.csv"):
        assert (out / name).read_bytes() == (run_dir / name).read_bytes(), name
    stats, want = (json.loads((d / "stats.json").read_text()) for d in (out, run_dir))
    assert stats.pop("data") == str(universe) and want.pop("data") == str(csv_dir)
    assert stats == want
    fills = read_parquet(out / "fills.parquet")
    pd.testing.assert_frame_equal(fills, read_parquet(run_dir / "fills.parquet"))
    assert (out / "fills.csv").read_text() == fills.to_csv(index=False)
    assert (out / "trades.csv").read_text() == trades_table(fills).to_csv(index=False)
    assert (out / "report.html").stat().st_size > 0 and (out / "equity.png").stat().st_size > 0


def test_portfolio_mode_override(csv_dir, tmp_path):
    assert _run(csv_dir, tmp_path, "--mode", "portfolio", "--no-report") == 0
    fills = pd.read_parquet(tmp_path / "fills.parquet")
    assert len(fills) and set(fills["reason"]) <= {"rebalance", "stop_loss", "take_profit",
                                                   "trailing_stop"}
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["mode"] == "portfolio"
    # Skipped entries are a discrete-mode count: a rebalance has no entry signals.
    assert "n_entries_skipped" not in stats and "entries_skipped" not in stats
    assert not (tmp_path / "report.html").exists()


def test_skipped_entries_in_stats_json_and_the_summary(csv_dir, tmp_path, capsys):
    """Entry signals the engine did not act on (unfunded, below min_trade_value) were not
    reported anywhere: fewer trades than signals, no reason given. stats.json counts them
    by cause (the engine's own count) and the summary prints one row when any."""
    manifest = json.loads((Path(__file__).resolve().parents[1] / "manifest.json").read_text())
    prof = manifest["profiles"]["crypto_rating_all"]
    path = tmp_path / "manifest.json"
    # size_pct 0.6: a second position never fits. min_trade_value just below the first
    # entry (6000 less the fee): once a loss shrinks equity, entries fall below it.
    for min_trade, out_name in ((0.0, "a"), (5_900.0, "b")):
        prof["execution"] = {**prof.get("execution", {}), "size_pct": 0.6,
                             "min_trade_value": min_trade}
        path.write_text(json.dumps(manifest))
        out = tmp_path / out_name
        assert main(["run", "--manifest", str(path), "--profile", "crypto_rating_all",
                     "--data", str(csv_dir), "--symbols", ",".join(SYMS), "--from", FROM,
                     "--to", TO, "--warmup-bars", str(WARMUP), "--out", str(out),
                     "--no-report"]) == 0
        stats = json.loads((out / "stats.json").read_text())
        by = stats["entries_skipped"]
        assert list(by) == ["unfunded", "below_min_trade_value"]
        n = stats["n_entries_skipped"]
        assert n == sum(by.values()) and by["unfunded"] > 0
        assert (by["below_min_trade_value"] > 0) == bool(min_trade)
        rows = [x for x in capsys.readouterr().out.splitlines()
                if x.startswith("entries skipped")]
        causes = [f"unfunded {by['unfunded']}"]
        if min_trade:
            causes.append(f"below min trade {by['below_min_trade_value']}")
        assert rows == [f"entries skipped   {n} signal bars ({' · '.join(causes)})"]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--profile", "no_such_profile"], 2, "profile 'no_such_profile' not found"),
        (["--from", "2030-01-01"], 1, "no 1h candles to trade"),
        (["--symbols", "XRP/USDT"], 1, "XRP/USDT"),  # in the profile, no file in the folder
        (["--symbols", "FOO/USDT"], 2, "does not trade FOO/USDT"),
        (["--from", "2024-03-01", "--to", "2024-02-01"], 2, "must be after"),
        (["--warmup-bars", "-3"], 2, "must be >= 0"),
        (["--from", "yesterday-ish"], 2, "not a date"),
    ],
)
def test_bad_input_one_clear_message(csv_dir, tmp_path, capsys, args, code, needle):
    base = {"--profile": "crypto_rating_all", "--data": str(csv_dir),
            "--symbols": ",".join(SYMS), "--warmup-bars": str(WARMUP)}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    argv = ["run", "--out", str(tmp_path / "out")] + [x for kv in base.items() for x in kv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejects malformed values itself (exit 2)
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert needle in err and "Traceback" not in err
    assert len([ln for ln in err.splitlines() if ln.startswith("error:") or ": error:" in ln]) == 1
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are valid


def test_invalid_manifest_and_corrupt_store(csv_dir, tmp_path, capsys):
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"profiles": {"p": {"strategy": "rating_all"}}}))
    assert main(["run", "--manifest", str(bad), "--profile", "p", "--data", str(csv_dir)]) == 2
    assert "profile 'p'" in capsys.readouterr().err
    store = tmp_path / "store" / "binance" / "BTC-USDT"
    store.mkdir(parents=True)
    (store / "1h.parquet").write_bytes(b"PAR1 this is not parquet")
    rc = main(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "store"),
               "--symbols", "BTC/USDT", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and "corrupt" in err and "Traceback" not in err
    assert main(["run", "--profile", "crypto_rating_all", "--data",
                 str(tmp_path / "missing")]) == 1


def test_help_explains_every_option():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help and len(action.help) > 10, (name, action.dest)
        assert p.format_help()
    # The installed entry point works and exits 0 on --help.
    out = subprocess.run([sys.executable, "-m", "tandem.backtest.cli", "run", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--warmup-bars" in out.stdout and "exit codes" in out.stdout


# ----------------------------------------------------------------------------- lookahead / features


def _probe_args(csv_dir: Path) -> list[str]:
    return ["lookahead", "--profile", "crypto_rating_all", "--data", str(csv_dir),
            "--symbols", "BTC/USDT,ADA/USDT", "--from", "2024-02-01", "--to", "2024-03-15",
            "--warmup-bars", "240", "--cuts", "4"]


def test_lookahead_passes_on_the_core(csv_dir, capsys):
    assert main(_probe_args(csv_dir)) == 0
    assert "OK" in capsys.readouterr().out


def test_lookahead_fails_on_a_peeking_pipeline(csv_dir, capsys, monkeypatch):
    """A pipeline that uses the next bar's close must be caught: exit 1, FAILED."""
    import tandem.core.signals as signals

    real = signals.signals_from_candles

    def peeking(profile, ts, o, h, lo, c, v, symbols=None, states=None):  # noqa: ANN001
        nxt = np.vstack([c[1:], c[-1:]])  # tomorrow's close, today
        return real(profile, ts, o, np.maximum(h, nxt), np.minimum(lo, nxt), nxt, v,
                    symbols=symbols, states=states)

    monkeypatch.setattr(signals, "signals_from_candles", peeking)
    assert main(_probe_args(csv_dir)) == 1
    assert "FAILED" in capsys.readouterr().out


def test_features_export_matches_the_run(csv_dir, tmp_path, capsys):
    """Feature rows cover exactly the requested range, and their signal column equals the
    signals the run used (the same core call)."""
    out = tmp_path / "f.parquet"
    assert main(["features", "--profile", "crypto_rating_all", "--data", str(csv_dir),
                 "--symbols", ",".join(SYMS), "--from", FROM, "--to", TO,
                 "--warmup-bars", str(WARMUP), "--out", str(out)]) == 0
    f = pd.read_parquet(out)
    start = pd.Timestamp(FROM, tz="UTC").value // 10**6
    end = pd.Timestamp(TO, tz="UTC").value // 10**6
    assert f["ts"].min() == start and f["ts"].max() == end - HOUR
    assert len(f) == len(SYMS) * (end - start) // HOUR
    assert {"rating_all_1h", "rating_all_4h", "rating_all_1d", "signal"} <= set(f.columns)
    # A 4h column only changes on bars where a 4h bar closed (ts_close on a 4h boundary).
    btc = f[f["symbol"] == "BTC/USDT"]
    changed = btc["rating_all_4h"].diff().fillna(0).to_numpy() != 0
    assert (btc["ts_close"].to_numpy()[changed] % (4 * HOUR) == 0).all() and changed.any()


def test_demo_runs_anywhere_without_shared_data(tmp_path):
    """The README's main job, as a user runs it: another cwd, no ../shared/data, no network."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    env["TANDEM_TEST_DATA"] = str(tmp_path / "nowhere")
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = str(repo)
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "tandem.backtest.cli", "demo", "--days", "10",
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"report            {out / 'report.html'}" in proc.stdout
    assert "total return" in proc.stdout and "Traceback" not in proc.stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["profile"] == "crypto_rating_all" and stats["n_bars"] == 24 * 10
    assert stats["warmup_bars_available"] == stats["warmup_bars"]  # a full warm-up


@pytest.mark.parametrize(("start", "first_bar"), [
    ("2023-12-01", "2024-01-01T00:00:00+00:00"),  # before the data: it starts trading at once
    ("2024-02-15T00:30", "2024-02-15T01:00:00+00:00"),  # between two bars
])
def test_first_tradable_bar_is_the_bar_that_trades(csv_dir, tmp_path, start, first_bar):
    """stats.json / the summary named the requested --from (a time with no bar) as the first
    tradable bar; equity.csv's first close shows where trading began."""
    out = tmp_path / "o"
    assert main(["run", "--profile", "crypto_rating_all", "--data", str(csv_dir), "--symbols",
                 ",".join(SYMS), "--from", start, "--to", TO, "--warmup-bars", str(WARMUP),
                 "--no-report", "--out", str(out)]) == 0
    stats = json.loads((out / "stats.json").read_text())
    first_close = pd.read_csv(out / "equity.csv")["ts"].iloc[0]
    assert stats["first_tradable_bar"] == first_bar
    assert first_close - HOUR == pd.Timestamp(first_bar).value // 10**6


def test_stats_json_names_the_data_from_any_directory(csv_dir, tmp_path, monkeypatch):
    """``reconcile`` compares the daemon's candles with the data stats.json names: a
    relative ``--data`` written as given named nothing (or another folder of the same name)
    once reconcile ran from another directory."""
    from tandem.backtest.reconcile.sources import sidecar_data_path

    monkeypatch.chdir(csv_dir.parent)
    out = tmp_path / "run"
    assert main(["run", "--profile", "crypto_rating_all", "--data", csv_dir.name,
                 "--symbols", ",".join(SYMS), "--from", FROM, "--to", TO, "--warmup-bars",
                 str(WARMUP), "--out", str(out), "--no-report"]) == 0
    assert json.loads((out / "stats.json").read_text())["data"] == str(csv_dir.resolve())
    monkeypatch.chdir(tmp_path)
    (tmp_path / csv_dir.name).mkdir()  # a folder of the same name here: not the one read
    assert sidecar_data_path(out) == csv_dir.resolve()


def test_summary_shows_the_exit_rules_as_percentages(csv_dir, tmp_path, capsys):
    """The manifest takes fractions: ``take_profit_pct: 5`` meant as 5 % runs as +500 %.
    The summary prints each level as a percentage, so such a run cannot pass unseen."""
    manifest = json.loads((Path(__file__).resolve().parents[1] / "manifest.json").read_text())
    prof = manifest["profiles"]["crypto_rating_all"]
    prof["exit_rules"] = {**prof.get("exit_rules", {}), "stop_loss_pct": 0.02,
                          "take_profit_pct": 5, "trailing_stop_pct": None}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    assert main(["run", "--manifest", str(path), "--profile", "crypto_rating_all", "--data",
                 str(csv_dir), "--symbols", ",".join(SYMS), "--from", FROM, "--to", TO,
                 "--warmup-bars", str(WARMUP), "--out", str(tmp_path / "r"), "--no-report"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("exit rules"))
    assert line.split(None, 2)[2] == "stop-loss 2.00% · take-profit 500.00% · trailing off"


def test_summary_states_the_long_short_funding_rule(csv_dir, tmp_path, capsys):
    """long_short: short proceeds once paid for longs (2x gross exposure at size_pct 1,
    silently). The summary states the rule that replaced it; long-only prints no such row."""
    manifest = json.loads((Path(__file__).resolve().parents[1] / "manifest.json").read_text())
    prof = manifest["profiles"]["crypto_rating_all"]
    path = tmp_path / "manifest.json"
    for long_short in (True, False):
        prof["execution"] = {**prof.get("execution", {}), "long_short": long_short}
        path.write_text(json.dumps(manifest))
        out = tmp_path / f"r{long_short}"
        assert main(["run", "--manifest", str(path), "--profile", "crypto_rating_all",
                     "--data", str(csv_dir), "--symbols", ",".join(SYMS), "--from", FROM,
                     "--to", TO, "--warmup-bars", str(WARMUP), "--out", str(out),
                     "--no-report"]) == 0
        lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("funding")]
        assert len(lines) == long_short
        if long_short:
            assert "free cash" in lines[0] and "no leverage" in lines[0]


def test_run_into_a_closed_pipe_finishes_quietly(csv_dir, tmp_path):
    """``tandem-backtest run ... | head``: the summary's first write found the reader gone
    and ended the command in a BrokenPipeError traceback. The lines are dropped; the run
    finishes, writes its files and exits 0 (as ``reconcile`` and ``tandem-daemon status``)."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "tandem.backtest.cli", "run", "--profile", "crypto_rating_all",
           "--data", str(csv_dir), "--symbols", ",".join(SYMS), "--from", FROM, "--to", TO,
           "--warmup-bars", str(WARMUP), "--out", str(out), "--no-report"]
    for args in (cmd, [sys.executable, "-m", "tandem.backtest.cli", "run", "--help"]):
        # head -c 0 exits at once: every write to stdout finds the pipe closed
        proc = subprocess.run(" ".join(f"'{a}'" for a in args) + " | head -c 0; exit ${PIPESTATUS[0]}",
                              shell=True, executable="/bin/bash", capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert json.loads((out / "stats.json").read_text())["n_fills"] > 0


def test_warmup_sensitivity_says_rows_and_bar_periods(tmp_path, capsys):
    """``lookahead --warmup-lengths`` counted the warm-up in bars loaded (rows) and ``run``
    in bar periods: on data with a gap they printed two numbers for one warm-up. Both now."""
    candles = generate_candles(SYMS[:2], start="2024-01-01", n_bars=N_BARS, seed=3)
    gap = {s: df.drop(index=df.index[200:212]) for s, df in candles.items()}  # 12 bars out
    write_csv_folder(gap, tmp_path / "c")
    common = ["--profile", "crypto_rating_all", "--data", str(tmp_path / "c"), "--symbols",
              ",".join(SYMS[:2]), "--from", FROM, "--to", TO, "--warmup-bars", str(WARMUP)]
    assert main(["lookahead", *common, "--cuts", "2", "--warmup-lengths", "500"]) == 0
    out = capsys.readouterr().out
    assert f"vs the {WARMUP - 12} bars loaded before it; {WARMUP} bar periods" in out, out
    assert main(["run", *common, "--out", str(tmp_path / "r"), "--no-report"]) == 0
    assert json.loads((tmp_path / "r" / "stats.json").read_text())["warmup_bars_available"] == WARMUP


def _fail_writing(*args, **kwargs):  # noqa: ANN002, ANN003
    raise OSError(28, "No space left on device")


def test_features_write_failure_is_one_line_and_keeps_the_old_file(csv_dir, tmp_path, capsys,
                                                                   monkeypatch):
    """A write that fails after the checks (disk full, a path such as /proc that passes the
    permission check) ended `features` in a traceback, and a failure halfway left the
    previous matrix truncated: now one line, exit 1, the previous file untouched."""
    import tandem.core.features as features

    out = tmp_path / "f.parquet"
    out.write_bytes(b"previous matrix")
    monkeypatch.setattr(features, "export_features", _fail_writing)
    assert main(["features", "--profile", "crypto_rating_all", "--data", str(csv_dir),
                 "--symbols", "BTC/USDT", "--from", FROM, "--to", TO,
                 "--warmup-bars", str(WARMUP), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and "No space left on device" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out.read_bytes() == b"previous matrix"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]  # no temp file left


def test_run_write_failure_is_one_line(csv_dir, tmp_path, capsys, monkeypatch):
    """`run` writing its outputs into a full disk: one `error:` line and exit 1, not a
    traceback after the whole backtest."""
    import tandem.backtest.runner as runner

    monkeypatch.setattr(runner, "write_outputs", _fail_writing)
    assert _run(csv_dir, tmp_path / "out", "--no-report") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "No space left on device" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_warmup_sensitivity_shows_the_weights_a_portfolio_trades(csv_dir, capsys):
    """A portfolio-mode run trades target weights, normalised over every asset's score: they
    differ on more bars than the signals do (~4x on the shared universe), and the report gave
    the signals' figure only. Portfolio profiles now also show the weights' (checked here
    against the core called directly); discrete ones print as before."""
    from tandem.backtest.runner import load_window, with_overrides
    from tandem.core.manifest import load_manifest
    from tandem.core.signals import signals_from_candles
    from tandem.core.store import open_candles

    from tests.conftest import REPO_ROOT

    syms = ",".join(SYMS)
    common = ["--data", str(csv_dir), "--symbols", syms, "--from", FROM, "--to", TO,
              "--warmup-bars", str(WARMUP), "--cuts", "1", "--warmup-lengths", "100"]
    assert main(["lookahead", "--profile", "crypto_rating_all", *common]) == 0
    assert "weights differ" not in capsys.readouterr().out
    assert main(["lookahead", "--profile", "crypto_rating_all_portfolio", *common]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "warm-up    100" in ln)

    profile = load_manifest(REPO_ROOT / "manifest.json").profile("crypto_rating_all_portfolio")
    profile = with_overrides(profile, warmup_bars=WARMUP)
    w = load_window(profile, open_candles(csv_dir), FROM, TO, SYMS)
    a = w.candles

    def target(length: int) -> np.ndarray:
        s = w.k0 - length
        _, sig, _ = signals_from_candles(profile, a.ts[s:], a.open[s:], a.high[s:], a.low[s:],
                                         a.close[s:], a.volume[s:], w.symbols)
        return sig.target[length:]

    short, full = target(100), target(w.k0)
    differ = ~((short == full) | (np.isnan(short) & np.isnan(full)))
    assert differ.any()
    assert f"weights differ {100 * differ.mean():.2f}%" in line, line
    valued = differ & ~np.isnan(short) & ~np.isnan(full)
    assert f"max|Δw| {np.abs(short - full)[valued].max():.4f}" in line, line
    # from no warm-up at all, weights are missing where the full run has some: a number still
    assert main(["lookahead", "--profile", "crypto_rating_all_portfolio", *common[:-1], "0"]) == 0
    assert "max|Δw| nan" not in capsys.readouterr().out


def test_features_into_a_symlink_replaces_its_target(csv_dir, tmp_path):
    """The matrix is now written to a temporary file and renamed: a symlinked --out keeps
    its link, its target gets the matrix (as the direct write did)."""
    real = tmp_path / "real.parquet"
    link = tmp_path / "latest.parquet"
    real.write_bytes(b"old")
    link.symlink_to(real)
    assert main(["features", "--profile", "crypto_rating_all", "--data", str(csv_dir),
                 "--symbols", "BTC/USDT", "--from", FROM, "--to", TO,
                 "--warmup-bars", str(WARMUP), "--out", str(link)]) == 0
    assert link.is_symlink() and len(pd.read_parquet(real)) > 0
