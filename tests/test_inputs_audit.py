"""A hostile user's inputs to ``tandem-backtest run``/``download``: each case here once ended
in exit 0 with numbers that meant something else than the user asked for, or in an unclear
error. Outputs are checked against pandas/numpy computed here, never against the code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.test_hostile_backtest import _one_error, _rc

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--from", "20210201", "for the date 2021-02-01 write 2021-02-01"),
    ("--to", "20210301", "before 1980"),
    ("--from", "0", "is 1970-01-01T00:00:00Z as epoch ms, before 1980"),
])
def test_small_integers_are_not_read_as_1970_epoch_ms(tmp_path, capsys, option, value, needle):
    """``--from 20210201`` (a compact date) was epoch ms 20,210,201 = 1970-01-01T05:36Z:
    before the data, so the run traded from the first bar with no warm-up and exited 0."""
    rc = _rc(["run", "--profile", "crypto_rating_all", "--data", str(tmp_path / "nowhere"),
              "--out", str(tmp_path / "o"), option, value])
    _one_error(capsys, rc, 2, needle)
    assert not (tmp_path / "o").exists()


def test_download_since_a_compact_date_is_refused_before_the_exchange(tmp_path, capsys):
    """It downloaded from 1970 (the whole history) into the store."""
    argv = ["download", "--no-progress", "--symbols", "BTC/USDT", "--since", "20240101",
            "--data", str(tmp_path / "d"), "--rest-url", "http://127.0.0.1:9/api/v3",
            "--retries", "0"]
    _one_error(capsys, _rc(argv), 2, "for the date 2024-01-01 write 2024-01-01")
    assert not (tmp_path / "d").exists()


def _manifest(tmp_path: Path, core: list[str], universe: list[str] | None = None, **fields) -> Path:
    """A small profile ``t``: 1h base + 4h, a short warm-up (tests stay fast)."""
    data = json.loads((REPO / "manifest.json").read_text())
    p = data["profiles"]["crypto_rating_all"]
    p.update(core_assets=core, universe=universe or core, timeframes=["1h", "4h"],
             mtf={"mode": "wide", "weights": {"1h": 1.0, "4h": 2.0}, "min_agree": None},
             warmup_bars=60)
    for path, value in fields.items():
        node = p
        *head, last = path.split("__")
        for key in head:
            node = node[key]
        node[last] = value
    data["profiles"] = {"t": p}
    data["default_profile"] = "t"
    out = tmp_path / "manifest.json"
    out.write_text(json.dumps(data))
    return out


def _real_1h(shared_data: Path, base: str, rows: slice) -> pd.DataFrame:
    return pd.read_csv(shared_data / f"binance_{base}-USDT_1h.csv").iloc[rows]


def test_a_csv_with_a_header_and_no_rows_is_a_data_error(tmp_path, capsys, shared_data):
    """The asset ran as present with no bar at all ("2 assets", exit 0), while a missing file
    is exit 1: an empty file is the same missing data."""
    d = tmp_path / "d"
    d.mkdir()
    _real_1h(shared_data, "ETH", slice(0, 300)).to_csv(d / "binance_ETH-USDT_1h.csv", index=False)
    _real_1h(shared_data, "BTC", slice(0, 0)).to_csv(d / "binance_BTC-USDT_1h.csv", index=False)
    rc = _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
              "--data", str(d), "--out", str(tmp_path / "o"), "--no-report"])
    _one_error(capsys, rc, 1, "binance_BTC-USDT_1h.csv: a header and no candle rows")
    assert not (tmp_path / "o").exists()


def test_assets_without_a_bar_in_the_range_are_named(tmp_path, capsys, shared_data):
    """A universe asset listed after --to (LPT/USDT: 2021-05-28) was counted among the run's
    "3 assets" without a word; it is kept (late listings are normal) and named."""
    u = pd.read_parquet(shared_data / "binance_USDT_1h_universe.parquet",
                        filters=[("symbol", "in", ["BTC/USDT", "ETH/USDT", "LPT/USDT"])])
    lo, hi = pd.Timestamp("2021-02-01", tz="UTC"), pd.Timestamp("2021-02-10", tz="UTC")
    t = pd.to_datetime(u.timestamp, unit="ms", utc=True)
    u = u[((t >= lo - pd.Timedelta(days=5)) & (t < hi)) | (u.symbol == "LPT/USDT")]
    t = pd.to_datetime(u.timestamp, unit="ms", utc=True)
    u = u[(u.symbol != "LPT/USDT") | (t < pd.Timestamp("2021-06-05", tz="UTC"))]
    path = tmp_path / "binance_USDT_1h_universe.parquet"
    u.to_parquet(path)
    ts = pd.to_datetime(u.timestamp, unit="ms", utc=True)
    expected = [s for s in ["BTC/USDT", "ETH/USDT", "LPT/USDT"]
                if not ((u.symbol == s) & (ts >= lo) & (ts < hi)).any()]
    assert expected == ["LPT/USDT"]
    m = _manifest(tmp_path, ["BTC/USDT", "ETH/USDT"], ["BTC/USDT", "ETH/USDT", "LPT/USDT"])
    rc = _rc(["run", "--manifest", str(m), "--data", str(path), "--from", "2021-02-01",
              "--to", "2021-02-10", "--out", str(tmp_path / "o"), "--no-report"])
    out = capsys.readouterr().out
    assert rc == 0
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["assets_without_bars"] == expected
    assert stats["trades_per_asset"]["LPT/USDT"] == 0
    assert "3 assets (1 without bars: LPT/USDT)" in out


def _small_universe(shared_data: Path, n_bars: int = 200) -> pd.DataFrame:
    u = pd.read_parquet(shared_data / "binance_USDT_1h_universe.parquet",
                        filters=[("symbol", "in", ["BTC/USDT", "ETH/USDT"])])
    u = u[u.timestamp < u.timestamp.min() + n_bars * 3_600_000].reset_index(drop=True)
    u["symbol"] = u.symbol.astype(str)
    return u


@pytest.mark.parametrize("respell", [lambda s: s.replace("/", ""), str.lower])
@pytest.mark.parametrize("every", [2, 97])
def test_a_universe_asset_spelled_two_ways_is_named(tmp_path, capsys, shared_data, respell, every):
    """Half the rows as BTCUSDT: the BTC/USDT rows were refused as "not 1h data" (smallest
    spacing 2h); one row in 97: that bar was silently missing. Refused, naming both."""
    u = _small_universe(shared_data)
    rows = u.index[(u.symbol == "BTC/USDT")][::every]
    u.loc[rows, "symbol"] = u.loc[rows, "symbol"].map(respell)
    path = tmp_path / "binance_USDT_1h_universe.parquet"
    u.to_parquet(path)
    rc = _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
              "--data", str(path), "--out", str(tmp_path / "o"), "--no-report"])
    line = _one_error(capsys, rc, 1, "BTC/USDT is spelled 2 ways: 'BTC/USDT'")
    assert f"{respell('BTC/USDT')!r} ({len(rows)} rows)" in line
    assert not (tmp_path / "o").exists()


def test_a_universe_without_its_time_column_names_what_it_has(tmp_path, capsys, shared_data):
    """It said "missing ['ts']" for a file whose time column is named ``date``."""
    path = tmp_path / "binance_USDT_1h_universe.parquet"
    _small_universe(shared_data).rename(columns={"timestamp": "date"}).to_parquet(path)
    rc = _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
              "--data", str(path), "--out", str(tmp_path / "o"), "--no-report"])
    line = _one_error(capsys, rc, 1, "missing timestamp (or ts); found ")
    assert "date" in line


def _csv_folder(tmp_path: Path, shared_data: Path, n_bars: int = 300) -> Path:
    d = tmp_path / "d"
    d.mkdir(exist_ok=True)
    for base in ("BTC", "ETH"):
        _real_1h(shared_data, base, slice(0, n_bars)).to_csv(d / f"binance_{base}-USDT_1h.csv",
                                                             index=False)
    return d


def test_the_summary_shows_the_fee_as_the_engine_charges_it(tmp_path, capsys, shared_data):
    """``fee_rate: 0.075`` meant as Binance's 0.075 % is 7.5 % of every fill (a month of
    real candles: -30 %, exit 0) and nothing said so. The summary shows the rate each fill
    paid, checked here against fills.csv."""
    m = _manifest(tmp_path, ["BTC/USDT", "ETH/USDT"], execution__fee_rate=0.075)
    assert _rc(["run", "--manifest", str(m), "--data", str(_csv_folder(tmp_path, shared_data)),
                "--out", str(tmp_path / "o"), "--no-report"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("costs"))
    fills = pd.read_csv(tmp_path / "o" / "fills.csv")
    assert len(fills) > 0
    paid = fills.fee / (fills.qty * fills.price)
    assert paid.round(12).unique().tolist() == [0.075]
    assert line.split(None, 1)[1] == ("fee 7.5% of each fill's value · slippage 5 bps (0.05%) "
                                      "· min trade 10")


def test_download_since_before_the_store_says_what_was_not_fetched(tmp_path, capsys, shared_data):
    """The store held 2020-12-05 → ...; ``--since 2020-12-01`` printed "0 new bars", exit 0,
    and the user believed the four days before were stored. A download extends a store
    forward only (its stated rule): now a note names the bars it did not fetch."""
    from tandem.core.store import CandleStore, CsvFolderSource
    from tandem.daemon.emulator import MarketData

    from tests.emulator_fixtures import emulator_in_thread

    frame = CsvFolderSource(shared_data, exchange="binance").read("XRP/USDT", timeframe="1h")
    frame = frame.iloc[:300].reset_index(drop=True)
    real = MarketData.from_frames({"XRP/USDT": frame}, "1h")
    first_stored = int(frame.ts[96])  # 2020-12-05T00:00Z
    with emulator_in_thread(real, start=real.end_ts + 1) as emu:
        base = ["download", "--no-progress", "--symbols", "XRP/USDT", "--data",
                str(tmp_path / "d"), "--rest-url", emu.rest_url]
        assert _rc([*base, "--since", str(first_stored)]) == 0
        capsys.readouterr()
        assert _rc([*base, "--since", "2020-12-01T00:30"]) == 0
        out = capsys.readouterr()
        assert "XRP/USDT: 0 new bars" in out.out
        assert ("note: XRP/USDT: --since 2020-12-01T01:00:00Z is before its first stored bar "
                "2020-12-05T00:00:00Z") in out.err
        assert _rc([*base, "--since", "2020-12-05"]) == 0  # not before: no note
        assert "note:" not in capsys.readouterr().err
    stored = CandleStore(tmp_path / "d", timeframe="1h").read("XRP/USDT")
    pd.testing.assert_frame_equal(stored, frame.iloc[96:].reset_index(drop=True))


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("exit_rules__stop_loss_pct", 5, "'exit_rules.stop_loss_pct': Input should be less than 1 "
                                     "(got 5); it is a fraction (0.05 = 5 %)"),
    ("execution__fee_rate", 0.1, "'execution.fee_rate': Input should be less than 0.1 (got 0.1); "
                                 "it is a fraction"),
])
def test_a_percentage_in_a_fraction_field_says_so(tmp_path, capsys, field, value, needle):
    """``stop_loss_pct: 5`` said only "less than 1 (got 5)"; ``fee_rate: 0.1`` (meant as
    0.1 %) said "less than 0.1" without the value. Exit 2, nothing written."""
    m = _manifest(tmp_path, ["BTC/USDT"], **{field: value})
    rc = _rc(["run", "--manifest", str(m), "--data", str(tmp_path), "--out",
              str(tmp_path / "o")])
    _one_error(capsys, rc, 2, needle)
    assert not (tmp_path / "o").exists()


def test_iso_times_with_and_without_an_offset_in_one_file_are_refused(tmp_path, capsys,
                                                                      shared_data):
    """Rows in ``+09:00`` with every third row naive Tokyo time: the naive rows read as UTC
    (the rule), moved by nine hours onto other bars ("candle_duplicates", first row wins)
    and the run exited 0 on bars that were not the file's. Refused like mixed epoch units."""
    d = _csv_folder(tmp_path, shared_data)
    path = d / "binance_ETH-USDT_1h.csv"
    frame = pd.read_csv(path)
    tokyo = pd.to_datetime(frame.timestamp, unit="ms", utc=True).dt.tz_convert("Asia/Tokyo")
    text = tokyo.map(lambda t: t.isoformat()).astype(object)
    text.iloc[2::3] = tokyo.iloc[2::3].dt.strftime("%Y-%m-%dT%H:%M:%S")
    frame.assign(timestamp=text).to_csv(path, index=False)
    rc = _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
              "--data", str(d), "--out", str(tmp_path / "o"), "--no-report"])
    line = _one_error(capsys, rc, 1, "timestamps mix ISO times with a UTC offset")
    assert f"({text.iloc[2]!r} at row 2)" in line
    assert not (tmp_path / "o").exists()
    # every row with its offset: read by it, the same bars as the epoch file
    text = tokyo.map(lambda t: t.isoformat())
    frame.assign(timestamp=text).to_csv(path, index=False)
    assert _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
                "--data", str(d), "--out", str(tmp_path / "o"), "--no-report"]) == 0


def test_a_fractional_epoch_is_named_as_the_file_writes_it(tmp_path, capsys, shared_data):
    """The message read ``timestamp np.float64(1606780800000.5) at row 0``."""
    d = _csv_folder(tmp_path, shared_data)
    path = d / "binance_BTC-USDT_1h.csv"
    frame = pd.read_csv(path)
    frame.assign(timestamp=frame.timestamp + 0.5).to_csv(path, index=False)
    rc = _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
              "--data", str(d), "--out", str(tmp_path / "o"), "--no-report"])
    _one_error(capsys, rc, 1, "timestamp 1606780800000.5 at row 0 is not a whole number")


def test_reconcile_of_two_different_profiles_is_refused(tmp_path, capsys, shared_data):
    """A paper journal of profile ``t`` against a backtest of ``u`` matched nothing and
    classified every fill as *logic* (a bug), exit 1. They share no profile: exit 2."""
    d = _csv_folder(tmp_path, shared_data)
    m = _manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])
    assert _rc(["run", "--manifest", str(m), "--data", str(d), "--out", str(tmp_path / "t"),
                "--no-report"]) == 0
    fills = pd.read_csv(tmp_path / "t" / "fills.csv", keep_default_na=False)
    assert len(fills) > 0
    other = fills.assign(profile="u", fill_id=fills.fill_id.str.replace("t:", "u:", n=1))
    other.to_csv(tmp_path / "u.csv", index=False)
    capsys.readouterr()
    rc = _rc(["reconcile", "--paper", str(tmp_path / "u.csv"), "--backtest",
              str(tmp_path / "t"), "--out", str(tmp_path / "rec")])
    _one_error(capsys, rc, 2, "holds fills of profile u and --backtest")
    assert not (tmp_path / "rec").exists()
    # the same fills under the backtest's profile: identical, exit 0
    assert _rc(["reconcile", "--paper", str(tmp_path / "t" / "fills.csv"), "--backtest",
                str(tmp_path / "t")]) == 0


@pytest.mark.parametrize(("fields", "needle"), [
    ({"initial_cash": 50.0}, "'execution.min_trade_value': 10 is more than the largest first "
                             "trade, execution.size_pct × initial_cash (fee aside) = 4.995"),
    ({"execution__sizing": "risk", "execution__risk_pct": 0.5, "exit_rules__stop_loss_pct": 0.01},
     "'execution.risk_pct': 0.5 of equity at a stop-loss of 0.01 sizes every entry at 50.05×"),
    ({"execution__mode": "portfolio", "portfolio__max_weight": 0.0005},
     "'execution.min_trade_value': 10 is more than the largest first trade, "
     "portfolio.max_weight × initial_cash = 5"),
])
def test_a_profile_that_can_never_trade_is_a_config_error(tmp_path, capsys, shared_data, fields,
                                                          needle):
    """An entry that costs more than the cash or is worth less than min_trade_value is
    skipped, never shrunk; before a first trade the equity is the initial cash, so these
    runs traded nothing, ever, and exited 0 ("trades 0") without a word why."""
    m = _manifest(tmp_path, ["BTC/USDT", "ETH/USDT"], **fields)
    rc = _rc(["run", "--manifest", str(m), "--data", str(_csv_folder(tmp_path, shared_data)),
              "--out", str(tmp_path / "o"), "--no-report"])
    _one_error(capsys, rc, 2, needle)
    assert not (tmp_path / "o").exists()


def test_a_first_trade_just_above_min_trade_value_still_trades(tmp_path, shared_data):
    """The borderline of the rule above: 10 % of 10,000 less the fee is 999.001 ≥ 999."""
    m = _manifest(tmp_path, ["BTC/USDT", "ETH/USDT"], execution__min_trade_value=999.0)
    assert _rc(["run", "--manifest", str(m), "--data", str(_csv_folder(tmp_path, shared_data)),
                "--out", str(tmp_path / "o"), "--no-report"]) == 0
    fills = pd.read_csv(tmp_path / "o" / "fills.csv")
    entries = fills[fills.reason == "entry"]
    assert len(entries) > 0 and (entries.qty * entries.price >= 999.0).all()


def test_a_hole_in_the_data_is_named_with_the_periods_it_spans(tmp_path, capsys, shared_data):
    """Bars 300-499 missing from both files: the run went on over the hole, annualized
    CAGR over the bars present (about twice the calendar figure) and said nothing. The
    summary and stats.json now give the periods spanned next to the bars."""
    d = tmp_path / "d"
    d.mkdir()
    for base in ("BTC", "ETH"):
        frame = _real_1h(shared_data, base, slice(0, 700))
        frame.drop(frame.index[300:500]).to_csv(d / f"binance_{base}-USDT_1h.csv", index=False)
    rc = _rc(["run", "--manifest", str(_manifest(tmp_path, ["BTC/USDT", "ETH/USDT"])),
              "--data", str(d), "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert rc == 0
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    page = (tmp_path / "o" / "report.html").read_text()
    assert f"{stats['n_bars']} bars of {stats['bar_periods']} periods (gaps)" in page
    ts = sorted(set().union(*(pd.read_csv(p).timestamp for p in d.glob("*.csv"))))
    traded = [t for t in ts if t >= stats["start_ts"] - 3_600_000]  # bar opens from the first
    periods = (traded[-1] - traded[0]) // 3_600_000 + 1
    assert (stats["n_bars"], stats["bar_periods"]) == (len(traded), periods)
    assert periods - len(traded) >= 200  # the hole (and the file's own gaps)
    assert f"{len(traded)} bars of {periods} periods (gaps" in out


def _tiny_csv_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "binance_BTC-USDT_1h.csv").write_text(
        "timestamp,open,high,low,close,volume\n0,1,1,1,1,1\n3600000,1,1,1,1,1\n")
    return folder


def test_download_into_a_csv_folder_is_refused(tmp_path, capsys):
    """`download --data data/` where data/ is the CSV folder the user backtests: the store
    folder it created (data/binance/) made every later `--data data/` read the downloaded
    bars only, not the CSVs: a backtest of the CSVs silently ran on a few days."""
    from tandem.core.store import CsvFolderSource, open_candles

    folder = _tiny_csv_folder(tmp_path)
    argv = ["download", "--no-progress", "--symbols", "BTC/USDT", "--since", "2024-01-01",
            "--data", str(folder), "--rest-url", "http://127.0.0.1:9/api/v3", "--retries", "0"]
    _one_error(capsys, _rc(argv), 2, "is a folder of CSV candles, not a candle store")
    assert sorted(p.name for p in folder.iterdir()) == ["binance_BTC-USDT_1h.csv"]
    assert isinstance(open_candles(folder, exchange="binance"), CsvFolderSource)


def test_the_live_daemon_does_not_make_a_csv_folder_its_candle_store(tmp_path, monkeypatch):
    """TANDEM_DATA_DIR (default ./data) is also the backtest's `--data`: where it is a CSV
    folder, the daemon stored its REST warm-up tail there as a store (data/binance/...), and
    from then on `tandem-backtest run --data data/` read only those bars, exit 0. Now the
    daemon warms up over REST and stores nothing there (a warning says so)."""
    import asyncio
    import types

    import tandem.daemon.app as app
    from tandem.core.manifest import load_manifest
    from tandem.core.settings import Settings
    from tandem.daemon import cli

    folder = _tiny_csv_folder(tmp_path)
    seen = {}

    class FakeDaemon:
        def __init__(self, cfg, stepper, ops=None):  # noqa: ANN001
            seen["store"] = cfg.candle_store

        async def run(self) -> None:
            return None

        def stop(self) -> None:
            return None

    monkeypatch.setattr(app, "Daemon", FakeDaemon)
    profile = load_manifest(REPO / "manifest.json").profile("crypto_rating_all")
    args = types.SimpleNamespace(db=tmp_path / "s.sqlite", rest_url=None, ws_url=None,
                                 grace=None, watchdog=60, export_dir=None, export_every=300,
                                 heartbeat_every=60, fresh=False)
    for data_dir, want in ((folder, None), (tmp_path / "store", tmp_path / "store")):
        data_dir.mkdir(exist_ok=True)
        assert asyncio.run(cli._run_live(args, Settings(data_dir=data_dir), profile)) == 0
        assert seen["store"] == want
    assert sorted(p.name for p in folder.iterdir()) == ["binance_BTC-USDT_1h.csv"]
