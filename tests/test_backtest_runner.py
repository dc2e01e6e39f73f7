"""tandem.backtest.runner as a library: input kinds, default range, short warm-up, overrides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.backtest.demo_data import generate_candles, write_csv_folder
from tandem.backtest.runner import ConfigError, run_backtest, with_overrides

SYMS = ["BTC/USDT", "DOGE/USDT"]
HOUR = 3_600_000
WARM = 24 * 20


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from tandem.core.manifest import load_manifest
    from tandem.core.store import CsvFolderSource

    folder = tmp_path_factory.mktemp("c")
    write_csv_folder(generate_candles(SYMS, start="2024-01-01", n_bars=24 * 60, seed=5), folder)
    man = load_manifest(Path(__file__).resolve().parents[1] / "manifest.json")
    prof = with_overrides(man.profile("crypto_rating_all"), warmup_bars=WARM)
    return prof, CsvFolderSource(folder, timeframe="1h")


def test_default_range_starts_after_the_warmup(setup):
    prof, src = setup
    res = run_backtest(prof, src, symbols=SYMS, report=False)
    first = pd.Timestamp("2024-01-01", tz="UTC").value // 10**6
    assert res.ts_close[0] == first + WARM * HOUR + HOUR
    assert res.meta["warmup_bars_available"] == WARM
    assert len(res.equity) == 24 * 60 - WARM


def test_aligned_candles_input_equals_a_source(setup):
    prof, src = setup
    a = src.load_aligned(SYMS, "1h")
    r1 = run_backtest(prof, src, "2024-01-25", "2024-02-20", symbols=SYMS, report=False)
    r2 = run_backtest(prof, a, "2024-01-25", "2024-02-20", symbols=SYMS, report=False)
    assert len(r1.fills) > 0
    pd.testing.assert_frame_equal(r1.fills, r2.fills)
    np.testing.assert_array_equal(r1.equity.to_numpy(), r2.equity.to_numpy())


def test_short_warmup_is_reported_not_hidden(setup):
    prof, src = setup
    res = run_backtest(prof, src, "2024-01-05", None, symbols=SYMS, report=False)
    assert res.meta["warmup_bars"] == WARM
    assert res.meta["warmup_bars_available"] == 4 * 24  # only four days exist before --from


def test_short_warmup_counts_bars_before_the_first_tradable_one(setup):
    """--from between two bar opens: the first tradable bar is the next open (00:00 + 1 h),
    and the warm-up available is every bar before it. It was counted up to --from itself,
    one bar short (stats.json's warmup_bars_available 96 for 97 bars), as the log said."""
    prof, src = setup
    res = run_backtest(prof, src, "2024-01-05T00:30", None, symbols=SYMS, report=False)
    assert res.meta["first_tradable_bar"] == "2024-01-05T01:00:00+00:00"
    assert res.meta["warmup_bars_available"] == 4 * 24 + 1


def test_overrides_are_validated():
    from tandem.core.manifest import load_manifest

    prof = load_manifest(Path(__file__).resolve().parents[1] / "manifest.json").profile(
        "crypto_rating_all")
    assert with_overrides(prof, mode="portfolio").execution.mode == "portfolio"
    assert with_overrides(prof, mode="portfolio").name == "crypto_rating_all"
    data = prof.model_dump(mode="json")
    data["execution"]["long_short"] = True
    from tandem.core.manifest import parse_manifest

    ls = parse_manifest({"profiles": {"ls": data}}).profile("ls")
    with pytest.raises(ConfigError, match="long"):
        with_overrides(ls, mode="portfolio")  # portfolio mode is long-only


@settings(max_examples=60, deadline=None)
@given(
    floats=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30),
    text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=5),
)
def test_csv_writer_is_byte_identical_to_pandas(tmp_path_factory, floats, text) -> None:
    """trades.csv / equity.csv: the csv writer prints what ``DataFrame.to_csv`` printed."""
    from tandem.backtest.runner import _write_frame_csv

    n = len(floats)
    frame = pd.DataFrame({
        "f": floats,
        "i": np.arange(n, dtype=np.int64),
        "s": pd.array([text if k % 3 else None for k in range(n)], dtype="str"),
        "o": [text if k % 2 else "a,\"b\"" for k in range(n)],
        "b": np.arange(n) % 2 == 0,
    })
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    _write_frame_csv(frame, path)
    assert path.read_bytes() == frame.to_csv(index=False).encode()
