"""tandem-backtest sweep: validation before work, invalid trials, search reproducibility,
walk-forward folds, resume, and --write-profile → run parity (bit for bit)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.cli import main

from tests.sweep_fixtures import make_inputs, portfolio_inputs, sweep_args


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def grid(inp, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "out"
    assert main(sweep_args(inp, out, "--workers", "0")) == 0
    return out, pd.read_parquet(out / "results.parquet")


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


@pytest.mark.parametrize(("space", "needle"), [
    ("exit_rules.stop_los_pct: [0.1]", "unknown or unsweepable field 'exit_rules.stop_los_pct'"),
    ("timeframes: [[1h, 4h]]", "changes the ratings"),
    ("warmup_bars: [10, 20]", "changes the ratings"),
    ("entry_threshold: {low: 0.1, high: 0.3}", "needs 'step' for --search grid"),
    ("entry_threshold: {low: 0.3, high: 0.1, step: 0.1}", "high (0.1) is below low"),
    ("entry_threshold: []", "empty list"),
    # one value twice under two keys: run twice, counted as two distinct trials
    ("initial_cash: [1000, 1000.0]", "duplicate values in [1000, 1000.0]"),
    ("- 1\n- 2", "non-empty mapping"),
    # the second one silently replaced the first (only [0.2, 0.3] was swept)
    ("entry_threshold: [0.1]\nentry_threshold: [0.2, 0.3]", "duplicate key 'entry_threshold' at line 2"),
    ("entry_threshold: {low: 0.1, high: 0.3, step: 0.1, step: 0.05}", "duplicate key 'step'"),
    # an OverflowError traceback (int of inf); a hang building 10**12 grid values
    ("entry_threshold: {low: 0, high: 1, step: 1.0e-320}", "step 9.99989e-321 is too small"),
    ("entry_threshold: {low: 0, high: 1, step: 1.0e-12}", "makes 1,000,000,000,001 grid values"),
    # each field under the cap, their product built in memory: a hang
    ("entry_threshold: {low: 0, high: 1, step: 0.001}\n"
     "exit_threshold: {low: -1, high: 0, step: 0.001}\n"
     "exit_rules.stop_loss_pct: {low: 0.001, high: 0.5, step: 0.001}",
     "the grid has 501,000,500 trials (1001 x 1001 x 500)"),
])
def test_bad_space_is_one_line_exit_2_before_any_work(inp, tmp_path, capsys, space, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_text(space)
    out = tmp_path / "out"
    args = sweep_args(inp, out)
    args[args.index("--space") + 1] = str(bad)
    assert main(args) == 2
    err = _err(capsys)
    assert err.startswith("error: ") and needle in err, err
    if "unknown" in needle:
        assert "sweepable fields:" in err and "exit_rules.stop_loss_pct" in err
    assert not out.exists()  # nothing computed, nothing written


@pytest.mark.parametrize(("extra", "needle"), [
    (["--walk-forward", "2"], "needs --train and --test"),
    (["--train", "30d"], "only apply with --walk-forward"),
    (["--write-profile", "t"], "already has a profile of that name"),
    (["--write-profile", "Bad-Name"], "lowercase"),
    (["--manifest-out", "x.json"], "only applies with --write-profile"),
])
def test_bad_options_exit_2(inp, tmp_path, capsys, extra, needle):
    assert main(sweep_args(inp, tmp_path / "out", *extra)) == 2
    assert needle in _err(capsys)


def test_out_is_a_file_and_bad_duration(inp, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(sweep_args(inp, f)) == 2
    assert "is a file" in _err(capsys)
    with pytest.raises(SystemExit) as exc:  # argparse: usage error, exit 2
        main(sweep_args(inp, tmp_path / "o", "--walk-forward", "2", "--train", "30x",
                        "--test", "5d"))
    assert exc.value.code == 2
    assert "not a duration" in capsys.readouterr().err


def test_grid_rows_and_invalid_trials(grid):
    out, df = grid
    assert list(df["trial"]) == list(range(18)) and (df["fold"] == 0).all()
    cols = list(df.columns)
    assert cols[:6] == ["trial", "fold", "key", "data_fingerprint", "valid", "error"]
    assert cols[6:9] == ["param.entry_threshold", "param.exit_threshold",
                         "param.exit_rules.stop_loss_pct"]
    assert cols[-4:] == ["is_start", "is_end", "oos_start", "oos_end"]
    # grid order: last dimension fastest; the range honours its step
    assert list(df["param.exit_rules.stop_loss_pct"][:3]) == [0.02, 0.03, 0.04]
    bad = df[~df["valid"]]
    # entry 0.05 below exit 0.1: the manifest model's message, no crash, no stats
    assert len(bad) == 3 and (bad["param.entry_threshold"] == 0.05).all()
    assert bad["error"].str.contains("is below exit_threshold").all()
    assert bad["is_sharpe"].isna().all() and (df.loc[df["valid"], "error"] == "").all()
    assert df["oos_sharpe"].isna().all() and df["key"].is_unique
    best = json.loads((out / "best.json").read_text())
    v = df.loc[df["valid"], "is_sharpe"]
    assert best["trial"] == int(df.loc[v.idxmax(), "trial"]) and best["value"] == v.max()


def test_random_and_tpe_are_seeded(inp, tmp_path):
    frames = {}
    for search in ("random", "tpe"):
        for k in range(2):
            out = tmp_path / f"{search}{k}"
            assert main(sweep_args(inp, out, "--workers", "0", "--search", search,
                                   "--trials", "20", "--seed", "5")) == 0
            frames[search, k] = pd.read_parquet(out / "results.parquet")
        pd.testing.assert_frame_equal(frames[search, 0], frames[search, 1])
        assert set(frames[search, 0]["param.exit_rules.stop_loss_pct"]) <= {0.02, 0.03, 0.04}


def _sweep_best_then_run(inp, grid_df, tmp_path, capsys):  # noqa: ANN001, ANN202
    """Sweep with --write-profile, run the written profile with the ordinary CLI over the
    same range: the sweep kernel's fills for the best trial equal run's, bit for bit, and
    the sweep's statistics equal stats.json."""
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.backtest.sweep.driver import single_trial
    from tandem.core.fingerprint import run_fingerprint
    from tandem.core.journal import fills_frame, read_parquet
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource

    out = tmp_path / "w"
    man_out = tmp_path / "chosen.json"
    assert main(sweep_args(inp, out, "--workers", "0", "--write-profile", "t_best",
                           "--manifest-out", str(man_out))) == 0
    printed = capsys.readouterr().out
    best = json.loads((out / "best.json").read_text())
    man = load_manifest(man_out)
    prof = man.profile("t_best")
    assert best["profile_hash"] == prof.profile_hash() and best["profile_hash"] in printed
    assert set(man.profiles) == {"t", "t_best"}  # a copy of the input, plus the new profile
    # run the written profile with the ordinary CLI over the same range
    run_out = tmp_path / "run"
    assert main(["run", "--manifest", str(man_out), "--profile", "t_best", "--data",
                 str(inp["data"]), "--out", str(run_out), "--no-report"]) == 0
    run_fills = read_parquet(run_out / "fills.parquet")
    # the sweep's fills for that trial, through the sweep kernel
    base = load_manifest(inp["manifest"]).profile("t")
    data = load_sweep_data(base, CsvFolderSource(inp["data"], timeframe="1h"))
    _, raw, _ = single_trial(data, base, best["params"], 0, keep_fills=256)
    fills = fills_frame(raw, data.symbols, "t_best", run_fills["run_id"].iloc[0], "backtest")
    assert len(fills) > 10
    assert fills.equals(run_fills)
    assert run_fingerprint(fills) == run_fingerprint(run_fills)
    stats = json.loads((run_out / "stats.json").read_text())
    if grid_df is None:
        grid_df = pd.read_parquet(out / "results.parquet")
    row = grid_df[grid_df["trial"] == best["trial"]].iloc[0]
    for k in ("total_return", "max_drawdown", "n_trades", "fees", "exposure"):
        assert row[f"is_{k}"] == pytest.approx(stats[k], rel=1e-9, abs=1e-12)
    return run_fills


def test_write_profile_then_run_gives_the_sweeps_fills(inp, grid, tmp_path, capsys):
    _sweep_best_then_run(inp, grid[1], tmp_path, capsys)


@pytest.mark.parametrize("portfolio", [
    {"weighting": "inverse_vol", "lookback": 72, "max_weight": 0.5, "min_weight": 0.05,
     "band": 0.02, "turnover_cap": 0.8, "rebalance_every": "4h"},
    {"weighting": "min_variance", "lookback": 48, "max_weight": 0.6, "rebalance_every": "4h"},
    {"weighting": "hrp", "lookback": 48, "max_weight": 0.6, "rebalance_every": "4h"},
], ids=lambda p: p["weighting"])
def test_weighted_portfolio_sweep_equals_run(tmp_path, capsys, portfolio):
    """tandem.core.weighting in the sweep (tandem.core.trials): a weighted portfolio profile's best trial
    trades exactly what `run` of the written profile trades."""
    inp = make_inputs(tmp_path / "in", days=30)
    doc = json.loads(inp["manifest"].read_text())
    doc["profiles"]["t"]["execution"]["mode"] = "portfolio"
    doc["profiles"]["t"]["portfolio"] = portfolio
    inp["manifest"].write_text(json.dumps(doc))
    inp["space"].write_text("entry_threshold: [0.0, 0.1]\nexit_threshold: [-0.1]\n")
    fills = _sweep_best_then_run(inp, None, tmp_path, capsys)
    assert (fills["reason"] == "rebalance").any()
    if portfolio["weighting"] == "hrp":  # folds: each segment rebalances from its own start
        out = tmp_path / "wf"
        assert main(sweep_args(inp, out, "--workers", "0", "--walk-forward", "2", "--train",
                               "4d", "--test", "2d")) == 0
        df = pd.read_parquet(out / "results.parquet")
        assert len(df) == 4 and df["oos_n_fills"].gt(0).all() and df["is_n_fills"].gt(0).all()


def test_a_sweep_over_the_weighting_settings_equals_run_of_its_written_profile(tmp_path,
                                                                             capsys):
    """portfolio.weighting/lookback/min_weight/band/turnover_cap swept (users of portfolio
    mode could not): the best trial's statistics are those of `run` on the written profile,
    its fills are run's bit for bit, and the written profile carries the chosen values."""
    from tandem.core.manifest import load_manifest

    inp = portfolio_inputs(tmp_path / "in", {"max_weight": 0.5, "rebalance_every": "4h"})
    inp["space"].write_text("portfolio.weighting: [equal, inverse_vol, hrp]\n"
                            "portfolio.lookback: [24, 48]\n"
                            "portfolio.min_weight: [0.0, 0.2]\n"
                            "portfolio.band: [0.0, 0.05]\n"
                            "portfolio.turnover_cap: [null, 0.5]\n")
    fills = _sweep_best_then_run(inp, None, tmp_path, capsys)
    assert (fills["reason"] == "rebalance").any()
    df = pd.read_parquet(tmp_path / "w" / "results.parquet")
    assert len(df) == 48 and df["valid"].all()
    assert df["param.portfolio.turnover_cap"].isna().sum() == 24  # null: no cap
    # the trials' numbers differ by weighting (the setting reached the kernel)
    assert df.groupby("param.portfolio.weighting")["is_total_return"].mean().nunique() == 3
    best = json.loads((tmp_path / "w" / "best.json").read_text())
    params = best["params"]
    assert set(params) == {f"portfolio.{k}" for k in
                           ("weighting", "lookback", "min_weight", "band", "turnover_cap")}
    written = load_manifest(tmp_path / "chosen.json").profile("t_best").portfolio
    for k, v in params.items():
        assert getattr(written, k.removeprefix("portfolio.")) == v
    assert not written.plain_score()


def test_help_lists_every_sweepable_field(capsys):
    """--help lists the fields the space accepts (the weighting settings were missing from
    the space and nowhere said), from the list the check uses."""
    from tandem.backtest.sweep.space import RATING_FIELDS, SWEEPABLE

    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    listing = " ".join(out.split("sweepable fields: ")[1].split(").")[0].split())
    assert listing.split(", ")[:len(SWEEPABLE)] == list(SWEEPABLE)
    assert "mtf.weights.<timeframe>" in listing and all(f in listing for f in RATING_FIELDS)
    assert "portfolio.weighting: [" in out


def test_resume_after_lost_parts_ends_with_the_same_results(inp, grid, tmp_path, monkeypatch):
    import tandem.backtest.sweep.driver as drv

    monkeypatch.setattr(drv, "MAX_CHUNK", 2)  # many parts
    out = tmp_path / "r"
    assert main(sweep_args(inp, out, "--workers", "0")) == 0
    full = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(full, grid[1])
    parts = sorted((out / "parts").glob("*.parquet"))
    assert len(parts) >= 5
    for p in parts[::2]:
        p.unlink()  # as if killed before these chunks finished
    (out / "results.parquet").unlink()
    calls = []
    real = drv.finalize
    monkeypatch.setattr(drv, "finalize", lambda *a: (calls.append(1), real(*a))[1])
    from tandem.backtest.sweep import evaluate as ev

    n_run = []
    real_eval = ev.evaluate_chunk
    import tandem.backtest.sweep.executor as ex

    monkeypatch.setattr(ex, "evaluate_chunk",
                        lambda d, b, t: (n_run.append(len(t)), real_eval(d, b, t))[1])
    assert main(sweep_args(inp, out, "--workers", "0", "--resume")) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), full)
    assert 0 < sum(n_run) < 18  # only the lost trials ran again


def test_resume_after_an_upgrade_reruns_every_trial(inp, tmp_path, monkeypatch):
    """Rows computed by other code (an upgrade changed the core or the sweep) are not
    reused by --resume: the same parameters and data may give other numbers now."""
    import tandem.backtest.sweep.executor as ex
    from tandem.backtest.sweep import evaluate as ev

    out = tmp_path / "r"
    assert main(sweep_args(inp, out, "--workers", "0")) == 0
    n_run = []
    real_eval = ev.evaluate_chunk
    monkeypatch.setattr(ex, "evaluate_chunk",
                        lambda d, b, t: (n_run.append(len(t)), real_eval(d, b, t))[1])
    assert main(sweep_args(inp, out, "--workers", "0", "--resume")) == 0
    assert sum(n_run) == 0  # same code: every trial reused
    import tandem.backtest.sweep.data as sd

    monkeypatch.setattr(sd, "code_version", lambda: "another-release")  # the client's
    monkeypatch.setattr(ev, "code_version", lambda: "another-release")  # the worker's
    assert main(sweep_args(inp, out, "--workers", "0", "--resume")) == 0
    assert sum(n_run) == 18  # other code: every trial again


def test_a_worker_with_other_code_is_refused(inp, tmp_path, monkeypatch, capsys):
    """A worker running another release would mix its numbers into the table: exit 1."""
    from tandem.backtest.sweep import evaluate as ev

    monkeypatch.setattr(ev, "code_version", lambda: "another-release")  # the worker's
    assert main(sweep_args(inp, tmp_path / "o", "--workers", "0")) == 1
    err = _err(capsys)
    assert "other Tandem code (another-release)" in err and "Traceback" not in err


def test_walk_forward_folds_start_flat_and_pick_is_winners(inp, tmp_path):
    from tandem.backtest.runner import load_window
    from tandem.backtest.stats import compute_stats
    from tandem.backtest.sweep.driver import fold_winners, objective_values
    from tandem.backtest.sweep.space import trial_profile
    from tandem.core.engine import EngineConfig, run_batch
    from tandem.core.journal import trades_table
    from tandem.core.manifest import load_manifest
    from tandem.core.signals import compute_signals, ratings_from_candles
    from tandem.core.store import CsvFolderSource

    out = tmp_path / "wf"
    assert main(sweep_args(inp, out, "--workers", "0", "--walk-forward", "3", "--train", "14d",
                           "--test", "8d")) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df["fold"].unique()) == [0, 1, 2] and len(df) == 18 * 3
    day = 86_400_000
    last_open = pd.Timestamp("2024-01-01", tz="UTC").value // 10**6 + (24 * 60 - 1) * 3_600_000
    f = df[df["trial"] == 0].set_index("fold")
    assert f.loc[2, "oos_end"] == last_open + 3_600_000  # folds end at the data end
    for k in range(3):
        assert f.loc[k, "oos_end"] - f.loc[k, "oos_start"] == 8 * day
        assert f.loc[k, "is_end"] == f.loc[k, "oos_start"]
        assert f.loc[k, "oos_start"] - f.loc[k, "is_start"] == 14 * day  # rolling
        if k:
            assert f.loc[k, "oos_start"] == f.loc[k - 1, "oos_end"]  # end to end
    # Independent truth for fold 1 OOS of one trial: ratings over the whole window, then
    # the engine from the fold's first bar, flat with the initial cash (as `run --from`).
    base = load_manifest(inp["manifest"]).profile("t")
    params = {"entry_threshold": 0.1, "exit_threshold": -0.1, "exit_rules.stop_loss_pct": 0.02}
    prof, _ = trial_profile(base, params)
    w = load_window(base, CsvFolderSource(inp["data"], timeframe="1h"))
    a = w.candles
    r, _ = ratings_from_candles(prof, a.ts, a.open, a.high, a.low, a.close, a.volume, w.symbols)
    sig = compute_signals(prof, r, a.ts + 3_600_000, w.symbols).signal.astype(float)
    lo, hi = np.searchsorted(a.ts, [f.loc[1, "oos_start"], f.loc[1, "oos_end"]])
    res = run_batch(EngineConfig(**prof.engine_params()), a.ts[lo:hi] + 3_600_000, a.open[lo:hi],
                    a.high[lo:hi], a.low[lo:hi], a.close[lo:hi], sig[lo:hi], symbols=w.symbols,
                    profile="t", run_id="x")
    ref = compute_stats(res.equity, trades_table(res.fills), res.fills,
                        initial_cash=prof.initial_cash)
    trial = int(df[(df["param.entry_threshold"] == 0.1) & (df["param.exit_threshold"] == -0.1)
                   & (df["param.exit_rules.stop_loss_pct"] == 0.02)]["trial"].iloc[0])
    row = df[(df["trial"] == trial) & (df["fold"] == 1)].iloc[0]
    assert row["oos_n_fills"] == len(res.fills) > 0
    for k in ("total_return", "sharpe", "max_drawdown", "fees"):
        assert row[f"oos_{k}"] == pytest.approx(ref[k], rel=1e-9, abs=1e-12)
    # winners: best in-sample objective per fold, ties to the lowest trial
    best = json.loads((out / "best.json").read_text())
    for fw, bw in zip(fold_winners(df, "sharpe"), best["folds"], strict=True):
        g = df[df["fold"] == fw["fold"]]
        v = objective_values(g, "sharpe")
        assert fw["trial"] == int(g.loc[v.idxmax(), "trial"]) == bw["trial"]
    assert best["trial"] == best["folds"][-1]["trial"]


def test_a_fold_reproduces_with_run_from_its_oos_run_options(inp, tmp_path):
    """best.json names, per fold, the `run` options that give its out-of-sample figures: the
    last fold's winner is the written profile, and `run --from --to --warmup-bars` as given
    loads what the sweep rated, so stats.json equals the fold's oos_* statistics."""
    out, man_out = tmp_path / "wf", tmp_path / "chosen.json"
    assert main(sweep_args(inp, out, "--workers", "0", "--walk-forward", "3", "--train", "14d",
                           "--test", "8d", "--write-profile", "t_wf", "--manifest-out",
                           str(man_out))) == 0
    best = json.loads((out / "best.json").read_text())
    last = best["folds"][-1]
    opts = last["oos_run"]
    df = pd.read_parquet(out / "results.parquet")
    row = df[(df["trial"] == last["trial"]) & (df["fold"] == last["fold"])].iloc[0]
    assert pd.Timestamp(opts["from"]).value // 10**6 == row["oos_start"]
    assert pd.Timestamp(opts["to"]).value // 10**6 == row["oos_end"]
    run_out = tmp_path / "run"
    assert main(["run", "--manifest", str(man_out), "--profile", "t_wf", "--data",
                 str(inp["data"]), "--from", opts["from"], "--to", opts["to"],
                 "--warmup-bars", str(opts["warmup_bars"]), "--out", str(run_out),
                 "--no-report"]) == 0
    stats = json.loads((run_out / "stats.json").read_text())
    assert stats["n_trades"] == row["oos_n_trades"] and row["oos_n_fills"] > 0
    for k in ("total_return", "sharpe", "max_drawdown", "fees", "exposure"):
        assert row[f"oos_{k}"] == pytest.approx(stats[k], rel=1e-9, abs=1e-12), k


def test_fold_winner_ties_and_nan():
    from tandem.backtest.sweep.driver import fold_winners

    df = pd.DataFrame({"trial": [0, 1, 2, 3], "fold": 0, "valid": [True, True, True, False],
                       "is_sharpe": [np.nan, 1.0, 1.0, 5.0], "oos_sharpe": np.nan})
    assert fold_winners(df, "sharpe")[0]["trial"] == 1  # NaN loses, invalid never wins, tie → lowest


def test_daily_returns_compound_to_the_total_return(grid):
    out, df = grid
    daily = pd.read_parquet(out / "daily_returns.parquet")
    valid = df[df["valid"]]
    assert sorted(int(c) for c in daily.columns) == sorted(valid["trial"])
    for _, row in valid.iterrows():
        r = daily[str(row["trial"])].to_numpy()
        assert np.prod(1.0 + r) - 1.0 == pytest.approx(row["is_total_return"], rel=1e-9,
                                                       abs=1e-12)
    n_days = (df["is_end"].iloc[0] - df["is_start"].iloc[0]) / 86_400_000
    assert len(daily) == pytest.approx(n_days, abs=1)
    best = json.loads((out / "best.json").read_text())
    dsr = best.get("overfit", {}).get("dsr")
    if dsr is not None:  # with backtest.sweep.overfit present
        assert dsr["n_trials"] == len(valid) and dsr["n_obs"] == len(daily)
        assert 0.0 <= best["dsr"] <= 1.0 and 0.0 <= best["pbo"] <= 1.0


def test_warmup_override_is_used_and_written(inp, tmp_path):
    from tandem.core.manifest import load_manifest

    out = tmp_path / "wu"
    assert main(sweep_args(inp, out, "--workers", "0", "--warmup-bars", "240", "--trials", "2",
                           "--write-profile", "t_w")) == 0
    df = pd.read_parquet(out / "results.parquet")
    first = pd.Timestamp("2024-01-01", tz="UTC").value // 10**6
    assert (df["is_start"] == first + 240 * 3_600_000).all()
    assert load_manifest(out / "manifest.json").profile("t_w").warmup_bars == 240


def test_ranges_sample_within_bounds_and_steps():
    from tandem.backtest.sweep.search import TpeSearch, random_trials
    from tandem.backtest.sweep.space import parse_dim

    dims = [parse_dim("execution.size_pct", {"low": 0.01, "high": 0.5, "log": True}),
            parse_dim("exit_rules.stop_loss_pct", {"low": 0.02, "high": 0.1, "step": 0.02}),
            parse_dim("initial_cash", {"low": 1000, "high": 5000, "step": 1000}),
            parse_dim("exit_rules.intrabar", ["pessimistic", "ohlc"])]
    assert dims[1].grid() == [0.02, 0.04, 0.06, 0.08, 0.1]
    assert dims[2].integer and dims[2].grid() == [1000, 2000, 3000, 4000, 5000]
    for trials in (random_trials(dims, 200, 1), TpeSearch(dims, 1).ask(30)):
        size = np.array([t["execution.size_pct"] for t in trials])
        assert ((size >= 0.01) & (size <= 0.5)).all()
        assert {t["exit_rules.stop_loss_pct"] for t in trials} <= set(dims[1].grid())
        assert {t["initial_cash"] for t in trials} <= set(dims[2].grid())
        assert all(isinstance(t["initial_cash"], int) for t in trials)
        assert {t["exit_rules.intrabar"] for t in trials} <= {"pessimistic", "ohlc"}
    # log-uniform: about half the draws below the geometric midpoint
    size = np.array([t["execution.size_pct"] for t in random_trials(dims, 2000, 2)])
    assert 0.45 < np.mean(size < np.sqrt(0.01 * 0.5)) < 0.55


def test_calmar_objective():
    from tandem.backtest.sweep.driver import objective_values

    df = pd.DataFrame({"valid": [True, True, False], "is_cagr": [0.2, 0.1, 0.5],
                       "is_max_drawdown": [-0.1, 0.0, -0.1]})
    v = objective_values(df, "calmar")
    assert v[0] == pytest.approx(2.0) and np.isnan(v[1]) and np.isnan(v[2])


def test_tpe_resume_ends_with_the_same_results(inp, tmp_path):
    out = tmp_path / "tpe"
    args = sweep_args(inp, out, "--workers", "0", "--search", "tpe", "--trials", "24",
                      "--seed", "9")
    assert main(args) == 0
    full = pd.read_parquet(out / "results.parquet")
    parts = sorted((out / "parts").glob("*.parquet"))
    for p in parts[len(parts) // 2:]:
        p.unlink()
    assert main(args + ["--resume"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), full)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_space_file_not_utf8_is_one_line(inp, tmp_path, capsys, suffix):
    bad = tmp_path / f"space{suffix}"
    bad.write_bytes("entry_threshold: [0.1]".encode("utf-16"))  # a UnicodeDecodeError traceback
    args = sweep_args(inp, tmp_path / "out")
    args[args.index("--space") + 1] = str(bad)
    assert main(args) == 2
    assert "not UTF-8 text (byte 0xff at offset 0)" in _err(capsys)
    assert not (tmp_path / "out").exists()


def test_manifest_out_keeps_the_profiles_earlier_sweeps_wrote(inp, tmp_path, capsys):
    """Two sweeps writing two names to one --manifest-out: both profiles stay (the second
    used to drop the first); rerunning a name rewrites it; a file that is no manifest is
    refused before any work."""
    from tandem.core.manifest import load_manifest

    man_out = tmp_path / "chosen.json"
    for name in ("first", "second", "second"):
        assert main(sweep_args(inp, tmp_path / name, "--workers", "0", "--write-profile", name,
                               "--manifest-out", str(man_out))) == 0
    assert set(load_manifest(man_out).profiles) == {"t", "first", "second"}
    man_out.write_text("not json")
    assert main(sweep_args(inp, tmp_path / "x", "--workers", "0", "--write-profile", "third",
                           "--manifest-out", str(man_out))) == 2
    assert "is not a manifest" in _err(capsys) and not (tmp_path / "x").exists()


def test_out_or_manifest_out_under_a_file_is_exit_2_before_work(inp, tmp_path, capsys):
    """Found only when the outputs were written (a traceback after the whole sweep, or
    after the data was loaded)."""
    f = tmp_path / "file"
    f.write_text("x")
    assert main(sweep_args(inp, f / "out")) == 2
    assert "--out" in _err(capsys) and f.read_text() == "x"
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--write-profile", "chosen", "--manifest-out",
                           str(f / "m.json"))) == 2
    assert "--manifest-out" in _err(capsys) and not out.exists()


def test_json_space_with_a_key_twice_is_refused(tmp_path):
    from pathlib import Path

    from tandem.backtest.sweep.space import SpaceError, load_space
    from tandem.core.manifest import load_manifest

    profile = load_manifest(Path(__file__).resolve().parents[1] / "manifest.json").profile()
    space = tmp_path / "space.json"
    space.write_text('{"entry_threshold": [0.1], "entry_threshold": [0.2, 0.3]}')
    with pytest.raises(SpaceError, match="duplicate key 'entry_threshold'"):
        load_space(space, profile)
    space.write_text('{"entry_threshold": [0.1], "exit_threshold": [-0.2, -0.1]}')
    assert [d.path for d in load_space(space, profile)] == ["entry_threshold", "exit_threshold"]


def test_walk_forward_folds_stay_on_the_data(inp, tmp_path, capsys):
    """--to past the data laid the last test fold partly over bars that do not exist (a
    shorter out-of-sample fold, silently); --from before the data let the first training
    fold start where there is none. Folds end at the data's end; its first bar bounds them."""
    space = tmp_path / "one.yaml"
    space.write_text("entry_threshold: [0.1]\n")
    wf = ["--workers", "0", "--walk-forward", "2", "--train", "14d", "--test", "8d",
          "--space", str(space)]
    runs = {}
    for name, extra in (("plain", []), ("late_to", ["--to", "2024-03-04"])):
        assert main(sweep_args(inp, tmp_path / name, *wf, *extra)) == 0
        runs[name] = pd.read_parquet(tmp_path / name / "results.parquet")
    data_end = pd.Timestamp("2024-03-01", tz="UTC").value // 10**6  # 60 days of 1h bars
    for name, df in runs.items():
        assert df["oos_end"].max() == data_end, name
        assert (df["oos_end"] - df["oos_start"] == 8 * 86_400_000).all(), name
    capsys.readouterr()
    long_train = ["--workers", "0", "--walk-forward", "2", "--train", "50d", "--test", "7d",
                  "--space", str(space), "--warmup-bars", "0"]
    assert main(sweep_args(inp, tmp_path / "early", *long_train, "--from", "2023-12-01")) == 1
    assert "tradable data starts 2024-01-01T00:00:00+00:00" in _err(capsys)
