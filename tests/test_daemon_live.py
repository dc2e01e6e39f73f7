"""The daemon over real sockets with the real ccxt.pro client against the emulator: fills
equal the engine's batch run on the same candles (discrete and portfolio modes)."""

from __future__ import annotations

import pytest
from tandem.daemon.state import StateStore

from tests.test_daemon_support import (
    TF_MS,
    assert_candles_exactly_once,
    assert_journal_equal,
    batch_fills,
    replay,
    replay_window,
    sample_market,
    small_profile,
)


@pytest.mark.parametrize("mode", ["discrete", "portfolio"])
async def test_replay_fills_equal_batch(tmp_path, mode):
    profile = small_profile(mode)
    market = sample_market()
    db = tmp_path / "d.sqlite"
    daemon = await replay(profile, market, db)
    t0, end = replay_window(market)
    with StateStore(db) as st:
        paper = st.fills_frame()
        assert st.t0 == t0 and st.last_ts == end - TF_MS
        assert set(paper["source"]) <= {"paper"}
    batch = batch_fills(profile, market, t0, end)
    assert len(batch) > 0, "the sample must trade, or parity proves nothing"
    assert_journal_equal(paper, batch)
    assert_candles_exactly_once(db, market, profile.assets, t0 - profile.warmup * TF_MS, end)
    assert daemon.live and daemon.late == 0
