"""The health model as Prometheus gauges, computed at scrape time (issue 18's alert rules).

``tandem_health_ok`` (1/0), ``tandem_stale_feeds`` (count), ``tandem_slice_lag_seconds``
(the oldest closed-but-unstepped slice's wait) and ``tandem_feed_last_update_age_seconds``
per feed: what ``deploy/prometheus/alerts.yml`` alerts on. Nothing is added to the slice
path: the values are read from :class:`~tandem.daemon.ops.health.Health` when Prometheus asks.

``/metrics`` renders in a worker thread while the event loop keeps mutating the health
model's dicts; a read that races a resize raises ``RuntimeError`` and is simply retried.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tandem.daemon.ops.health import Health

__all__ = ["HealthCollector"]


class HealthCollector(Collector):
    """Scrape-time gauges from a :class:`Health` (register it in the metrics registry)."""

    def __init__(self, health: Health, namespace: str = "tandem"):
        self.health, self.ns = health, namespace

    def _read(self) -> tuple[bool, int, float, list[tuple[str, float]]]:
        for _ in range(5):
            try:
                report = self.health.evaluate()
                lag = self.health.slice_lag_s()
                ages = self.health.feed_ages()
                return report.ok, len(report.details.get("stale_feeds", ())), lag, ages
            except RuntimeError:  # a dict resized under us by the loop thread: retry
                continue
        return False, 0, 0.0, []

    def collect(self) -> Iterator[Metric]:
        ok, stale, lag, ages = self._read()
        ns = self.ns
        yield GaugeMetricFamily(f"{ns}_health_ok", "1 when /health reports ok, else 0.",
                                value=1.0 if ok else 0.0)
        yield GaugeMetricFamily(f"{ns}_stale_feeds",
                                "Feeds with no websocket update for TANDEM_HEALTH_STALE_FEED_S.",
                                value=float(stale))
        yield GaugeMetricFamily(f"{ns}_slice_lag_seconds",
                                "Seconds the oldest closed but unstepped slice has waited.",
                                value=float(lag))
        fam = GaugeMetricFamily(f"{ns}_feed_last_update_age_seconds",
                                "Seconds since the feed's last websocket update.",
                                labels=["symbol"])
        for symbol, age in ages:
            fam.add_metric([symbol], age)
        yield fam

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected lazily; no duplicate-name checks needed at register
