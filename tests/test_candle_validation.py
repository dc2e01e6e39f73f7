"""Issue 16, items 1-3 (and the candle parts of 11 and 13): every candle source goes through
the one policy of ``tandem.core.candles``. Each case below was accepted silently (or crashed) before.

Truth is built independently of the code under test: expected timestamps by integer
arithmetic, expected arrays by plain pandas / pyarrow reads of the same files, the bars the
real Coinbase files get wrong from ``../shared/data/README.md``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs
from tandem.core.candles import FAULTS, bar_fault, bar_fault_codes
from tandem.core.store import CandleStoreError, SymbolNotFoundError, open_candles

H = 3_600_000
T0 = 1_609_459_200_000  # 2021-01-01 00:00 UTC
N = 240
COLS = ("open", "high", "low", "close", "volume")
REPO = Path(__file__).resolve().parents[1]


def _bars(n: int = N, seed: int = 3) -> pd.DataFrame:
    """A valid 1h random walk: open = previous close, high/low around the body."""
    rng = np.random.default_rng(seed)
    c = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    o = np.r_[100.0, c[:-1]]
    return pd.DataFrame({"timestamp": T0 + np.arange(n, dtype=np.int64) * H, "open": o,
                         "high": np.maximum(o, c) * 1.004, "low": np.minimum(o, c) * 0.996,
                         "close": c, "volume": rng.uniform(1.0, 9.0, n)})


def _csv(folder: Path, frame: pd.DataFrame, name: str = "binance_BTC-USDT_1h.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    return folder


def _store_file(root: Path, frame: pd.DataFrame) -> Path:
    """A store Parquet written directly by pyarrow (as any other tool could write one)."""
    path = root / "binance" / "BTC-USDT" / "1h.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"ts": pa.array(frame["timestamp"].to_numpy(np.int64)),
                      **{k: pa.array(frame[k].to_numpy(np.float64)) for k in COLS}})
    pq.write_table(table, path)
    return root


def _load(path: Path, tf: str = "1h"):
    return open_candles(path, exchange="binance", timeframe=tf).load_aligned(["BTC/USDT"], tf)


def _same(aligned, frame: pd.DataFrame) -> None:
    """``aligned`` (one asset) holds exactly ``frame``'s rows."""
    assert aligned.ts.tolist() == frame["timestamp"].astype(np.int64).tolist()
    for k in COLS:
        np.testing.assert_array_equal(getattr(aligned, k)[:, 0], frame[k].to_numpy(np.float64))


# --------------------------------------------------------------------- 1. timestamp units


@pytest.mark.parametrize("dtype", ["datetime64[ns, UTC]", "datetime64[ms]", "datetime64[us, UTC]"])
def test_universe_typed_timestamps_are_read_by_their_unit(tmp_path, dtype):
    frame = _bars()
    long = frame.assign(symbol="BTC/USDT")
    # What pandas writes: an Arrow timestamp column (the year-52886 run of the issue).
    long["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    if "UTC" not in dtype:
        long["timestamp"] = long["timestamp"].dt.tz_localize(None)
    long["timestamp"] = long["timestamp"].astype(dtype)
    path = tmp_path / "binance_USDT_1h_universe.parquet"
    long.to_parquet(path, index=False)
    got = _load(path)
    assert got.ts[0] == T0 and np.all(np.diff(got.ts) == H)
    _same(got, frame)


@pytest.mark.parametrize(("unit", "scale"), [("s", 0.001), ("us", 1_000), ("ns", 1_000_000)])
def test_csv_epoch_units_are_detected_by_magnitude(tmp_path, unit, scale):
    frame = _bars()
    epochs = frame.assign(timestamp=(frame["timestamp"] * scale).astype(np.int64))
    _same(_load(_csv(tmp_path / unit, epochs)), frame)


def test_csv_iso_dates_are_read_as_utc(tmp_path):
    frame = _bars()
    text = frame.assign(timestamp=pd.to_datetime(frame["timestamp"], unit="ms").dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"))
    _same(_load(_csv(tmp_path, text)), frame)


@pytest.mark.parametrize(
    ("stamps", "words"),
    [
        # 1e7 + k*3600: seconds of 1970 — no date an exchange has candles for
        (10_000_000 + np.arange(N) * 3600, r"timestamp 10000000 is not an epoch in s, ms, µs or "
                                           r"ns .*as s it would be 1970-04-26"),
        # a file whose first half is in seconds and second half in ms
        (np.r_[T0 // 1000 + np.arange(N // 2) * 3600, T0 + np.arange(N // 2, N) * H],
         r"timestamps mix units: \d+ reads as s, \d+ as ms"),
    ],
)
def test_csv_impossible_or_mixed_epochs_are_refused_naming_the_unit(tmp_path, stamps, words):
    path = _csv(tmp_path, _bars().assign(timestamp=stamps))
    with pytest.raises(CandleStoreError, match=words) as err:
        _load(path)
    assert "binance_BTC-USDT_1h.csv" in str(err.value)


@pytest.mark.parametrize(("last", "words"), [
    ("total", r"timestamp 'total' at row 240 is not a number like the other rows' epochs"),
    ("2021-01-11T2x:00", r"timestamp '2021-01-11T2x:00' at row 240 is neither an epoch nor an "
                         r"ISO-8601 date"),
])
def test_csv_stray_timestamp_text_is_one_line_naming_the_row(tmp_path, last, words):
    # pandas' own ISO-8601 error spans several lines of advice: it was the message, verbatim.
    frame = _bars()
    if "T" in last:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms").dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    row = pd.DataFrame([{"timestamp": last, **{k: 1.0 for k in COLS}}])
    with pytest.raises(CandleStoreError, match=words) as err:
        _load(_csv(tmp_path, pd.concat([frame, row], ignore_index=True)))
    assert "\n" not in str(err.value) and "binance_BTC-USDT_1h.csv" in str(err.value)


# --------------------------------------------------------------------- 2. spacing, alignment


def test_5m_bars_in_a_1h_file_are_a_data_error(tmp_path):
    five = _bars().assign(timestamp=T0 + np.arange(N, dtype=np.int64) * 300_000)
    with pytest.raises(CandleStoreError) as err:
        _load(_csv(tmp_path, five))
    msg = str(err.value)
    assert "binance_BTC-USDT_1h.csv" in msg and "5m apart" in msg
    assert str(T0 + 300_000) in msg and "2021-01-01T00:05:00Z" in msg


def test_1h_bars_offset_by_30_minutes_are_a_data_error(tmp_path):
    half = _bars().assign(timestamp=T0 + 1_800_000 + np.arange(N, dtype=np.int64) * H)
    with pytest.raises(CandleStoreError) as err:
        _load(_csv(tmp_path, half))
    msg = str(err.value)
    assert "binance_BTC-USDT_1h.csv" in msg and "30m off the UTC 1h grid" in msg
    assert str(T0 + 1_800_000) in msg and "spacing found 1h" in msg


@pytest.mark.parametrize(("step_h", "smallest"), [(4, "4h"), (24, "1d")])
def test_4h_or_1d_bars_in_a_1h_file_are_a_data_error(tmp_path, step_h, smallest):
    # On the 1h grid and whole hours apart, so they passed as 1h bars with every bar a gap.
    coarse = _bars().assign(timestamp=T0 + np.arange(N, dtype=np.int64) * step_h * H)
    for source in (_csv(tmp_path / "csv", coarse), _store_file(tmp_path / "store", coarse)):
        with pytest.raises(CandleStoreError) as err:
            _load(source)
        msg = str(err.value)
        assert f"smallest spacing {smallest}" in msg and "really 1h data" in msg, msg


def test_few_gapped_bars_or_one_consecutive_pair_stay_allowed(tmp_path):
    few = _bars(19).assign(timestamp=T0 + np.arange(19, dtype=np.int64) * 2 * H)  # too few to tell
    _same(_load(_csv(tmp_path / "few", few)), few)
    sparse = _bars().assign(timestamp=T0 + np.r_[0, 1, np.arange(2, N) * 3] * H)
    _same(_load(_csv(tmp_path / "sparse", sparse)), sparse)


def test_a_gap_of_whole_bars_stays_allowed(tmp_path):
    frame = _bars().drop(index=[50, 51, 52, 120]).reset_index(drop=True)
    _same(_load(_csv(tmp_path, frame)), frame)


def test_weekly_bars_open_on_monday(tmp_path):
    monday = 1_609_718_400_000  # 2021-01-04 00:00 UTC, a Monday
    week = 7 * 24 * H
    frame = _bars(30).assign(timestamp=monday + np.arange(30, dtype=np.int64) * week)
    _same(_load(_csv(tmp_path, frame, "binance_BTC-USDT_1w.csv"), "1w"), frame)
    thursday = frame.assign(timestamp=frame["timestamp"] - 4 * 24 * H)  # the epoch's weekday
    with pytest.raises(CandleStoreError, match="off the UTC 1w grid"):
        _load(_csv(tmp_path / "thu", thursday, "binance_BTC-USDT_1w.csv"), "1w")


# --------------------------------------------------------------------- 3. bad bars


def _spoil(frame: pd.DataFrame, i: int, case: str) -> pd.DataFrame:
    f = frame.copy()
    if case == "high<low":
        f.loc[i, "high"], f.loc[i, "low"] = f.loc[i, "low"], f.loc[i, "high"]
    elif case == "close>high":
        f.loc[i, "close"] = f.loc[i, "high"] * 1.01
    elif case == "1e300 spike":
        f.loc[i, "high"] = 1e300
    elif case == "zero price":
        f.loc[i, "low"] = 0.0
    elif case == "negative price":
        f.loc[i, ["open", "low"]] = -5.0
    elif case == "NaN close":
        f.loc[i, "close"] = math.nan
    elif case == "negative volume":
        f.loc[i, "volume"] = -1.0
    return f


BAD = {
    "high<low": "high < low",
    "close>high": "close outside [low, high]",
    "1e300 spike": "spike: high > 100 x max(open, close)",
    "zero price": "price <= 0",
    "negative price": "price <= 0",
    "NaN close": "price or volume not finite",
    "negative volume": "volume < 0",
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("source", ["csv", "store"])
def test_a_bad_bar_is_dropped_and_logged_the_same_from_every_source(tmp_path, case, source):
    """The bar becomes a missing bar (its ts leaves a one-asset axis), one log line says how
    many and the first ts; a CSV and a store Parquet give the same result."""
    frame = _bars()
    bad = _spoil(frame, 77, case)
    path = _csv(tmp_path, bad) if source == "csv" else _store_file(tmp_path, bad)
    with capture_logs() as logs:
        got = _load(path)
    _same(got, frame.drop(index=77))
    events = [e for e in logs if e["event"] == "candles_rejected"]
    assert len(events) == 1
    assert events[0]["dropped"] == 1 and events[0]["first_ts"] == T0 + 77 * H
    assert events[0]["reasons"] == {BAD[case]: 1}


@pytest.mark.parametrize("source", ["csv", "store"])
def test_a_series_mostly_bad_is_refused_not_thinned(tmp_path, source):
    """High and low columns swapped: every bar fails (high < low). Dropping them all but the
    flat ones would trade a different market: the series is refused, naming the counts.
    Half the bars bad (or fewer) is still bad prints in good history: dropped and run."""
    swapped = _bars().rename(columns={"high": "low", "low": "high"})
    path = _csv(tmp_path / "c", swapped) if source == "csv" else _store_file(tmp_path / "s", swapped)
    with pytest.raises(CandleStoreError) as err:
        _load(path)
    assert f"{N} of its {N} bars fail" in str(err.value) and "high < low" in str(err.value)
    half = _bars()
    half.loc[::2, ["high", "low"]] = half.loc[::2, ["low", "high"]].to_numpy()
    path = _csv(tmp_path / "h", half) if source == "csv" else _store_file(tmp_path / "t", half)
    assert _load(path).ts.tolist() == half["timestamp"][1::2].tolist()  # the good half


def test_nan_close_store_and_csv_give_identical_arrays(tmp_path):
    bad = _spoil(_bars(), 10, "NaN close")
    a = _load(_csv(tmp_path / "csv", bad))
    b = _load(_store_file(tmp_path / "store", bad))
    for k in ("ts", *COLS):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_a_dropped_bar_is_nan_in_the_aligned_arrays_of_several_assets(tmp_path):
    frame = _bars()
    _csv(tmp_path, _spoil(frame, 30, "high<low"))
    _csv(tmp_path, _bars(seed=4), "binance_ETH-USDT_1h.csv")
    got = open_candles(tmp_path).load_aligned(["BTC/USDT", "ETH/USDT"], "1h")
    assert got.ts.tolist() == frame["timestamp"].tolist()
    assert np.isnan(got.close[30, 0]) and np.isnan(got.high[30, 0])
    assert np.isfinite(got.close[30, 1]) and np.isfinite(np.delete(got.close[:, 0], 30)).all()


def test_unsorted_store_parquet_is_sorted_and_logged(tmp_path):
    frame = _bars()
    order = np.r_[np.arange(0, 100), np.arange(150, N), np.arange(100, 150)]
    with capture_logs() as logs:
        got = _load(_store_file(tmp_path, frame.iloc[order].reset_index(drop=True)))
    _same(got, frame)
    (event,) = [e for e in logs if e["event"] == "candles_unsorted"]
    assert event["rows_out_of_order"] == 1 and event["first_ts"] == T0 + 100 * H


def test_duplicated_store_parquet_keeps_the_first_row_and_logs(tmp_path):
    frame = _bars()
    later = frame.iloc[[20, 21]].assign(close=lambda f: f["close"] * 1.001)  # conflicting
    dup = pd.concat([frame, later, frame.iloc[[40]]]).sort_values("timestamp", kind="stable")
    with capture_logs() as logs:
        got = _load(_store_file(tmp_path, dup.reset_index(drop=True)))
    _same(got, frame)
    (event,) = [e for e in logs if e["event"] == "candle_duplicates"]
    assert event["dropped"] == 3 and event["conflicting"] == 2 and event["first_ts"] == T0 + 20 * H


def test_single_bar_bad_prints_dropped_real_moves_and_wicks_kept(tmp_path):
    frame = _bars()
    f = frame.copy()
    f.loc[60, "open"] = f.loc[60, "low"] = f.loc[59, "close"] * 0.00005  # the 0.06 open
    f.loc[90, ["close", "low"]] = f.loc[90, "open"] * 0.7  # a close the next bar ignores
    f.loc[130, "low"] = f.loc[130, "close"] / 3000  # a flash-crash wick: it traded
    f.loc[170:, ["open", "high", "low", "close"]] *= 1.6  # a real jump that holds
    with capture_logs() as logs:
        got = _load(_csv(tmp_path, f))
    _same(got, f.drop(index=[60, 90]))
    (event,) = [e for e in logs if e["event"] == "candles_rejected"]
    assert event["dropped"] == 2 and event["first_ts"] == T0 + 60 * H
    assert list(event["reasons"]) == [FAULTS[-1]]


# --------------------------------------------------------------------- the real data


def test_real_binance_files_load_exactly_as_plain_pandas_reads_them(shared_data):
    names = sorted(p.name for p in shared_data.glob("binance_*-USDT_1h.csv"))
    assert names, "no binance 1h files"
    syms = [n.split("_")[1].replace("-", "/") for n in names]
    with capture_logs() as logs:
        got = open_candles(shared_data, "binance", "1h").load_aligned(syms, "1h")
    assert not [e for e in logs if e.get("log_level") == "warning"]
    for j, name in enumerate(names):
        ref = pd.read_csv(shared_data / name)
        have = ~np.isnan(got.close[:, j])
        assert got.ts[have].tolist() == ref["timestamp"].tolist()
        for k in COLS:
            np.testing.assert_array_equal(getattr(got, k)[have, j], ref[k].to_numpy(np.float64))


def test_real_universe_loads_exactly_as_pyarrow_reads_it(shared_data):
    path = shared_data / "binance_USDT_1h_universe.parquet"
    if not path.exists():
        pytest.skip("universe parquet not in the shared data")
    ref = pq.read_table(path).to_pandas()
    ref["symbol"] = ref["symbol"].astype(str)
    with capture_logs() as logs:
        got = open_candles(path).load_aligned(None, "1h")
    assert not [e for e in logs if e.get("log_level") == "warning"]
    assert sorted(got.symbols) == sorted(ref["symbol"].unique())
    for j, sym in enumerate(got.symbols):
        r = ref[ref["symbol"] == sym].sort_values("timestamp")
        have = ~np.isnan(got.close[:, j])
        assert got.ts[have].tolist() == r["timestamp"].tolist(), sym
        for k in COLS:
            np.testing.assert_array_equal(getattr(got, k)[have, j], r[k].to_numpy(np.float64))


def test_real_coinbase_bad_candles_are_exactly_the_ones_the_readme_lists(shared_data):
    """README: BTC 2017-04-15 20:00 open/low 0.06; BTC 2018-04-03 20:00 low/close 5,200; ETH
    2017-04-15 high 74.98. The real ETH flash crash of 2017-06-21 (0.10) must stay."""
    listed = {"BTC": ["2017-04-15 20:00", "2018-04-03 20:00"], "ETH": ["2017-04-15 20:00"]}
    for base, when in listed.items():
        name = f"coinbase_{base}-USD_4h.csv"
        if not (shared_data / name).exists():
            pytest.skip(f"{name} not in the shared data")
        ref = pd.read_csv(shared_data / name)
        with capture_logs() as logs:
            got = open_candles(shared_data, "coinbase", "4h").read(f"{base}/USD")
        dropped = sorted(set(ref["timestamp"]) - set(got["ts"]))
        expect = [int(pd.Timestamp(w, tz="UTC").value // 1_000_000) for w in when]
        assert dropped == expect, base
        (event,) = [e for e in logs if e["event"] == "candles_rejected"]
        assert event["dropped"] == len(expect) and event["first_ts"] == expect[0]
    eth = open_candles(shared_data, "coinbase", "4h").read("ETH/USD")
    assert eth["low"].min() < 1.0  # the flash-crash bar is still there


# --------------------------------------------------------------------- item 13: naming


def test_csv_folder_of_another_exchange_names_what_it_found_and_expects(tmp_path):
    _csv(tmp_path, _bars(), "coinbase_BTC-USD_1h.csv")
    with pytest.raises(SymbolNotFoundError) as err:
        open_candles(tmp_path, exchange="binance", timeframe="1h").read("BTC/USDT")
    msg = str(err.value)
    assert "available: none" not in msg
    assert "found: coinbase_BTC-USD_1h.csv" in msg and "binance_BTC-USDT_1h.csv" in msg


# --------------------------------------------------------------------- the live face

_px = st.one_of(st.floats(0.5, 3.0), st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e300]))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(_px, _px, _px, _px, _px), min_size=1, max_size=20))
def test_live_and_batch_faces_judge_every_bar_alike(rows):
    """``bar_fault`` (the daemon's per-bar face) == ``bar_fault_codes`` (the loaders')."""
    from tandem.daemon.feeds import candle_fault

    values = np.array(rows, dtype=np.float64)
    codes = bar_fault_codes(values)
    for i, r in enumerate(rows):
        assert FAULTS[codes[i]] == bar_fault(*r) == candle_fault([T0, *r])


def test_live_rows_off_the_grid_are_refused():
    from tandem.daemon.feeds import candle_fault

    assert candle_fault([T0 + 1_800_000, 1.0, 1.0, 1.0, 1.0, 1.0], H) == "off the timeframe grid"
    assert candle_fault([T0, 1.0, 1.0, 1.0, 1.0, 1.0], H) is None


@pytest.mark.parametrize("where", [20, -30], ids=["live", "warm-up"])
async def test_live_rest_bad_bar_is_dropped_as_missing_not_repaired(tmp_path, where):
    """The daemon's live path, real ccxt.pro against the emulator: a bar with high < low is
    untrusted on the websocket and dropped over REST (one ``rest_candles_rejected`` line); the
    engine sees it as a missing bar, exactly like the backtest's loaders do. In the warm-up
    too: its REST pages are checked as arrays, and a page with a bad bar goes row by row."""
    import io

    from tandem.daemon.emulator.market import MarketData
    from tandem.daemon.logconfig import configure_logging
    from tandem.daemon.state import StateStore

    from tests.test_daemon_support import (
        TF,
        TF_MS,
        assert_journal_equal,
        batch_fills,
        replay,
        replay_window,
        sample_market,
        small_profile,
    )

    profile = small_profile()
    market = sample_market(n_tradable=60)
    frames = {s: market.frame(s).reset_index(drop=True) for s in market.symbols}
    sym = profile.assets[0]
    t0, end = replay_window(market)
    i = int(np.searchsorted(frames[sym]["ts"].to_numpy(), t0)) + where  # live / warm-up bar
    bad_ts = int(frames[sym]["ts"][i])
    f = frames[sym].copy()
    f.loc[i, "high"], f.loc[i, "low"] = f.loc[i, "low"], f.loc[i, "high"]
    spoiled = MarketData.from_frames({**frames, sym: f}, TF)
    missing = MarketData.from_frames({**frames, sym: frames[sym].drop(index=i)}, TF)
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    try:
        db = tmp_path / "d.sqlite"
        await replay(profile, spoiled, db)
    finally:
        configure_logging("json", "WARNING")
    events = [json.loads(x) for x in buf.getvalue().splitlines() if x.startswith("{")]
    rejected = [e for e in events if e["event"] == "rest_candles_rejected"]
    assert rejected and all(e["first_ts"] == bad_ts and e["count"] == 1 for e in rejected)
    with StateStore(db) as st_:
        got = st_.fills_frame()
    import sqlite3

    con = sqlite3.connect(str(db))
    try:
        seen = {int(r[0]) for r in con.execute("SELECT ts FROM candles WHERE symbol = ?", (sym,))}
    finally:
        con.close()
    assert bad_ts not in seen and bad_ts - TF_MS in seen and bad_ts + TF_MS in seen
    assert_journal_equal(got, batch_fills(profile, missing, t0, end))


# --------------------------------------------------------------------- the CLIs: one line


def _one_asset_manifest(tmp_path: Path) -> Path:
    m = json.loads((REPO / "manifest.json").read_text())
    p = m["profiles"]["crypto_rating_all"]
    p.update(core_assets=["BTC/USDT"], universe=["BTC/USDT"], timeframes=["1h"])
    p["mtf"]["weights"] = {"1h": 1.0}
    m["profiles"], m["default_profile"] = {"one": p}, "one"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(m))
    return path


@pytest.mark.parametrize("case", ["5m in 1h", "unit", "other exchange"])
def test_backtest_and_replay_print_one_line_and_exit_1(tmp_path, capsys, case):
    from tandem.backtest.cli import main as backtest_main
    from tandem.daemon.cli import main as daemon_main

    frame = _bars()
    if case == "5m in 1h":
        data = _csv(tmp_path / "d", frame.assign(timestamp=T0 + np.arange(N) * 300_000))
    elif case == "unit":
        data = _csv(tmp_path / "d", frame.assign(timestamp=10_000_000 + np.arange(N) * 3600))
    else:
        data = _csv(tmp_path / "d", frame, "coinbase_BTC-USD_1h.csv")
    manifest = _one_asset_manifest(tmp_path)
    common = ["--manifest", str(manifest), "--data", str(data), "--warmup-bars", "50"]
    assert backtest_main(["run", *common, "--no-report", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert daemon_main(["replay", *common, "--db", str(tmp_path / "r.sqlite")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    assert not [x for x in err if not x.startswith("{")][:-1]  # only JSON log lines before it


def test_backtest_with_bad_bars_runs_and_logs(tmp_path, capsys):
    from tandem.backtest.cli import main as backtest_main

    bad = _spoil(_spoil(_bars(), 120, "zero price"), 121, "high<low")
    data = _csv(tmp_path / "d", bad)
    args = ["run", "--manifest", str(_one_asset_manifest(tmp_path)), "--data", str(data),
            "--warmup-bars", "50", "--no-report", "--out", str(tmp_path / "o")]
    assert backtest_main(args) == 0
    err = capsys.readouterr().err
    assert "candles_rejected" in err and "Traceback" not in err


def test_csv_with_a_capitalised_header_names_what_it_found(tmp_path):
    """``Timestamp,Open,...`` (another tool's header): the error says what was found and
    what a candle CSV's header is, not only ``missing ['ts', ...]``."""
    frame = _bars().rename(columns=str.capitalize)
    with pytest.raises(CandleStoreError) as err:
        _load(_csv(tmp_path, frame))
    msg = str(err.value)
    assert "missing columns ['timestamp', 'open'" in msg and "found: Timestamp, Open" in msg
    assert "header timestamp (or ts),open,high,low,close,volume" in msg


def test_duplicated_ts_keeps_the_first_valid_copy_not_a_bad_first(tmp_path):
    """A malformed first copy (high < low, NaN, negative volume) of a bar whose later copy is
    good: the good copy is kept. It used to keep the bad first copy, then drop it as bad: a
    hole where a good bar existed, exit 0."""
    frame = _bars()
    bad = frame.iloc[[20, 21, 22, 50]].copy()
    bad.loc[20, "high"] = bad.loc[20, "low"] * 0.5  # high < low
    bad.loc[21, "close"] = np.nan
    bad.loc[22, "volume"] = -1.0
    bad.loc[50, "high"] = bad.loc[50, "low"] * 0.5  # bad, and its only other copy bad too
    also_bad = bad.loc[[50]].assign(volume=-3.0)
    later_good = frame.iloc[[30]].assign(close=lambda f: f["close"] * 1.001)  # 2nd valid copy
    dup = (pd.concat([bad, frame.drop(index=[50]), also_bad, later_good])
           .sort_values("timestamp", kind="stable").reset_index(drop=True))
    with capture_logs() as logs:
        got = _load(_store_file(tmp_path, dup))
    _same(got, frame.drop(index=[50]))  # bars 20-22: their good copies; 30: its first copy
    (event,) = [e for e in logs if e["event"] == "candle_duplicates"]
    assert event["dropped"] == 5 and event["kept_later_copy"] == 3
    assert event["first_ts"] == T0 + 20 * H and "first valid" in event["kept"]
    (rejected,) = [e for e in logs if e["event"] == "candles_rejected"]
    assert rejected["dropped"] == 1 and rejected["first_ts"] == T0 + 50 * H


def test_clean_candles_duplicate_rule_on_arrays():
    """The rule on the arrays face (every loader calls it): per ts the first valid copy."""
    from tandem.core.candles import clean_candles

    good = [1.0, 2.0, 0.5, 1.5, 10.0]
    other = [1.0, 2.5, 0.5, 1.5, 11.0]
    broken = [1.0, 0.4, 0.5, 1.5, 10.0]  # high < low
    ts = np.array([0, 0, 0, H, H, 2 * H, 2 * H], dtype=np.int64)
    values = np.array([broken, good, other, good, other, broken, broken])
    got_ts, got = clean_candles(ts, values, None)
    assert got_ts.tolist() == [0, H]  # 2H: no valid copy, dropped as bad
    np.testing.assert_array_equal(got, [good, good])
