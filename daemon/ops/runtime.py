"""``Ops``: the one object the daemon holds for operations — metrics, health, HTTP, sd_notify.

The daemon's run loop makes a handful of calls and nothing else::

    ops = Ops.from_settings(settings, provider=state)   # raises InsecureBindError: exit 2
    await ops.start()                                    # HTTP listening
    ...warm-up...
    ops.ready()                                          # READY=1, watchdog pings start
    ops.on_feed_update(stream); ops.on_candle(symbol, ts_close)
    ops.on_slice(ts_close, latency_s); ops.on_fill(symbol, side, reason, row)
    ops.on_reconnect(symbol); ops.on_backfill(symbol, n)
    ops.on_write_ok() / ops.on_write_error(msg); ops.set_portfolio(equity, cash, n_open)
    ops.watch_daemon(daemon)                             # or: sample its counters
    ops.stopping()                                       # on SIGTERM: STOPPING=1
    await ops.stop()

Every event fans out to the metrics registry and the health model, so the two can never
disagree about what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from tandem.daemon.ops.alerts import Alerts
from tandem.daemon.ops.dashboard import DashboardHub
from tandem.daemon.ops.health import Health, HealthConfig
from tandem.daemon.ops.health_metrics import HealthCollector
from tandem.daemon.ops.http import OpsServer, StateProvider
from tandem.daemon.ops.metrics import Metrics
from tandem.daemon.ops.notify import SystemdNotifier
from tandem.daemon.ops.sampler import DaemonSampler

__all__ = ["Ops", "OpsConfig"]

# OpsConfig field -> core.settings.Settings field (TANDEM_<NAME>) where the names differ.
_SETTINGS_NAMES = {
    "stale_feed_after_s": "health_stale_feed_s",
    "slice_lag_after_s": "health_slice_lag_s",
}


@dataclass(frozen=True)
class OpsConfig:
    """Operations settings (mirrors the ``TANDEM_HTTP_*`` / ``TANDEM_HEALTH_*`` settings)."""

    http_enabled: bool = True
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_token: SecretStr | None = None
    notify: bool = True
    stale_feed_after_s: float = 90.0
    slice_lag_after_s: float = 60.0
    notify_urls: SecretStr | None = None  # Apprise URLs (daemon.ops.alerts); a secret
    dashboard: bool = True  # the web page at "/" (daemon.ops.dashboard)

    @classmethod
    def from_settings(cls, settings: Any) -> OpsConfig:
        """Read our fields from ``tandem.core.settings.Settings`` (any object with those names)."""
        kw: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            source = _SETTINGS_NAMES.get(name, name)
            if hasattr(settings, source):
                kw[name] = getattr(settings, source)
        token = kw.get("http_token")
        if token is not None and not isinstance(token, SecretStr):
            kw["http_token"] = SecretStr(str(token))
        urls = kw.get("notify_urls")
        if urls is not None and not isinstance(urls, SecretStr):
            kw["notify_urls"] = SecretStr(str(urls))
        return cls(**kw)

    def __repr__(self) -> str:  # the token must not leak through a debug print either
        token = "**********" if self.http_token else None
        return (f"OpsConfig(http_enabled={self.http_enabled}, http_host={self.http_host!r}, "
                f"http_port={self.http_port}, http_token={token}, notify={self.notify}, "
                f"stale_feed_after_s={self.stale_feed_after_s}, "
                f"slice_lag_after_s={self.slice_lag_after_s}, "
                f"notify_urls={'**********' if self.notify_urls else None}, "
                f"dashboard={self.dashboard})")


class Ops:
    """Metrics + health + HTTP server + systemd notifier behind one small API."""

    def __init__(
        self,
        config: OpsConfig | None = None,
        provider: StateProvider | None = None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] | None = None,
        logger: Any = None,
    ):
        self.config = config or OpsConfig()
        cfg = self.config
        self.metrics = Metrics()
        health_cfg = HealthConfig(cfg.stale_feed_after_s, cfg.slice_lag_after_s)
        self.health = Health(health_cfg) if clock is None else Health(health_cfg, clock=clock)
        # health as gauges at scrape time (deploy/prometheus/alerts.yml alerts on them)
        self.metrics.registry.register(HealthCollector(self.health))
        self.notifier = SystemdNotifier(env if cfg.notify else {})
        # People's views (issue 18): the dashboard page and Apprise notifications.
        self.dashboard = (
            DashboardHub(health=self.health, metrics=self.metrics,
                         provider=lambda: self.provider, token=cfg.http_token)
            if cfg.http_enabled and cfg.dashboard else None
        )
        # Validates the URLs now: a bad entry exits 2 before READY (NotifyConfigError).
        self.alerts = (Alerts(cfg.notify_urls, self.metrics, self.health, logger=logger)
                       if cfg.notify_urls is not None else None)
        self._slice_fills: list[Mapping[str, Any]] = []
        # Built now, not in start(): a non-loopback bind without a token fails before READY.
        self.server = (
            OpsServer(metrics=self.metrics, health=self.health, provider=provider,
                      host=cfg.http_host, port=cfg.http_port, token=cfg.http_token,
                      dashboard=self.dashboard)
            if cfg.http_enabled else None
        )
        self._log = logger
        self._watchdog_task: asyncio.Task[None] | None = None
        self._sampler_task: asyncio.Task[None] | None = None
        self.sampler: DaemonSampler | None = None

    @classmethod
    def from_settings(cls, settings: Any, provider: StateProvider | None = None,
                      **kw: Any) -> Ops:
        """Build from ``tandem.core.settings`` (any object with our field names)."""
        return cls(OpsConfig.from_settings(settings), provider, **kw)

    @property
    def provider(self) -> StateProvider | None:
        return self.server.provider if self.server else None

    @provider.setter
    def provider(self, value: StateProvider | None) -> None:
        """The state may open after the server: attach it late."""
        if self.server is not None:
            self.server.provider = value

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the HTTP server (if enabled). READY is a separate step: see ``ready``."""
        self.notifier.status("warming up")  # shown by `systemctl status` until READY
        if self.alerts is not None:
            await self.alerts.start()
        if self.server is not None:
            port = await self.server.start()
            self._emit("ops.http.listening", host=self.server.host, port=port,
                       auth=self.server.auth_required)

    def ready(self, status: str = "live") -> None:
        """Warm-up done: health goes live, READY=1, and the watchdog pings begin."""
        self.health.set_phase("live")
        self.metrics.set_ready(True)
        sent = self.notifier.ready(status)
        interval = self.notifier.watchdog_interval()
        if self._watchdog_task is None and interval is not None and self.notifier.enabled:
            self._watchdog_task = asyncio.get_running_loop().create_task(
                self.notifier.watchdog_loop(), name="tandem-sd-watchdog")
        self._emit("ops.ready", notified=sent, watchdog_interval_s=interval)

    def stopping(self, status: str = "stopping") -> None:
        """Shutdown has begun (SIGTERM): STOPPING=1 once; health reports stopping."""
        if self.health.phase == "stopping":
            return  # the signal handler and the run loop's ``finally`` both call this
        self.health.set_phase("stopping")
        self.metrics.set_ready(False)
        self.notifier.stopping(status)

    def watch_daemon(self, daemon: Any, every_s: float = 1.0) -> None:
        """Sample ``daemon``'s feed counters and portfolio every ``every_s`` seconds
        (stale feeds, reconnects, backfills, equity, open positions): see ``sampler``."""
        self.sampler = DaemonSampler(daemon, self.metrics, self.health)
        if self.dashboard is not None:
            self.dashboard.attach(daemon)
        if self.alerts is not None:
            self.alerts.attach(daemon)
        if self._sampler_task is None:
            self._sampler_task = asyncio.get_running_loop().create_task(
                self.sampler.run(every_s), name="tandem-ops-sampler")

    async def stop(self) -> None:
        """Stop the sampler, the watchdog and the HTTP server (idempotent)."""
        for task in (self._sampler_task, self._watchdog_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sampler_task = self._watchdog_task = None
        if self.alerts is not None:
            await self.alerts.stop()
        if self.dashboard is not None:
            self.dashboard.close()  # ends the SSE streams, or the server waits for them
        if self.server is not None:
            await self.server.stop()
        self.notifier.close()

    # --- events ------------------------------------------------------------------------------
    def register_feed(self, stream: str) -> None:
        """A feed task starts: its staleness clock starts now."""
        self.health.register_feed(stream)

    def on_feed_update(self, stream: str) -> None:
        """Any websocket update of ``stream`` arrived (forming or closed)."""
        self.health.feed_update(stream)

    def on_candle(self, symbol: str, ts_close_ms: int | None = None, n: int = 1) -> None:
        """``n`` closed candles of ``symbol``; the newest closes at ``ts_close_ms``."""
        self.metrics.on_candle(symbol, n)
        if ts_close_ms is not None:
            self.health.candle_closed(ts_close_ms)

    def on_slice(self, ts_close_ms: int, latency_s: float, partial: bool = False) -> None:
        """The slice closing at ``ts_close_ms`` was stepped and committed."""
        self.metrics.on_slice(latency_s, ts_close_ms, partial)
        self.health.slice_stepped(ts_close_ms)
        self.health.write_ok()
        rows, self._slice_fills = self._slice_fills, []
        if self.alerts is not None and rows:
            self.alerts.on_fills(rows)  # one message per slice; a queue put, never a wait
        if self.dashboard is not None:
            self.dashboard.on_slice(ts_close_ms, latency_s, rows)

    def on_fill(self, symbol: str, side: str, reason: str,
                row: Mapping[str, Any] | None = None) -> None:
        """One journaled fill; ``row`` (the journal row) feeds the notifications, which
        go out per slice on the next ``on_slice``."""
        self.metrics.on_fill(symbol, side, reason)
        if row is not None:
            self._slice_fills.append(row)

    def on_reconnect(self, symbol: str) -> None:
        self.metrics.on_reconnect(symbol)

    def on_backfill(self, symbol: str, n_candles: int = 0) -> None:
        self.metrics.on_backfill(symbol, n_candles)

    def on_write_ok(self) -> None:
        self.health.write_ok()

    def on_write_error(self, error: str) -> None:
        """A commit failed. ``error`` goes to /health: pass a message, never a secret."""
        self.metrics.on_write_error()
        self.health.write_failed(error)

    def on_warmup_journal_incomplete(self, gap: Mapping[str, Any]) -> None:
        """The resumed state's journal lacks warm-up candles (``missing_candles``,
        ``warmup_candles``): shown on /health, which stays ok (trading is unaffected)."""
        self.health.warmup_journal_incomplete(gap)

    def set_portfolio(self, equity: float, cash: float | None = None,
                      open_positions: int | None = None) -> None:
        self.metrics.set_equity(equity, cash)
        if open_positions is not None:
            self.metrics.set_open_positions(open_positions)

    def _emit(self, event: str, **fields: Any) -> None:
        if self._log is not None:
            self._log.info(event, **fields)
