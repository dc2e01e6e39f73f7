"""Build the daemon's ccxt.pro client: the core's exchange config + our live hooks.

The endpoint URLs come from settings (``TANDEM_EXCHANGE_REST_URL`` /
``TANDEM_EXCHANGE_WS_URL``), so the daemon runs against the real exchange, a testnet, the
emulator, or any server speaking the exchange's protocol.
"""

from __future__ import annotations

from typing import Any

import ccxt.pro as ccxtpro
from tandem.core.exchange import rest_api_base
from tandem.daemon.feeds import make_live_exchange
from tandem.daemon.restbudget import RestBudget
from tandem.daemon.venues import VenueAdapter, adapter_for


def exchange_config(rest_url: str | None = None, ws_url: str | None = None) -> dict[str, Any]:
    """ccxt config for Binance-protocol endpoints (DESIGN.md: point ccxt at a local server).

    Prefers the core's factory when present, so the backtest and the daemon configure ccxt
    the same way.
    """
    try:
        from tandem.core.exchange import exchange_config as core_config  # type: ignore[attr-defined]

        return core_config(rest_url=rest_url, ws_url=ws_url)
    except (ImportError, AttributeError, TypeError):
        pass
    cfg: dict[str, Any] = {
        "enableRateLimit": True,
        "newUpdates": True,
        # Without this, load_markets also calls the futures hosts.
        "options": {"fetchMarkets": {"types": ["spot"]}, "OHLCVLimit": 1000},
    }
    urls: dict[str, Any] = {}
    if rest_url:
        urls.setdefault("api", {})["public"] = rest_api_base(rest_url)
    if ws_url:
        urls.setdefault("api", {})["ws"] = {"spot": ws_url.rstrip("/")}
    if urls:
        cfg["urls"] = urls
    return cfg


def build_exchange(exchange_id: str, rest_url: str | None = None, ws_url: str | None = None,
                   timeout_ms: int = 10_000, *, streams_per_connection: int | None = None,
                   subscribe_msgs_per_s: int | None = None,
                   rest_weight_per_min: int | None = None, venue: VenueAdapter | None = None):
    """A ccxt.pro exchange with :class:`tandem.daemon.feeds.LiveExchangeMixin` hooks: klines
    subscribed in batches (:mod:`tandem.daemon.subscribe`), klines REST paced by a request-weight
    budget of ``rest_weight_per_min`` (:mod:`tandem.daemon.restbudget`). The venue's adapter
    (:mod:`tandem.daemon.venues`) decodes its frames and gives the defaults of the limits (None);
    a venue without one raises :class:`tandem.daemon.venues.VenueError`. ``venue``: an adapter
    not (yet) registered, for its tests."""
    venue = adapter_for(exchange_id) if venue is None else venue
    base = getattr(ccxtpro, exchange_id)
    cfg = exchange_config(rest_url, ws_url)
    cfg["timeout"] = timeout_ms
    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    ex = make_live_exchange(
        base, cfg, rest_budget=RestBudget(pick(rest_weight_per_min, venue.rest_weight_per_min),
                                          burst=venue.rest_burst),
        venue=venue,
        streams_per_connection=pick(streams_per_connection,
                                    venue.default_streams_per_connection),
        per_message=venue.streams_per_message,
        msgs_per_s=pick(subscribe_msgs_per_s, venue.subscribe_msgs_per_s))
    venue.point_at(ex, rest_url, ws_url)
    return ex
