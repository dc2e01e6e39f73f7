"""Metrics registry: the text exposition parses with prometheus-client's own parser and every
counter, gauge and histogram moves exactly as the events the daemon reported.

Histogram buckets are cross-checked against an independent numpy count, not against our code.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from tandem.daemon.ops.metrics import SLICE_LATENCY_BUCKETS, Metrics


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse ``/metrics`` text the way Prometheus would: {(sample name, labels): value}."""
    out = {}
    for fam in text_string_to_metric_families(m.render().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exposition_parses_and_names_are_stable():
    fams = {f.name: f.type for f in text_string_to_metric_families(Metrics().render().decode())}
    expected = {
        "tandem_candles": "counter",
        "tandem_slices_stepped": "counter",
        "tandem_fills": "counter",
        "tandem_reconnects": "counter",
        "tandem_backfills": "counter",
        "tandem_slice_latency_seconds": "histogram",
        "tandem_equity": "gauge",
        "tandem_open_positions": "gauge",
        "tandem_write_errors": "counter",
        "tandem_ready": "gauge",
    }
    for name, kind in expected.items():
        assert fams.get(name) == kind, name


def test_counters_and_gauges_move():
    m = Metrics()
    m.on_candle("BTC/USDT")
    m.on_candle("BTC/USDT")
    m.on_candle("ETH/USDT", n=3)
    m.on_slice(0.002, ts_close_ms=1_700_000_060_000)
    m.on_slice(0.5, ts_close_ms=1_700_000_120_000, partial=True)
    m.on_fill("BTC/USDT", "buy", "entry")
    m.on_fill("BTC/USDT", "sell", "stop_loss")
    m.on_reconnect("ETH/USDT")
    m.on_backfill("ETH/USDT", 7)
    m.on_backfill("ETH/USDT", 0)
    m.on_write_error()
    m.set_equity(10_123.5, cash=4_000.25)
    m.set_open_positions(2)
    m.set_ready()
    s = samples(m)
    assert s[("tandem_candles_total", (("symbol", "BTC/USDT"),))] == 2
    assert s[("tandem_candles_total", (("symbol", "ETH/USDT"),))] == 3
    assert s[("tandem_slices_stepped_total", ())] == 2
    assert s[("tandem_slices_partial_total", ())] == 1
    assert s[("tandem_slice_latency_seconds_count", ())] == 2
    assert s[("tandem_slice_latency_seconds_sum", ())] == 0.502
    fill = ("tandem_fills_total", (("reason", "entry"), ("side", "buy"), ("symbol", "BTC/USDT")))
    assert s[fill] == 1
    assert s[("tandem_reconnects_total", (("symbol", "ETH/USDT"),))] == 1
    assert s[("tandem_backfills_total", (("symbol", "ETH/USDT"),))] == 2
    assert s[("tandem_backfilled_candles_total", (("symbol", "ETH/USDT"),))] == 7
    assert s[("tandem_write_errors_total", ())] == 1
    assert s[("tandem_equity", ())] == 10_123.5
    assert s[("tandem_cash", ())] == 4_000.25
    assert s[("tandem_open_positions", ())] == 2
    assert s[("tandem_ready", ())] == 1
    assert s[("tandem_last_slice_close_timestamp_seconds", ())] == 1_700_000_120.0


def test_registries_are_independent():
    a, b = Metrics(), Metrics()
    a.on_candle("BTC/USDT")
    assert ("tandem_candles_total", (("symbol", "BTC/USDT"),)) not in samples(b)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=20, allow_nan=False), max_size=60))
def test_latency_histogram_matches_numpy(latencies):
    m = Metrics()
    for x in latencies:
        m.on_slice(x)
    s = samples(m)
    arr = np.asarray(latencies, dtype=float)
    for bound in SLICE_LATENCY_BUCKETS:
        le = (("le", str(float(bound))),)
        # Prometheus buckets are cumulative and inclusive: value <= le.
        assert s[("tandem_slice_latency_seconds_bucket", le)] == int((arr <= bound).sum())
    assert s[("tandem_slice_latency_seconds_bucket", (("le", "+Inf"),))] == len(arr)
    assert s[("tandem_slice_latency_seconds_count", ())] == len(arr)
    assert np.isclose(s[("tandem_slice_latency_seconds_sum", ())], arr.sum())
