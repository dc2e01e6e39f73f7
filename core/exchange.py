"""ccxt / ccxt.pro client factory: one place that knows how to point a client at a server.

Exchange endpoints are settings (``TANDEM_EXCHANGE_REST_URL`` / ``TANDEM_EXCHANGE_WS_URL``
in the daemon's settings), so the same code runs against the real exchange, a testnet or
the emulator. For Binance spot (DESIGN.md, "What we know about ccxt.pro"):

* ``rest_url`` -> ``urls.api.public`` (the ``/api/v3`` base; a bare ``http://host:port`` gets
  ``/api/v3`` appended);
* ``ws_url`` -> ``urls.api.ws.spot`` (ccxt.pro appends ``/<stream index>``);
* ``options.fetchMarkets.types = ["spot"]`` always, or ``load_markets`` would also call the
  futures hosts, which an override cannot redirect and an emulator does not serve.

Building the client is pure configuration (no I/O happens until a method is awaited), which
is why it may live in ``core``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import ccxt

Flavor = Literal["pro", "async", "sync"]


def exchange_config(
    exchange_id: str = "binance",
    *,
    rest_url: str | None = None,
    ws_url: str | None = None,
    timeout_ms: int | None = None,
    enable_rate_limit: bool = True,
    options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ccxt constructor config for ``exchange_id`` with optional endpoint overrides."""
    config: dict[str, Any] = {"enableRateLimit": enable_rate_limit}
    if timeout_ms is not None:
        config["timeout"] = int(timeout_ms)
    opts: dict[str, Any] = {}
    urls: dict[str, Any] = {}
    if exchange_id == "binance":
        # Spot only: other market types live on other hosts (fapi/dapi/eapi/sapi).
        opts["fetchMarkets"] = {"types": ["spot"]}
        if rest_url is not None:
            urls["public"] = rest_api_base(rest_url)
        if ws_url is not None:
            urls["ws"] = {"spot": ws_url.rstrip("/"), "margin": ws_url.rstrip("/")}
    elif rest_url is not None or ws_url is not None:
        raise ValueError(f"URL overrides are only defined for binance, not {exchange_id!r}")
    if urls:
        config["urls"] = {"api": urls}
    if options:
        opts = _deep_merge(opts, options)
    if opts:
        config["options"] = opts
    if extra:
        config = _deep_merge(config, extra)
    return config


def rest_api_base(rest_url: str) -> str:
    """Binance spot's REST base for a user's URL: ``http://host:port`` and
    ``http://host:port/api/v3`` (with or without a trailing slash) both give
    ``http://host:port/api/v3``.

    The one place that normalises it: the backtest's downloader and the daemon's client both
    set ``urls.api.public`` from this, so a bare URL works for both (the daemon used to
    overwrite the appended ``/api/v3`` with the raw value and crash on its first request).
    """
    base = rest_url.strip().rstrip("/")
    return base if base.endswith("/api/v3") else base + "/api/v3"


def create_exchange(
    exchange_id: str = "binance",
    *,
    flavor: Flavor = "pro",
    rest_url: str | None = None,
    ws_url: str | None = None,
    timeout_ms: int | None = None,
    enable_rate_limit: bool = True,
    options: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    """A configured ccxt client: ``pro`` (websocket + async REST), ``async`` or ``sync`` REST.

    The caller owns the client: ``await client.close()`` for ``pro``/``async``.
    """
    config = exchange_config(
        exchange_id, rest_url=rest_url, ws_url=ws_url, timeout_ms=timeout_ms,
        enable_rate_limit=enable_rate_limit, options=options, extra=extra,
    )
    if flavor == "pro":
        import ccxt.pro as module
    elif flavor == "async":
        import ccxt.async_support as module
    elif flavor == "sync":
        module = ccxt
    else:
        raise ValueError(f"unknown flavor {flavor!r}")
    if not hasattr(module, exchange_id):
        raise ValueError(f"ccxt ({flavor}) has no exchange {exchange_id!r}")
    return getattr(module, exchange_id)(config)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
