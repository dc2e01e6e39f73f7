"""Hostile-user regressions for ``tandem-backtest`` (issue 16, item 11): an absurd warm-up,
an ``--out`` that cannot be written and a missing ``--candles-from`` end in ONE ``error:``
line with the right exit code — and a bad ``--out`` is refused before any work is done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tandem.backtest.cli import main

REPO = Path(__file__).resolve().parents[1]


def _rc(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects malformed values itself (exit 2)
        return int(exc.code)


def _one_error(capsys, rc: int, code: int, needle: str) -> str:
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and needle in lines[0], err
    return lines[0]


@pytest.fixture
def big_warmup_manifest(tmp_path) -> Path:
    data = json.loads((REPO / "manifest.json").read_text())
    data["profiles"]["crypto_rating_all"]["warmup_bars"] = 10**15
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_absurd_warmup_in_the_manifest_is_a_config_error(tmp_path, capsys, big_warmup_manifest):
    """10**15 warm-up bars: OutOfBoundsDatetime traceback before (the window starts ~10**11
    years ago); now the manifest is refused, naming the field and the bound."""
    rc = _rc(["run", "--manifest", str(big_warmup_manifest), "--profile", "crypto_rating_all",
              "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    line = _one_error(capsys, rc, 2, "warmup_bars")
    assert "more than 20 years" in line


def test_absurd_warmup_option_is_a_config_error(tmp_path, capsys):
    rc = _rc(["run", "--profile", "crypto_rating_all", "--warmup-bars", str(10**15),
              "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    _one_error(capsys, rc, 2, "more than 20 years")


def test_a_long_warmup_is_still_accepted(tmp_path):
    """The bound is generous: 19 years of 1h bars pass validation."""
    from tandem.backtest.runner import with_overrides
    from tandem.core.manifest import load_manifest

    prof = load_manifest(REPO / "manifest.json").profile("crypto_rating_all")
    assert with_overrides(prof, warmup_bars=166_440).warmup == 166_440


# ------------------------------------------------------------------ --out checked first


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "taken"
    path.write_text("x")
    return path


def test_run_out_is_checked_before_the_data(tmp_path, capsys, a_file):
    # --data does not exist: had the data been read first, this would be exit 1 about it.
    for out, needle in ((a_file, "is a file, not a folder"),
                        (a_file / "sub", "so no folder can be created under it")):
        rc = _rc(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "nowhere"),
                  "--out", str(out)])
        _one_error(capsys, rc, 2, needle)


def test_features_out_is_checked_before_the_data(tmp_path, capsys, a_file):
    for out, needle in ((tmp_path, "is a folder; give a file path"),
                        (a_file / "f.parquet", "so no folder can be created under it")):
        rc = _rc(["features", "--profile", "crypto_rating_all",
                  "--data", str(tmp_path / "nowhere"), "--out", str(out)])
        _one_error(capsys, rc, 2, needle)


def test_demo_out_that_is_a_file(capsys, a_file):
    _one_error(capsys, _rc(["demo", "--out", str(a_file)]), 2, "is a file, not a folder")
    assert a_file.read_text() == "x"


def test_reconcile_out_is_checked_before_the_inputs(tmp_path, capsys, a_file):
    base = ["reconcile", "--paper", str(tmp_path / "no.csv"), "--backtest",
            str(tmp_path / "no2.csv")]
    _one_error(capsys, _rc([*base, "--out", str(a_file)]), 2, "--out")
    _one_error(capsys, _rc([*base, "--markdown", str(a_file / "r.md")]), 2, "--markdown")


# ------------------------------------------------------------------ --candles-from


def test_candles_from_a_missing_or_foreign_file(tmp_path, capsys):
    base = ["run", "--profile", "crypto_rating_all", "--out", str(tmp_path / "o")]
    _one_error(capsys, _rc([*base, "--candles-from", str(tmp_path / "gone.sqlite")]), 1,
               "--candles-from")
    text = tmp_path / "text.sqlite"
    text.write_text("not a database")
    _one_error(capsys, _rc([*base, "--candles-from", str(text)]), 1, "not a daemon database")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("option", "value"), [("--from", "3000-01-01"),
                                               ("--from", "99999999999999999999"),
                                               ("--to", "9999999999999999")])
def test_dates_past_what_pandas_holds_are_usage_errors(tmp_path, capsys, option, value):
    """They passed the parser and crashed later with OutOfBoundsDatetime/OverflowError."""
    rc = _rc(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "o"), option, value])
    _one_error(capsys, rc, 2, "is outside 1970-01-01 .. 2262-04-11")


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_numpy_or_optuna_refuse_are_usage_errors(tmp_path, capsys, seed):
    """A negative seed (numpy) or one past 2**32 - 1 (Optuna's TPE) crashed with a ValueError
    traceback: in demo after its candles folder was prepared, in sweep after the data loaded."""
    out = tmp_path / "o"
    if seed == "-1":  # demo's numpy Generator takes any seed >= 0
        _one_error(capsys, _rc(["demo", "--days", "1", "--seed", seed, "--out", str(out)]), 2,
                   "--seed")
    space = tmp_path / "space.yaml"
    space.write_text("entry_threshold: [0.1, 0.2]\n")
    rc = _rc(["sweep", "--space", str(space), "--search", "tpe", "--seed", seed,
              "--data", str(tmp_path / "nowhere"), "--out", str(out)])
    _one_error(capsys, rc, 2, "--seed")
    assert not out.exists()


@pytest.mark.parametrize(("option", "value"), [("--equity-tolerance", "nan"),
                                               ("--tolerance", "-0.1"),
                                               ("--abs-tolerance", "nan")])
def test_reconcile_tolerance_nan_or_negative_is_a_usage_error(tmp_path, capsys, option, value):
    """``--equity-tolerance nan`` disabled the equity check (every comparison with NaN is
    False) and the run passed; a negative bound means nothing."""
    rc = _rc(["reconcile", "--paper", str(tmp_path / "p.csv"), "--backtest",
              str(tmp_path / "b.csv"), option, value])
    _one_error(capsys, rc, 2, f"{option} must be a number >= 0")


@pytest.mark.parametrize(("extra", "needle"), [
    (["--since", "garbage"], "--since: not a date"),
    (["--timeframe", "7x"], "--timeframe: invalid timeframe '7x'"),
    (["--timeframe", "1M"], "--timeframe 1M: months and years have no fixed length"),  # skipped months
    (["--limit", "0"], "--limit must be an integer >= 1"),
    (["--retries", "-1"], "--retries must be an integer >= 0"),  # was an AssertionError traceback
    (["--until", "2023-12-01"], "--until (2023-12-01) must be after --since"),  # was 0 bars, exit 0
    (["--symbols", "BTCUSDT"], "symbol must look like BASE/QUOTE"),
    (["--since", "1704067200"], "--since 1704067200 is an epoch in s (2024-01-01T00:00:00Z)"),
])
def test_download_options_are_checked_before_the_exchange(tmp_path, capsys, extra, needle):
    """Each was found only after the exchange answered (exit 1), or never. Port 9 on
    loopback refuses: reaching the exchange would be exit 1 naming load_markets."""
    opts = {"--symbols": "BTC/USDT", "--since": "2024-01-01", "--data": str(tmp_path / "d"),
            "--rest-url": "http://127.0.0.1:9/api/v3", "--retries": "0"}
    opts.update(zip(extra[::2], extra[1::2], strict=True))
    argv = ["download", "--no-progress", *[x for kv in opts.items() for x in kv]]
    _one_error(capsys, _rc(argv), 2, needle)
    assert not (tmp_path / "d").exists()


def test_lookahead_zero_cuts_is_a_usage_error(tmp_path, capsys):
    """``--cuts 0`` was accepted and the probe ran (and reported) 5 cuts anyway."""
    rc = _rc(["lookahead", "--cuts", "0", "--data", str(tmp_path / "nowhere")])
    _one_error(capsys, rc, 2, "--cuts: must be >= 1, got 0")


@pytest.mark.parametrize(("extra", "needle"), [
    (["--chart", "NOPE/USDT"], "--chart NOPE/USDT: not among the run's assets"),
    (["--symbols", "BTC/USDT", "--chart", "ETH/USDT"], "--chart ETH/USDT: not among"),
    (["--run-id", " "], "--run-id is empty"),
])
def test_run_chart_of_no_asset_or_empty_run_id_is_a_usage_error(tmp_path, capsys, extra, needle):
    """Both were accepted: the report dropped the chart silently; the journal got run_id ''."""
    rc = _rc(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "o"), *extra])
    _one_error(capsys, rc, 2, needle)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--from", "1612137600", "is an epoch in s (2021-02-01T00:00:00Z), not ms"),
    ("--to", "1612137600000000", "is an epoch in µs"),
])
def test_dates_as_epochs_in_another_unit_are_usage_errors(tmp_path, capsys, option, value, needle):
    """Epoch seconds were read as ms (1970-01-19): a --from before the data, so the run traded
    from the first bar with no warm-up and exited 0. Candle epochs are never guessed either."""
    rc = _rc(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "o"), option, value])
    _one_error(capsys, rc, 2, needle)


def test_features_out_inside_the_data_is_refused(tmp_path, capsys):
    """``--out`` = the universe file read (or a store's candle file) overwrote the candles."""
    universe = tmp_path / "binance_USDT_1h_universe.parquet"
    universe.write_bytes(b"PAR1 candles")
    store_file = tmp_path / "store" / "binance" / "BTC-USDT" / "1h.parquet"
    store_file.parent.mkdir(parents=True)
    store_file.write_bytes(b"PAR1 candles")
    for data, out in ((universe, universe), (store_file.parents[2], store_file)):
        rc = _rc(["features", "--profile", "crypto_rating_all", "--data", str(data),
                  "--out", str(out)])
        _one_error(capsys, rc, 2, "is inside the candle data")
        assert out.read_bytes() == b"PAR1 candles"
