"""tandem-backtest sweep as a demanding quant user tries it: spaces that meant something
else, repeated draws, a --write-profile that cannot be honoured, --symbols with a written
profile. Each case was an exit 0 with wrong or missing results."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tandem.backtest.cli import main

from tests.sweep_fixtures import SYMS, make_inputs, portfolio_inputs, sweep_args


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("hostile"), days=30)


def _space(tmp_path, text: str) -> list[str]:  # noqa: ANN001
    p = tmp_path / "space.yaml"
    p.write_text(text)
    return ["--space", str(p)]


#: Two random draws of these ranges, each with entry below exit: a sweep without a valid
#: trial (a grid of such values is refused before any work).
ENTRY_EXIT_RANGES = "entry_threshold: {low: -1.0, high: 1.0}\nexit_threshold: {low: -1.0, high: 1.0}\n"
ALL_INVALID_DRAWS = ("--search", "random", "--trials", "2", "--seed", "1")


def _err(capsys) -> str:  # noqa: ANN001
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_integer_bounds_without_a_step_are_a_continuous_range():
    """{low: -1, high: 1} is a range of thresholds; random and TPE drew only -1, 0 and 1
    (the integer bounds made it an integer range, though no sweepable field is one)."""
    from tandem.backtest.sweep.search import TpeSearch, random_trials
    from tandem.backtest.sweep.space import parse_dim

    dims = [parse_dim("entry_threshold", {"low": -1, "high": 1}),
            parse_dim("execution.size_pct", {"low": 0, "high": 1})]
    assert not any(d.integer for d in dims)
    for trials in (random_trials(dims, 50, 3), TpeSearch(dims, 3).ask(16)):
        for d in dims:
            v = [t[d.path] for t in trials]
            assert len(set(v)) > 3 and all(isinstance(x, float) for x in v)
            assert min(v) >= d.low and max(v) <= d.high
    # an integer step still means integer values (cash amounts stay whole)
    cash = parse_dim("initial_cash", {"low": 1000, "high": 3000, "step": 1000})
    assert cash.integer and {t["initial_cash"] for t in random_trials([cash], 20, 1)} <= {
        1000, 2000, 3000}


@pytest.mark.parametrize(("space", "needle"), [
    ("exit_rules.stop_loss_pct: [1e-2, 0.03]", "'1e-2' is text, not a number"),
    ("exit_rules.stop_loss_pct: {low: 1e-2, high: 0.05, step: 0.01}", "write 1.0e-3 or 0.001"),
    # a ValueError traceback from the resume key's JSON, after the data was loaded
    ("exit_rules.stop_loss_pct: [.nan, 0.03]", "values must be finite, got nan"),
    ("exit_rules.stop_loss_pct: [0.03, -.inf]", "values must be finite, got -inf"),
    # random: numpy's "high is out of bounds for int64", tpe: decimal.InvalidOperation
    ("exit_rules.stop_loss_pct: {low: 0.01, high: 0.2, step: 1.0e-300}",
     "makes ~10^299 grid values; at most 1,000,000 per field"),
    # TypeError / OverflowError tracebacks after the data was loaded
    ("exit_rules.stop_loss_pct: [0.03, 2021-01-01]", "got date datetime.date(2021, 1, 1)"),
    ("exit_rules.stop_loss_pct: [0.03, !!binary aGVsbG8=]", "got bytes"),
    ("exit_rules.stop_loss_pct: [0.03, 1" + "0" * 400 + "]", "~10^400 is too large"),
    ("exit_rules.stop_loss_pct: {low: 0, high: 1" + "0" * 400 + "}", "~10^400 is too large"),
])
@pytest.mark.parametrize("search", ["grid", "random", "tpe"])
def test_values_yaml_misreads_are_refused_before_work(inp, tmp_path, capsys, space, needle,
                                                      search):
    """YAML 1.1 reads 1e-2 (no dot) as the string '1e-2': its trials were all invalid and
    the mixed column made the winner (and the written profile) text."""
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0", "--search", search,
                           *_space(tmp_path, space))) == 2
    err = _err(capsys)
    assert err.startswith("error: ") and needle in err and "exit_rules.stop_loss_pct" in err
    assert not out.exists()


def test_repeated_draws_count_once_in_dsr_and_pbo(inp, tmp_path):
    """60 random draws of a 6-combination space are 6 trials: DSR, PBO and the daily
    returns are the grid's (they counted every draw as another independent trial)."""
    space = _space(tmp_path, "entry_threshold: [0.1, 0.2]\n"
                                  "exit_rules.stop_loss_pct: [0.02, 0.03, 0.04]\n")
    runs = {}
    for name, extra in (("grid", []), ("random", ["--search", "random", "--trials", "60"])):
        out = tmp_path / name
        assert main(sweep_args(inp, out, "--workers", "0", *space, *extra)) == 0
        runs[name] = (json.loads((out / "best.json").read_text()),
                      pd.read_parquet(out / "daily_returns.parquet"),
                      pd.read_parquet(out / "results.parquet"))
    (bg, dg, _), (br, dr, rr) = runs["grid"], runs["random"]
    assert len(rr) == 60 and rr["key"].nunique() == 6 and br["n_distinct"] == 6
    assert bg["dsr"] is not None and bg["pbo"] is not None
    assert br["overfit"]["dsr"]["n_trials"] == bg["overfit"]["dsr"]["n_trials"] == 6
    assert br["dsr"] == pytest.approx(bg["dsr"], rel=1e-12)
    assert br["pbo"] == pytest.approx(bg["pbo"], rel=1e-12)
    assert dr.shape == dg.shape
    assert br["params"] == bg["params"] and br["value"] == bg["value"]


def test_write_profile_without_a_winner_is_exit_1(inp, tmp_path, capsys):
    """Every trial invalid (entry below exit: a check across fields, so per trial), and
    --write-profile exited 0 without writing the profile and without a word.
    (A value refused by itself, a stop-loss of 2 meant as 2 %, or by every combination, as
    a grid whose trials are all invalid, is refused before any work:
    test_a_value_the_manifest_refuses_by_itself_is_exit_2_before_any_work; random draws can
    still all be invalid.)"""
    out, man = tmp_path / "out", tmp_path / "m.json"
    args = sweep_args(inp, out, "--workers", "0", "--write-profile", "chosen",
                      "--manifest-out", str(man), *ALL_INVALID_DRAWS,
                      *_space(tmp_path, ENTRY_EXIT_RANGES))
    assert main(args) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]
    assert err.startswith("error: no winner: profile 'chosen' not written"), err
    assert "field 'entry_threshold': " in captured.out
    assert "is below exit_threshold" in captured.out
    assert not man.exists() and not list(tmp_path.glob("*.tmp"))
    df = pd.read_parquet(out / "results.parquet")  # the reasons stay inspectable
    assert not df["valid"].any()


def test_write_profile_uses_the_values_the_trial_ran_with(inp, tmp_path):
    """A list mixing kinds is a text column in results.parquet; the winner's parameters were
    read back from it, so 0.1 was written as '0.1' (a ManifestError traceback after the
    whole sweep, the manifest left as a .tmp file). A text value such as 'off' is now
    refused before any work; a null beside numbers still makes the column float with NaN."""
    from tandem.core.manifest import load_manifest

    out, man = tmp_path / "out", tmp_path / "m.json"
    space = _space(tmp_path, "exit_rules.take_profit_pct: [0.1, null]\n")
    assert main(sweep_args(inp, out, "--workers", "0", "--write-profile", "chosen",
                           "--manifest-out", str(man), *space)) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["params"] == {"exit_rules.take_profit_pct": 0.1}
    assert load_manifest(man).profile("chosen").exit_rules.take_profit_pct == 0.1


def test_write_profile_with_symbols_trades_the_swept_assets(inp, tmp_path, capsys):
    """A sweep over --symbols wrote a profile trading all the base profile's assets, so
    `run --profile NAME` (and the daemon) traded others than the trial scored."""
    from tandem.backtest.sweep.data import load_sweep_data
    from tandem.backtest.sweep.driver import single_trial
    from tandem.core.journal import fills_frame, read_parquet
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource

    syms = [SYMS[0], SYMS[2]]  # one core asset, one universe asset
    out, man = tmp_path / "out", tmp_path / "m.json"
    space = _space(tmp_path, "entry_threshold: [0.05, 0.1]\n")
    assert main(sweep_args(inp, out, "--workers", "0", "--symbols", ",".join(syms),
                           "--write-profile", "chosen", "--manifest-out", str(man),
                           *space)) == 0
    prof = load_manifest(man).profile("chosen")
    assert prof.assets == syms and prof.core_assets == [SYMS[0]]
    run_out = tmp_path / "run"
    assert main(["run", "--manifest", str(man), "--profile", "chosen", "--data",
                 str(inp["data"]), "--out", str(run_out), "--no-report"]) == 0
    run_fills = read_parquet(run_out / "fills.parquet")
    base = load_manifest(inp["manifest"]).profile("t")
    data = load_sweep_data(base, CsvFolderSource(inp["data"], timeframe="1h"), symbols=syms)
    best = json.loads((out / "best.json").read_text())
    _, raw, _ = single_trial(data, base, best["params"], 0, keep_fills=256)
    fills = fills_frame(raw, data.symbols, "chosen", run_fills["run_id"].iloc[0], "backtest")
    assert len(fills) > 0 and fills.equals(run_fills)
    # no core asset among --symbols: such a profile cannot exist; said before any work
    capsys.readouterr()
    out2 = tmp_path / "out2"
    assert main(sweep_args(inp, out2, "--workers", "0", "--symbols", SYMS[2],
                           "--write-profile", "chosen2", *space)) == 2
    assert "needs one of its core_assets" in _err(capsys) and not out2.exists()



def test_tpe_walk_forward_is_not_steered_by_out_of_sample_bars(inp, tmp_path):
    """TPE was told the mean in-sample objective over all folds; fold 1 trains on fold 0's
    test window, so fold 0's out-of-sample bars chose which candidates fold 0 then picked
    its winner from. The search may only see bars before the first test window: changing
    every bar from there on leaves the proposed trials as they were."""
    from tandem.backtest.demo_data import generate_candles, write_csv_folder

    days, cut = 30, 20 * 24  # fold 0 trains on days 10-20 and tests on days 20-25
    a = generate_candles(SYMS, start="2024-01-01", n_bars=24 * days, seed=11)
    b = generate_candles(SYMS, start="2024-01-01", n_bars=24 * days, seed=12)
    for s in SYMS:
        k = a[s]["close"].iloc[cut - 1] / b[s]["open"].iloc[cut]
        for col in ("open", "high", "low", "close"):
            a[s].loc[cut:, col] = b[s].loc[cut:, col] * k
    changed = dict(inp, data=tmp_path / "changed")
    write_csv_folder(a, changed["data"])
    space = _space(tmp_path, "entry_threshold: {low: 0.0, high: 0.3}\n"
                             "exit_rules.stop_loss_pct: {low: 0.01, high: 0.1}\n")
    params, later = {}, {}
    for name, src in (("same", inp), ("changed", changed)):
        out = tmp_path / name
        assert main(sweep_args(src, out, "--workers", "0", "--search", "tpe", "--trials",
                               "32", "--seed", "4", "--warmup-bars", "48", "--walk-forward",
                               "2", "--train", "10d", "--test", "5d", *space)) == 0
        df = pd.read_parquet(out / "results.parquet")
        assert df["fold"].nunique() == 2
        params[name] = df[df["fold"] == 0].filter(like="param.").reset_index(drop=True)
        later[name] = df.loc[df["fold"] == 1, "is_total_return"].to_numpy()
    assert (later["same"] != later["changed"]).any()  # fold 1's training bars did change
    pd.testing.assert_frame_equal(params["same"], params["changed"])


def test_trials_without_any_difference_give_no_pbo(inp, tmp_path):
    """risk_pct does nothing under fraction sizing: three identical trials gave PBO 1.0
    (tied out-of-sample ranks read as "certainly overfit") and a DSR over 3 trials."""
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0", *_space(
        tmp_path, "execution.risk_pct: [0.01, 0.02, 0.03]\n"))) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["n_valid"] == 3 and best["dsr"] is None and best["pbo"] is None
    assert any("counted once" in n for n in best["overfit"]["notes"])


def test_identical_daily_returns_count_once_in_dsr_and_pbo():
    from tandem.backtest.sweep.driver import overfit_stats

    rng = np.random.default_rng(0)
    x, y, z = (rng.normal(0.001, 0.01, 64) for _ in range(3))
    ref = overfit_stats({0: x, 1: y, 3: z}, 1)
    got = overfit_stats({0: x, 1: y, 2: y.copy(), 3: z, 4: z.copy()}, 1)
    assert got["dsr"]["n_trials"] == ref["dsr"]["n_trials"] == 3
    assert got["dsr"]["dsr"] == ref["dsr"]["dsr"] and got["pbo"]["pbo"] == ref["pbo"]["pbo"]
    # the chosen trial stands for its group, whichever trial number it has
    assert overfit_stats({0: x, 1: y, 2: y.copy(), 3: z}, 2)["dsr"]["dsr"] == ref["dsr"]["dsr"]


def test_a_sweep_into_a_used_out_leaves_no_file_of_the_previous_one(inp, tmp_path):
    """A second sweep into the same --out without valid trials left the first sweep's
    daily_returns.parquet (and plots) beside its own results: DSR/PBO redone from that
    folder used another sweep's returns."""
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0", "--walk-forward", "2", "--train", "5d",
                           "--test", "2d", "--warmup-bars", "48", *_space(
                               tmp_path, "entry_threshold: [0.05, 0.1]\n"))) == 0
    first = {p.name for p in out.iterdir()}
    assert {"daily_returns.parquet", "sweep_heatmap.png", "sweep_is_oos.png",
            "sweep_equity.png"} <= first
    assert main(sweep_args(inp, out, "--workers", "0", *ALL_INVALID_DRAWS, *_space(
        tmp_path, ENTRY_EXIT_RANGES))) == 0  # every draw has entry below exit
    assert sorted(p.name for p in out.iterdir()) == [
        "best.json", "parts", "results.parquet", "sweep.html"]


def test_trials_beyond_the_cap_is_a_usage_error(inp, tmp_path, capsys):
    """Random trials are drawn up front: --trials 10000000000 hung without a word."""
    from tandem.backtest.sweep.cli import MAX_TRIALS
    from tandem.backtest.sweep.space import MAX_GRID_TRIALS

    assert MAX_TRIALS == MAX_GRID_TRIALS
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(sweep_args(inp, out, "--search", "random", "--trials", "10000000000"))
    assert exc.value.code == 2 and "must be <= 1,000,000" in capsys.readouterr().err
    assert not out.exists()


def test_one_fold_walk_forward_prints_its_out_of_sample_figure(inp, tmp_path, capsys):
    """--walk-forward 1 printed the in-sample objective only (fold lines needed two folds)."""
    capsys.readouterr()
    assert main(sweep_args(inp, tmp_path / "out", "--workers", "0", "--walk-forward", "1",
                           "--train", "5d", "--test", "3d", "--warmup-bars", "48", *_space(
                               tmp_path, "entry_threshold: [0.05, 0.1]\n"))) == 0
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    fold = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("fold 0")]
    assert len(fold) == 1 and f"trial {best['trial']}" in fold[0] and "OOS" in fold[0]


def test_summary_counts_valid_trials_whose_objective_cannot_win():
    """A valid trial with an infinite profit factor (no losing trade) or none at all never
    wins; the summary says how many, instead of leaving "inf" to look like the best."""
    import numpy as np
    import pandas as pd
    from tandem.backtest.sweep.cli import _undefined_objectives

    results = pd.DataFrame({"fold": [0, 0, 0, 0, 1], "valid": [True, True, True, False, True],
                            "is_profit_factor": [np.inf, 1.5, np.nan, np.inf, np.inf]})
    assert _undefined_objectives(results, "profit_factor") == 2  # fold 0, valid: inf and NaN


def test_a_field_without_effect_is_named_not_presented_as_a_finding(inp, tmp_path, capsys):
    """A take-profit given as 5 (500 %: never reached) and risk_pct under fraction sizing
    changed no trial's numbers; the lowest trial of the tie won and its values were
    reported (and written) as the best ones, exit 0 without a word."""
    out = tmp_path / "out"
    space = _space(tmp_path, "exit_rules.take_profit_pct: [5, 10]\n"
                             "execution.risk_pct: [0.01, 0.02]\n"
                             "entry_threshold: [0.05, 0.2]\n")
    assert main(sweep_args(inp, out, "--workers", "0", *space)) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["no_effect"] == ["exit_rules.take_profit_pct", "execution.risk_pct"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("no effect"))
    assert "exit_rules.take_profit_pct, execution.risk_pct:" in line
    # Independently: the trials differing only in those fields have equal statistics,
    # and the ones differing in entry_threshold do not.
    df = pd.read_parquet(out / "results.parquet")
    stats = [c for c in df.columns if c.startswith("is_") and c not in ("is_start", "is_end")]
    for _, g in df.groupby("param.entry_threshold"):
        assert len(g) == 4 and (g[stats].nunique(dropna=False) == 1).all()
    assert df.groupby("param.entry_threshold")["is_n_fills"].first().nunique() == 2


def test_no_effect_needs_trials_that_differ_in_that_field_alone():
    """Random draws of continuous values never repeat the other fields: nothing is claimed."""
    from tandem.backtest.sweep.driver import no_effect_fields
    from tandem.backtest.sweep.evaluate import stat_columns
    from tandem.backtest.sweep.space import parse_dim

    dims = [parse_dim("entry_threshold", {"low": 0.0, "high": 0.3}),
            parse_dim("execution.risk_pct", [0.01, 0.02])]
    params = {0: {"entry_threshold": 0.1, "execution.risk_pct": 0.01},
              1: {"entry_threshold": 0.2, "execution.risk_pct": 0.02}}
    df = pd.DataFrame({"trial": [0, 1], "fold": [0, 0], "valid": [True, True]})
    for c in stat_columns():
        df[c] = 1.0  # equal numbers, yet no pair differs in one field alone
    assert no_effect_fields(df, dims, params) == []
    params[1]["entry_threshold"] = 0.1  # now they differ in risk_pct only
    assert no_effect_fields(df, dims, params) == ["execution.risk_pct"]
    df.loc[1, "is_sharpe"] = 2.0
    assert no_effect_fields(df, dims, params) == []


@pytest.mark.parametrize(("space", "field", "value"), [
    ("exit_rules.stop_loss_pct: [0.02, 5]\n", "exit_rules.stop_loss_pct", "5"),
    ("exit_rules.stop_loss_pct: {low: 2, high: 10, step: 1}\n", "exit_rules.stop_loss_pct", "2"),
    ("execution.size_pct: {low: 0.5, high: 1.5}\n", "execution.size_pct", "1.5"),
    ("exit_rules.exit_on_signal: [0, 1]\n", "exit_rules.exit_on_signal", "0"),
    ("portfolio.rebalance_every: [1d, 24h]\n", "portfolio.rebalance_every", "'24h'"),
    ("mtf.weights.4h: [1.0, -2.0]\n", "mtf.weights.4h", "-2.0"),
    ("mtf.weights.4h: [1.0, true]\n", "mtf.weights.4h", "True"),
    # portfolio weighting settings: a name that does not exist, a window of 0 bars, a cap
    # above the 2 a turnover can reach
    ("portfolio.weighting: [equal, black_litterman]\n", "portfolio.weighting",
     "'black_litterman'"),
    ("portfolio.lookback: [0, 24]\n", "portfolio.lookback", "0"),
    ("portfolio.lookback: {low: 1, high: 48, step: 1}\n", "portfolio.lookback", "1"),
    ("portfolio.turnover_cap: [0.5, 3]\n", "portfolio.turnover_cap", "3"),
    ("portfolio.band: [0.0, 5]\n", "portfolio.band", "5"),
    # refused with every value of the other swept fields (the base max_weight is 0.25)
    ("portfolio.min_weight: [0.1, 0.3]\n", "portfolio.min_weight", "0.3"),
    ("portfolio.min_weight: [0.3]\nportfolio.max_weight: [0.1, 0.25]\n",
     "portfolio.min_weight", "0.3"),
    ("portfolio.min_weight: {low: 0.0, high: 0.5, step: 0.1}\n", "portfolio.min_weight",
     "0.5"),
    ("entry_threshold: [-0.5, 0.1]\n", "entry_threshold", "-0.5"),  # exit is -0.1
    # a continuous range: judged by the points between its ends (0.375 of 0 .. 0.5)
    ("portfolio.min_weight: {low: 0.0, high: 0.5}\n", "portfolio.min_weight", "0.375"),
])
def test_a_value_the_manifest_refuses_by_itself_is_exit_2_before_any_work(
        inp, tmp_path, capsys, space, field, value):
    """A stop-loss of 5 meant as 5 %, 0/1 for a true/false field: every trial holding the
    value was an invalid row, found after the whole sweep, exit 0 (a winner among the other
    values, or none)."""
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0", *_space(tmp_path, space))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{field}: value {value} is refused by the manifest" in err[0], err
    assert not out.exists()


def test_a_cross_field_value_is_refused_only_when_every_other_value_refuses_it(inp):
    """min_weight 0.3 with max_weight [0.2, 0.5]: valid with 0.5, so it stays, and the trial
    pairing it with 0.2 is an invalid row (the model's message). A min_variance lookback
    shorter than the asset count is refused only when every swept weighting needs it."""
    from tandem.backtest.sweep.space import SpaceError, parse_space, trial_profile
    from tandem.core.manifest import load_manifest

    base = load_manifest(inp["manifest"]).profile("t")  # 3 assets, max_weight 0.25
    dims = parse_space({"portfolio.min_weight": [0.1, 0.3],
                        "portfolio.max_weight": [0.2, 0.5]}, base)
    assert [d.path for d in dims] == ["portfolio.min_weight", "portfolio.max_weight"]
    prof, err = trial_profile(base, {"portfolio.min_weight": 0.3, "portfolio.max_weight": 0.2})
    assert prof is None and "0.3 is above portfolio.max_weight 0.2" in err
    parse_space({"portfolio.weighting": ["equal", "min_variance"], "portfolio.lookback": [2, 24]},
                base)
    with pytest.raises(SpaceError) as exc:
        parse_space({"portfolio.weighting": ["min_variance"], "portfolio.lookback": [2, 24]},
                    base)
    msg = str(exc.value)
    assert msg.startswith("space: portfolio.lookback: value 2 is refused by the manifest: "
                          "portfolio.lookback: 2 bars of returns are fewer than the 3 assets")
    assert msg.endswith("(with every value of the other swept fields)") and "\n" not in msg


def test_lookback_ranges_give_whole_numbers(inp):
    """portfolio.lookback takes whole bars: a range without a step gave floats to random and
    TPE, every one an invalid trial (the model is strict); a fractional step is refused."""
    from tandem.backtest.sweep.search import TpeSearch, random_trials
    from tandem.backtest.sweep.space import SpaceError, parse_space
    from tandem.core.manifest import load_manifest

    base = load_manifest(inp["manifest"]).profile("t")
    for spec in ({"low": 24, "high": 96}, {"low": 24, "high": 96, "log": True}):
        (dim,) = parse_space({"portfolio.lookback": spec}, base)
        assert dim.integer
        for trials in (random_trials([dim], 40, 3), TpeSearch([dim], 3).ask(16)):
            v = [t["portfolio.lookback"] for t in trials]
            assert all(type(x) is int and 24 <= x <= 96 for x in v) and len(set(v)) > 3
    with pytest.raises(SpaceError, match="portfolio.lookback: takes whole numbers; 'step' 12.5"):
        parse_space({"portfolio.lookback": {"low": 24, "high": 96, "step": 12.5}}, base)
    # the other numeric fields stay continuous
    (dim,) = parse_space({"portfolio.min_weight": {"low": 0, "high": 0.2}}, base)
    assert not dim.integer


def test_lookback_under_the_score_rule_has_no_effect(tmp_path, capsys):
    """The score weighting uses no return window: lookback changed nothing (also against
    the default 60, which skips core.weighting altogether) and is named as such."""
    inp = portfolio_inputs(tmp_path / "in", {"max_weight": 0.5, "rebalance_every": "4h"})
    out = tmp_path / "out"
    space = _space(tmp_path, "portfolio.lookback: [24, 60]\nentry_threshold: [0.05, 0.2]\n")
    assert main(sweep_args(inp, out, "--workers", "0", *space)) == 0
    best = json.loads((out / "best.json").read_text())
    assert best["no_effect"] == ["portfolio.lookback"]
    assert "no effect     portfolio.lookback:" in capsys.readouterr().out
    df = pd.read_parquet(out / "results.parquet")
    assert df["valid"].all() and df["is_n_fills"].gt(0).all()


def test_bounds_a_continuous_draw_never_reaches_are_not_refused(inp, tmp_path):
    """{low: 0, high: 1} for a fraction that must be > 0 (size_pct) or < 1 (stop_loss_pct)
    is a natural range: no draw lands on the bound."""
    space = _space(tmp_path, "execution.size_pct: {low: 0, high: 1}\n"
                             "exit_rules.stop_loss_pct: {low: 0, high: 1}\n")
    assert main(sweep_args(inp, tmp_path / "out", "--workers", "0", "--search", "random",
                           "--trials", "3", *space)) == 0


def _cscv_by_total_return(perf: np.ndarray, s: int) -> float:
    """PBO by the paper's steps, ranking by compounded return (a plain loop, no shortcuts)."""
    from itertools import combinations

    from scipy.stats import rankdata

    perf = perf[len(perf) % s:]
    blocks = np.split(np.arange(len(perf)), s)
    n = perf.shape[1]
    below = []
    for half in combinations(range(s), s // 2):
        ins = np.concatenate([blocks[b] for b in half])
        oos = np.concatenate([blocks[b] for b in range(s) if b not in half])
        best = int(np.argmax(np.prod(1 + perf[ins], axis=0)))
        w = rankdata(np.prod(1 + perf[oos], axis=0))[best] / (n + 1)
        below.append(np.log(w / (1 - w)) <= 0)
    return float(np.mean(below))


def test_pbo_ranks_by_the_sweeps_objective(inp, tmp_path):
    """PBO judges how the sweep chose; a total_return sweep's PBO was computed ranking the
    trials by Sharpe (best.json said "metric": "sharpe" and nothing else)."""
    space = _space(tmp_path, "entry_threshold: [0.0, 0.05, 0.1, 0.2]\n"
                             "exit_rules.stop_loss_pct: [0.02, 0.05]\n")
    out = tmp_path / "tr"
    assert main(sweep_args(inp, out, "--workers", "0", "--objective", "total_return",
                           *space)) == 0
    pbo = json.loads((out / "best.json").read_text())["overfit"]["pbo"]
    assert pbo["metric"] == "total_return"
    perf = pd.read_parquet(out / "daily_returns.parquet").to_numpy()
    perf = perf[:, np.sort(np.unique(perf, axis=1, return_index=True)[1])]  # distinct, in order
    assert pbo["pbo"] == pytest.approx(_cscv_by_total_return(perf, pbo["n_splits"]), abs=1e-12)
    out = tmp_path / "calmar"  # no per-period form: Sharpe, and said so
    assert main(sweep_args(inp, out, "--workers", "0", "--objective", "calmar", *space)) == 0
    overfit = json.loads((out / "best.json").read_text())["overfit"]
    assert overfit["pbo"]["metric"] == "sharpe"
    assert any("PBO ranks the trials by sharpe" in n for n in overfit["notes"])


def test_best_json_dsr_is_the_papers_formula_on_the_written_daily_returns(inp, tmp_path):
    """best.json's DSR rebuilt with scipy from daily_returns.parquet alone (the winner's
    column against the other distinct trials), walk-forward out-of-sample days included."""
    from scipy import stats

    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0", "--walk-forward", "2", "--train", "10d",
                           "--test", "6d", "--warmup-bars", "48")) == 0
    best = json.loads((out / "best.json").read_text())
    daily = pd.read_parquet(out / "daily_returns.parquet")
    assert len(daily) == 12  # two 6-day test folds, end to end
    m = daily.to_numpy()
    m = m[:, np.sort(np.unique(m, axis=1, return_index=True)[1])]
    sr = m.mean(axis=0) / m.std(axis=0, ddof=1)
    n, g = m.shape[1], 0.5772156649015329
    sr0 = np.sqrt(np.var(sr, ddof=1)) * ((1 - g) * stats.norm.ppf(1 - 1 / n)
                                         + g * stats.norm.ppf(1 - 1 / (n * np.e)))
    x = daily[str(best["trial"])].to_numpy()
    s, k = x.mean() / x.std(ddof=1), stats.kurtosis(x, fisher=False)
    dsr = stats.norm.cdf((s - sr0) * np.sqrt(len(x) - 1)
                         / np.sqrt(1 - stats.skew(x) * s + (k - 1) / 4 * s * s))
    assert best["dsr"] == pytest.approx(dsr, rel=1e-9)


def test_days_pbo_leaves_out_are_said(inp, tmp_path, capsys):
    """CSCV cuts the days into equal blocks and drops the first T mod S: 13 of 45 days were
    left out of the PBO without a word (best.json's dropped_rows only)."""
    out = tmp_path / "out"
    assert main(sweep_args(inp, out, "--workers", "0")) == 0
    best = json.loads((out / "best.json").read_text())
    pbo = best["overfit"]["pbo"]
    days = len(pd.read_parquet(out / "daily_returns.parquet"))
    assert pbo["dropped_rows"] == days % pbo["n_splits"] > 0  # this fixture drops some
    assert pbo["n_obs"] == days - pbo["dropped_rows"]
    note = f"PBO leaves out the first {pbo['dropped_rows']} of {days} days"
    assert any(n.startswith(note) for n in best["overfit"]["notes"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("PBO"))
    assert line.endswith(f"(the last {pbo['n_obs']} of {days} days)")
    assert note in (out / "sweep.html").read_text()
