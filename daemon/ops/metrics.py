"""Prometheus metrics for the daemon: one private registry and the small API the daemon calls.

The daemon never touches ``prometheus_client`` objects directly; it calls ``on_candle``,
``on_slice`` and friends. That keeps metric names and labels in one place, and lets tests
build as many independent ``Metrics`` as they like (each owns its own ``CollectorRegistry``
instead of the process-global one, so nothing leaks between tests or daemon sessions).

Label cardinality is bounded on purpose: ``symbol`` comes from the profile's universe and
``side``/``reason`` from the fills journal's closed vocabularies, ``cause`` from the
engine's skip counters. Nothing per-``ts``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "SLICE_LATENCY_BUCKETS", "Metrics"]

# No ``*_created`` series: they double the exposition (one per labelled child) and nothing
# here needs them; process-wide, which is fine in the daemon's own process.
disable_created_metrics()

# Seconds. The daemon's target is p99 < 5 ms per slice, so the resolution sits below 10 ms;
# the long tail (catch-up after a restart, a first numba compile) still lands in a bucket.
SLICE_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


# The engine's skip causes (``tandem.core.engine.layout.SKIP_CAUSES``; not imported here:
# that package loads numba). Both are exported from the start, 0 until an entry is skipped.
SKIP_CAUSES: tuple[str, ...] = ("unfunded", "below_min_trade_value")


class _CandleCounter(Collector):
    """``tandem_candles_total{symbol}`` from a plain dict.

    This is the one metric touched once per asset per slice (200 × per minute and more), so
    its hot path is a dict increment instead of ``Counter.labels(...).inc()`` (label
    validation, a lock): the work moves to scrape time, once per scrape.
    """

    def __init__(self, name: str, doc: str):
        self.name, self.doc = name, doc
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily(self.name, self.doc, labels=["symbol"])
        # list() snapshots the dict in one C call (atomic under the GIL): safe while the
        # event loop keeps counting during a scrape rendered in a worker thread.
        for symbol, n in sorted(list(self.counts.items())):
            fam.add_metric([symbol], float(n))
        yield fam

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.doc, labels=["symbol"])


class Metrics:
    """The daemon's metrics, registered in a private ``CollectorRegistry``.

    Every method is cheap (a dict lookup and an add) so it can sit on the hot path of a slice.
    """

    def __init__(self, registry: CollectorRegistry | None = None, namespace: str = "tandem"):
        self.registry = registry if registry is not None else CollectorRegistry()
        ns, reg = namespace, self.registry
        self.candles = _CandleCounter(f"{ns}_candles", "Closed candles received from the feeds.")
        reg.register(self.candles)
        self.slices = Counter(
            "slices_stepped", "Time slices stepped through the engine.",
            namespace=ns, registry=reg,
        )
        self.partial_slices = Counter(
            "slices_partial", "Slices stepped after the grace period with assets missing.",
            namespace=ns, registry=reg,
        )
        self.slice_latency = Histogram(
            "slice_latency_seconds",
            "Seconds to step one slice through the engine and commit it to SQLite.",
            buckets=SLICE_LATENCY_BUCKETS, namespace=ns, registry=reg,
        )
        self.fills = Counter(
            "fills", "Paper fills journaled.", ["symbol", "side", "reason"],
            namespace=ns, registry=reg,
        )
        self.reconnects = Counter(
            "reconnects", "Websocket reconnects detected or forced, per feed.", ["symbol"],
            namespace=ns, registry=reg,
        )
        self.backfills = Counter(
            "backfills", "REST backfills run to close a gap, per feed.", ["symbol"],
            namespace=ns, registry=reg,
        )
        self.backfilled_candles = Counter(
            "backfilled_candles", "Closed candles recovered by REST backfills.", ["symbol"],
            namespace=ns, registry=reg,
        )
        self.feed_restarts = Counter(
            "feed_restarts", "Feed tasks that died and were restarted by the supervisor.",
            namespace=ns, registry=reg,
        )
        self.watchdog_fires = Counter(
            "watchdog_reconnects", "Reconnects forced by the connection watchdog (silent socket).",
            namespace=ns, registry=reg,
        )
        self.entries_skipped = Counter(
            "entries_skipped",
            "Discrete entry signals the engine did not act on, per slice and asset: "
            "unfunded (spend above free cash) or below_min_trade_value.", ["cause"],
            namespace=ns, registry=reg,
        )
        for cause in SKIP_CAUSES:
            self.entries_skipped.labels(cause=cause)
        self.late_candles = Counter(
            "late_candles", "Closed candles that arrived after their slice was stepped.",
            namespace=ns, registry=reg,
        )
        self.write_errors = Counter(
            "write_errors", "Failed state/journal writes.", namespace=ns, registry=reg,
        )
        self.equity = Gauge(
            "equity", "Paper portfolio equity in quote currency (marked at the last close).",
            namespace=ns, registry=reg,
        )
        self.cash = Gauge("cash", "Paper quote cash.", namespace=ns, registry=reg)
        self.open_positions = Gauge(
            "open_positions", "Assets with a non-zero paper position.",
            namespace=ns, registry=reg,
        )
        self.last_slice_ts = Gauge(
            "last_slice_close_timestamp_seconds",
            "Close time (epoch seconds) of the last slice stepped.",
            namespace=ns, registry=reg,
        )
        self.notifications_sent = Counter(
            "notifications_sent", "Notifications delivered (one per message and target).",
            namespace=ns, registry=reg,
        )
        self.notifications_failed = Counter(
            "notifications_failed",
            "Notifications not delivered (a target failed, or the queue was full).",
            namespace=ns, registry=reg,
        )
        self.ready = Gauge(
            "ready", "1 once warm-up is done and the daemon trades live.",
            namespace=ns, registry=reg,
        )

    # --- the API the daemon calls ------------------------------------------------------------
    def on_candle(self, symbol: str, n: int = 1) -> None:
        """``n`` closed candles of ``symbol`` reached the slice assembler."""
        counts = self.candles.counts
        counts[symbol] = counts.get(symbol, 0) + n

    def on_slice(self, latency_s: float, ts_close_ms: int | None = None,
                 partial: bool = False) -> None:
        """One slice stepped and committed in ``latency_s`` seconds."""
        self.slices.inc()
        self.slice_latency.observe(max(0.0, float(latency_s)))
        if partial:
            self.partial_slices.inc()
        if ts_close_ms is not None:
            self.last_slice_ts.set(ts_close_ms / 1000.0)

    def on_fill(self, symbol: str, side: str, reason: str) -> None:
        """One paper fill journaled."""
        self.fills.labels(symbol=symbol, side=side, reason=reason).inc()

    def on_reconnect(self, symbol: str) -> None:
        """A feed's websocket reconnected (detected gap or forced by the watchdog)."""
        self.reconnects.labels(symbol=symbol).inc()

    def on_backfill(self, symbol: str, n_candles: int = 0) -> None:
        """A REST backfill ran for ``symbol`` and recovered ``n_candles`` closed candles."""
        self.backfills.labels(symbol=symbol).inc()
        if n_candles > 0:
            self.backfilled_candles.labels(symbol=symbol).inc(n_candles)

    def on_entries_skipped(self, cause: str, n: int = 1) -> None:
        """``n`` more entry signals skipped for ``cause`` (the engine's ``S_SKIP_*`` names)."""
        self.entries_skipped.labels(cause=cause).inc(n)

    def on_write_error(self) -> None:
        """A state or journal write failed (the health model says which)."""
        self.write_errors.inc()

    def set_equity(self, equity: float, cash: float | None = None) -> None:
        """Mark the paper portfolio (quote currency)."""
        self.equity.set(float(equity))
        if cash is not None:
            self.cash.set(float(cash))

    def set_open_positions(self, n: int) -> None:
        """Number of assets holding a position."""
        self.open_positions.set(int(n))

    def on_notification(self, ok: bool, n: int = 1) -> None:
        """``n`` notification deliveries succeeded (``ok``) or failed."""
        (self.notifications_sent if ok else self.notifications_failed).inc(n)

    def set_ready(self, ready: bool = True) -> None:
        """Flip the readiness gauge (after warm-up)."""
        self.ready.set(1 if ready else 0)

    # --- exposition --------------------------------------------------------------------------
    def render(self) -> bytes:
        """The registry in Prometheus text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)
