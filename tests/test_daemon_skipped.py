"""The daemon counts skipped entries as the backtest does, shows them on ``/metrics``, and a
checkpoint of the engine's old layout (before the ``S_SKIP_*`` slots) is rebuilt from the
journal, never loaded shifted.

One cheap replay (3 assets, 60 tradable 1m bars) through the emulator and the live path."""

from __future__ import annotations

import io
import json
import struct

from prometheus_client.parser import text_string_to_metric_families
from tandem.core.engine.layout import SKIP_CAUSES as ENGINE_CAUSES
from tandem.daemon.logconfig import configure_logging
from tandem.daemon.ops import Health, Metrics
from tandem.daemon.ops.metrics import SKIP_CAUSES
from tandem.daemon.ops.sampler import DaemonSampler
from tandem.daemon.state import StateStore
from tandem.daemon.strategy import stepper_factory

from tests.test_daemon_support import (
    assert_journal_equal,
    batch_run,
    make_daemon,
    replay,
    replay_window,
    sample_market,
    small_profile,
)
from tests.test_engine_skipped import entries_without_fill


def _old_layout(blob: bytes) -> bytes:
    """``Engine.to_bytes`` as the core before the skip counters wrote it (3 pstate slots)."""
    (k,) = struct.unpack_from("<I", blob, 0)
    head = struct.Struct("<8sIII")
    magic, n_assets, n_a, n_p = head.unpack_from(blob, 4 + k)
    return (
        blob[: 4 + k]
        + head.pack(magic, n_assets, n_a, 3)
        + blob[4 + k + head.size : len(blob) - 8 * (n_p - 3)]
    )


async def test_replay_counts_skips_exports_them_and_rebuilds_an_old_checkpoint(tmp_path):
    # size_pct 0.6 of equity per entry: with 3 assets a second position never fits. No
    # stops, so no re-arm block holds an entry back (entries_without_fill's premise).
    profile = small_profile(
        execution={
            "mode": "discrete",
            "fee_rate": 0.001,
            "slippage_bps": 5.0,
            "size_pct": 0.6,
            "min_trade_value": 1.0,
        },
        exit_rules={"stop_loss_pct": None, "take_profit_pct": None},
    )
    market = sample_market(n_tradable=60)
    db = tmp_path / "d.sqlite"
    daemon = await replay(profile, market, db)
    t0, end = replay_window(market)
    res, ts_close, signal = batch_run(profile, market, t0, end)
    with StateStore(db) as st:
        assert_journal_equal(st.fills_frame(), res.fills)

    # The paper engine's counts: the backtest's, and the signals without a fill.
    got = daemon.stepper.engine.entries_skipped()
    want = entries_without_fill(res.fills, profile.assets, ts_close, signal, False)
    assert want > 0
    assert got == res.engine.entries_skipped() == {"unfunded": want, "below_min_trade_value": 0}

    # /metrics: the sampler adds the engine's counts to tandem_entries_skipped_total; both
    # causes are exported (0 included), named as the engine names them.
    assert SKIP_CAUSES == tuple(name for name, _ in ENGINE_CAUSES)
    metrics = Metrics()
    sampler = DaemonSampler(daemon, metrics, Health())
    sampler.sample()
    sampler.sample()  # unchanged counts: nothing added twice
    found = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            if s.name == "tandem_entries_skipped_total":
                found[s.labels["cause"]] = s.value
    assert found == {"unfunded": want, "below_min_trade_value": 0}

    # A checkpoint written by the old core: refused by the engine, so the daemon rebuilds
    # its state from the journal, counts included, with no fill mismatch.
    with StateStore(db) as st:
        blobs = st.load_blobs()
        st.write_checkpoint(st.checkpoint_ts, {**blobs, "engine": _old_layout(blobs["engine"])})
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    again = make_daemon(profile, db)
    again.store = StateStore(db)
    try:
        again.stepper = stepper_factory(profile)(again.cfg.run_id)
        again._restore()
    finally:
        again.store.close()
        configure_logging("json", "WARNING")
    events = {e["event"]: e for e in map(json.loads, buf.getvalue().splitlines()) if e.get("event")}
    assert "another layout" in events["checkpoint_incompatible"]["error"]
    assert events["restored"]["checkpoint_ts"] is None
    assert events["restored"]["mismatches"] == 0
    eng = again.stepper.engine
    assert eng.entries_skipped() == got
    assert eng.pstate.tobytes() == daemon.stepper.engine.pstate.tobytes()
    assert eng.astate.tobytes() == daemon.stepper.engine.astate.tobytes()


def test_replay_summary_names_the_skipped_entries(capsys, tmp_path):
    """`tandem-daemon replay` ends with a summary; like `tandem-backtest run`'s, it says how
    many entry signals were skipped and why, only when some were."""
    import numpy as np
    from tandem.core.journal import fills_table
    from tandem.daemon.cli import _print_summary

    fills = fills_table(np.empty((0, 10)), ["A"], "p", "r", "paper")
    for skipped in ({"unfunded": 5, "below_min_trade_value": 2}, {"unfunded": 0}, None):
        _print_summary("p", fills, {"slices": 3}, tmp_path / "d.sqlite", [], 1, skipped)
        lines = [x for x in capsys.readouterr().out.splitlines() if "skipped" in x]
        if skipped and sum(skipped.values()):
            assert lines == [
                "  entries skipped: 7 signal bars (unfunded 5, below min trade value 2)"
            ]
        else:
            assert lines == []
