"""The live daemon's collector policy (daemon.memory): no automatic cyclic collection from a
slice's first candle to its commit, the usual schedule otherwise — cycles are still reclaimed."""

from __future__ import annotations

import gc
import weakref

import pytest
from tandem.daemon import memory
from tandem.daemon.replay import run_replay

from tests.test_daemon_support import make_daemon, replay_window, sample_market, small_profile


class _Node:
    """A weak-referenceable object that can sit in a reference cycle."""

    other: _Node | None = None


def _cycle() -> weakref.ref:
    """Cyclic garbage (only the collector frees it); a weak reference to watch it go."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def collections():
    """Generations of the automatic collections that started while a burst was open."""
    seen: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start" and memory._deferred_from is not None:
            seen.append(info["generation"])

    assert gc.isenabled()
    gc.callbacks.append(on_gc)
    yield seen
    gc.callbacks.remove(on_gc)
    memory.resume_collection()


def test_a_burst_defers_collection_until_resumed(collections):
    normal = gc.get_threshold()
    memory.defer_collection()
    memory.defer_collection()  # once per burst, whatever the candles
    assert gc.get_threshold() == (memory.BURST_GEN0_THRESHOLD, *normal[1:])
    dead = _cycle()
    young = [[] for _ in range(5 * normal[0])]  # a burst's allocations, alive at its commit
    assert collections == [] and dead() is not None
    memory.resume_collection()
    assert gc.get_threshold() == normal
    more = [[] for _ in range(10)]  # the next allocations run the deferred collection
    assert dead() is None
    memory.resume_collection()  # no burst open: nothing to restore
    assert gc.get_threshold() == normal
    del young, more


async def test_live_slices_defer_the_collector_to_their_commit(tmp_path, collections):
    """Before live: the usual thresholds. Once live: each slice is committed with the
    collector held (although its burst allocated far past the young generation's usual
    threshold), and the cycle it made is gone right after its commit. After the run the
    usual thresholds are back."""
    normal = gc.get_threshold()
    profile = small_profile()
    market = sample_market(n_tradable=12)
    t0, end = replay_window(market)
    daemon = make_daemon(profile, tmp_path / "d.sqlite")
    at_commit: list[tuple[int, int]] = []  # (slice ts, young generation's threshold)
    cycles: list[weakref.ref] = []
    alive_at_next: list[bool] = []  # the previous live slice's cycle, at this slice's commit
    young: list[list] = []

    def on_commit(sl, _t):  # noqa: ANN001
        at_commit.append((sl.ts, gc.get_threshold()[0]))
        if daemon.live_ts is not None and sl.ts > daemon.live_ts:
            if cycles:
                alive_at_next.append(cycles[-1]() is not None)
            cycles.append(_cycle())
            young.append([[] for _ in range(2 * normal[0])])  # kept: due at the commit

    daemon.commit_hook = on_commit
    await run_replay(daemon, market, t0, end, bar_timeout_s=2.0)
    assert gc.get_threshold() == normal
    live_ts = daemon.live_ts
    assert live_ts is not None
    before = [thr for ts, thr in at_commit if ts <= live_ts]
    after = [thr for ts, thr in at_commit if ts > live_ts]
    assert before and set(before) == {normal[0]}
    assert len(after) >= 5 and set(after) == {memory.BURST_GEN0_THRESHOLD}
    assert collections == []  # none inside a burst
    assert alive_at_next and not any(alive_at_next)
