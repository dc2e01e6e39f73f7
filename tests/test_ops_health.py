"""Health model: each reason (stale feed, lagging slice, failed write, phase) turns the status
degraded, and recovery turns it ok again. Time is a fake clock stepped by the test.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tandem.daemon.ops.health import Health, HealthConfig


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def live(stale=10.0, lag=5.0):
    clock = Clock()
    h = Health(HealthConfig(stale_feed_after_s=stale, slice_lag_after_s=lag), clock=clock)
    h.set_phase("live")
    return h, clock


def test_starting_and_stopping_are_degraded():
    h = Health(clock=Clock())
    r = h.evaluate()
    assert r.status == "degraded" and r.phase == "starting"
    assert any("warm-up" in x for x in r.reasons)
    h.set_phase("live")
    assert h.evaluate().ok
    h.set_phase("stopping")
    assert h.evaluate().reasons == ("stopping",)


def test_stale_feed_then_recovery():
    h, clock = live(stale=10)
    h.register_feed("BTC/USDT:1m")
    h.register_feed("ETH/USDT:1m")
    clock.t += 9
    h.feed_update("BTC/USDT:1m")
    assert h.evaluate().ok
    clock.t += 2  # ETH silent for 11 s > 10 s; BTC for 2 s
    r = h.evaluate()
    assert r.status == "degraded"
    assert r.details["stale_feeds"] == ["ETH/USDT:1m"]
    assert r.reasons == ("stale feed: ETH/USDT:1m silent for 11s",)
    h.feed_update("ETH/USDT:1m")
    assert h.evaluate().ok
    h.forget_feed("ETH/USDT:1m")
    clock.t += 100
    assert [s for s in h.evaluate().details["stale_feeds"]] == ["BTC/USDT:1m"]


def test_threshold_is_strict():
    h, clock = live(stale=10)
    h.register_feed("a")
    clock.t += 10  # exactly at the threshold: not yet stale
    assert h.evaluate().ok
    clock.t += 0.001
    assert not h.evaluate().ok


def test_lagging_slice():
    h, clock = live(lag=5)
    h.candle_closed(60_000)
    clock.t += 4
    h.candle_closed(120_000)
    assert h.evaluate().ok
    clock.t += 2  # ts 60000 pending for 6 s
    r = h.evaluate()
    assert r.reasons == ("lagging slice: ts 60000 closed 6s ago, not stepped",)
    h.slice_stepped(60_000)
    assert h.evaluate().ok and h.evaluate().details["pending_slices"] == 1
    clock.t += 10
    assert not h.evaluate().ok  # 120000 now lags too
    h.slice_stepped(120_000)
    r = h.evaluate()
    assert r.ok and r.details["last_slice_ts"] == 120_000
    # A late duplicate close of a stepped slice is not new work.
    h.candle_closed(60_000)
    clock.t += 100
    assert h.evaluate().ok


def test_failed_write_until_next_success():
    h, _ = live()
    h.write_failed("database is locked")
    assert h.evaluate().reasons == ("failed write: database is locked",)
    h.write_ok()
    assert h.evaluate().ok


def test_config_rejects_nonpositive():
    with pytest.raises(ValueError):
        HealthConfig(stale_feed_after_s=0)


events = st.one_of(
    st.tuples(st.just("tick"), st.floats(0, 20)),
    st.tuples(st.just("update"), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("close"), st.integers(1, 30)),
    st.tuples(st.just("step"), st.integers(1, 30)),
    st.tuples(st.just("write_fail"), st.just("x")),
    st.tuples(st.just("write_ok"), st.just(None)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(events, max_size=40))
def test_status_invariants(seq):
    """ok ⇔ no reasons; and the verdict equals an independent recomputation from the log."""
    h, clock = live(stale=10, lag=5)
    last_update = {s: clock.t for s in "abc"}
    for s in "abc":
        h.register_feed(s)
    first_seen: dict[int, float] = {}
    stepped = None
    write_failed = False
    for kind, arg in seq:
        if kind == "tick":
            clock.t += arg
        elif kind == "update":
            h.feed_update(arg)
            last_update[arg] = clock.t
        elif kind == "close":
            h.candle_closed(arg * 60_000)
            if stepped is None or arg * 60_000 > stepped:
                first_seen.setdefault(arg * 60_000, clock.t)
        elif kind == "step":
            h.slice_stepped(arg * 60_000)
            stepped = max(stepped or 0, arg * 60_000)
            first_seen = {k: v for k, v in first_seen.items() if k > arg * 60_000}
        elif kind == "write_fail":
            h.write_failed(arg)
            write_failed = True
        else:
            h.write_ok()
            write_failed = False
    r = h.evaluate()
    assert r.ok == (not r.reasons)
    stale = sorted(s for s, t in last_update.items() if clock.t - t > 10)
    lagging = bool(first_seen) and clock.t - first_seen[min(first_seen)] > 5
    assert r.details["stale_feeds"] == stale
    assert r.ok == (not stale and not lagging and not write_failed)
