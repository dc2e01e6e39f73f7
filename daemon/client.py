"""Build the daemon's ccxt.pro client: the core's exchange config + our live hooks.

The endpoint URLs come from settings (``TANDEM_EXCHANGE_REST_URL`` /
``TANDEM_EXCHANGE_WS_URL``), so the daemon runs against the real exchange, a testnet, the
emulator, or any server speaking the exchange's protocol.
"""

from __future__ import annotations

from typing import Any

import ccxt.pro as ccxtpro
from tandem.core.exchange import exchange_config as core_exchange_config
from tandem.daemon.feeds import make_live_exchange
from tandem.daemon.restbudget import RestBudget
from tandem.daemon.venues import VenueAdapter, adapter_for


def exchange_config(exchange_id: str, timeout_ms: int = 10_000) -> dict[str, Any]:
    """The ccxt config of a daemon venue: the core's, spot markets only.

    Spot only, on every venue (Binance, Bybit and OKX all read ``fetchMarkets.types``):
    ``load_markets`` must not call the futures and options hosts. Endpoint overrides are
    the venue adapter's (:meth:`tandem.daemon.venues.VenueAdapter.point_at`), so that each
    venue gets its own URL layout.
    """
    return core_exchange_config(exchange_id, timeout_ms=timeout_ms,
                                options={"fetchMarkets": {"types": ["spot"]}})


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
    cfg = exchange_config(exchange_id, timeout_ms)
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
