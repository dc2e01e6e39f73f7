"""The monitoring kit in ``deploy/`` (issue 18): Prometheus rules pass ``promtool check rules``
and their unit tests (``promtool test rules``: each alert fires on its series), the scrape
config passes ``promtool check config``, and every metric the Grafana dashboard and the
rules name is exported by the daemon's real ``/metrics`` (over a socket, parsed with
prometheus-client's parser)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from tandem.daemon.ops import Ops, OpsConfig

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana" / "tandem.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus; "
                             ".ci/run installs it)")
METRIC = re.compile(r"\b(tandem_[a-z0-9_]+)")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules():
    res = run("check", "rules", "alerts.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout
    res = run("test", "rules", "alerts_test.yml", cwd=PROM)
    assert res.returncode == 0, res.stdout + res.stderr


@needs_promtool
def test_promtool_checks_the_scrape_config(tmp_path):
    # The example reads the token from /etc/prometheus/tandem_token: point it at a temp file.
    (tmp_path / "token").write_text("x" * 24)
    cfg = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/tandem_token",
                                                          str(tmp_path / "token"))
    (tmp_path / "prometheus.yml").write_text(cfg)
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    res = run("check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_rules_cover_what_the_issue_asks():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {"TandemDown", "TandemFeedStale", "TandemSliceLag",
            "TandemNotificationFailures"} <= names


def test_grafana_dashboard_is_well_formed():
    dash = json.loads(GRAFANA.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"] and dash["schemaVersion"] >= 36
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"])
        assert p["datasource"]["uid"] == "${datasource}"


def names_used() -> set[str]:
    exprs = [t["expr"] for p in json.loads(GRAFANA.read_text())["panels"] for t in p["targets"]]
    for group in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]:
        exprs += [r["expr"] for r in group["rules"]]
    return {m for e in exprs for m in METRIC.findall(e)}


async def test_every_metric_named_exists_in_the_daemons_metrics():
    ops = Ops(OpsConfig(http_port=0, notify=False,
                        notify_urls=SecretStr("json://127.0.0.1:9/x")))
    await ops.start()
    try:
        # one of every event, so labelled series exist too
        ops.register_feed("BTC/USDT")
        ops.on_feed_update("BTC/USDT")
        ops.on_candle("BTC/USDT", 60_000)
        ops.on_fill("BTC/USDT", "buy", "entry")
        ops.on_slice(60_000, 0.001)
        ops.on_reconnect("BTC/USDT")
        ops.on_backfill("BTC/USDT", 3)
        ops.set_portfolio(10_000.0, 5_000.0, 1)
        ops.metrics.on_notification(True)
        ops.metrics.on_notification(False)
        async with aiohttp.ClientSession() as s:
            text = await (await s.get(ops.server.url + "/metrics")).text()
    finally:
        await ops.stop()
    exported = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    used = names_used()
    assert len(used) >= 15, used
    missing = sorted(used - exported)
    assert not missing, f"named in deploy/ but not exported: {missing}"
