"""Slice assembler: order, exactly-once, grace period, late candles (hypothesis + hand cases)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.daemon.slices import SliceAssembler
from tandem.daemon.state import ClosedCandle

H = 3_600_000


def _candle(sym: str, ts: int, px: float = 1.0) -> ClosedCandle:
    return ClosedCandle(sym, ts, px, px + 1, px - 0.5, px + 0.25, 10.0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@st.composite
def deliveries(draw):
    """Per-asset in-order bar lists with gaps, and a random interleaving of deliveries."""
    n_assets = draw(st.integers(1, 4))
    syms = [f"A{i}/USDT" for i in range(n_assets)]
    bars = {}
    for s in syms:
        present = draw(st.lists(st.booleans(), min_size=12, max_size=12))
        bars[s] = [i * H for i, p in enumerate(present) if p]
    queues = {s: list(v) for s, v in bars.items()}
    order = []
    while any(queues.values()):
        s = draw(st.sampled_from([s for s in syms if queues[s]]))
        order.append((s, queues[s].pop(0)))
    return syms, bars, order


@settings(max_examples=150, deadline=None)
@given(deliveries())
def test_complete_delivery_gives_aligned_union_in_order(data):
    """With no timer expiry, slices equal a pandas outer-join alignment of all assets."""
    syms, bars, order = data
    clock = FakeClock()
    asm = SliceAssembler(syms, grace_s=1e9, clock=clock)
    released = []
    for s, ts in order:
        assert asm.add(_candle(s, ts, px=100 + ts / H)) == "ok"
        released.extend(asm.pop_ready())
    # Each asset's last bar is only released once every other asset proves progress; at the
    # end, whatever is pending is the tail that needs the grace timer.
    clock.t = 2e9
    released.extend(asm.pop_ready())
    ts_out = [sl.ts for sl in released]
    assert ts_out == sorted(set(ts_out)), "out of order or twice"
    # Independent reference: pandas pivot of the same candles.
    rows = [(s, ts, 100 + ts / H + 0.25) for s in syms for ts in bars[s]]
    ref = pd.DataFrame(rows, columns=["symbol", "ts", "close"]).pivot(
        index="ts", columns="symbol", values="close").reindex(columns=syms)
    assert ts_out == list(ref.index)
    got = np.vstack([sl.close for sl in released]) if released else np.empty((0, len(syms)))
    np.testing.assert_array_equal(got, ref.to_numpy())


def test_grace_releases_with_missing_and_late_is_rejected():
    clock = FakeClock()
    asm = SliceAssembler(["A", "B"], grace_s=5.0, clock=clock)
    asm.add(_candle("A", 0))
    assert asm.pop_ready() == []
    clock.t = 4.9
    assert asm.pop_ready() == []
    assert asm.next_deadline() == 5.0
    clock.t = 5.0
    (sl,) = asm.pop_ready()
    assert sl.ts == 0 and sl.missing == ["B"] and sl.by_grace
    assert np.isnan(sl.close[1]) and sl.close[0] == 1.25
    assert asm.add(_candle("B", 0)) == "late"
    assert asm.add(_candle("C", H)) == "unknown"


def test_progress_of_other_asset_completes_slice_without_waiting():
    asm = SliceAssembler(["A", "B"], grace_s=1e9, clock=FakeClock())
    asm.add(_candle("A", 0))
    asm.add(_candle("B", H))  # B has no bar at 0: the exchange skipped it
    (sl,) = asm.pop_ready()
    assert sl.ts == 0 and sl.missing == ["B"] and not sl.by_grace
    asm.add(_candle("A", H))
    (sl2,) = asm.pop_ready()
    assert sl2.ts == H and sl2.missing == []


def test_duplicate_and_resume_from_last_ts():
    asm = SliceAssembler(["A"], grace_s=1e9, last_ts=5 * H, clock=FakeClock())
    assert asm.add(_candle("A", 5 * H)) == "late"
    assert asm.add(_candle("A", 6 * H)) == "ok"
    assert asm.add(_candle("A", 6 * H)) == "duplicate"
    assert [s.ts for s in asm.pop_ready()] == [6 * H]


def test_a_slice_lists_its_candles_in_the_tables_key_order():
    """The candles go to the journal in symbol order (the table's key order: the INSERT
    appends), the prices stay in manifest order and ``missing`` too."""
    syms = ["SOL/USDT", "BTC/USDT", "XRP/USDT", "ADA/USDT", "ETH/USDT"]
    clock = FakeClock()
    asm = SliceAssembler(syms, grace_s=1.0, clock=clock)
    for k, s in enumerate(syms):
        if s not in ("XRP/USDT", "ADA/USDT"):
            asm.add(_candle(s, 0, px=10.0 + k))
    clock.t = 2.0
    (sl,) = asm.pop_ready()
    assert [c.symbol for c in sl.candles] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert sl.open[[0, 1, 4]].tolist() == [10.0, 11.0, 14.0]
    assert np.isnan(sl.close[[2, 3]]).all()
    assert sl.missing == ["XRP/USDT", "ADA/USDT"]
