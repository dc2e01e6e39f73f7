"""ccxt / ccxt.pro client factory: one place that knows how to point a client at a server.

Exchange endpoints are settings (``TANDEM_EXCHANGE_REST_URL`` / ``TANDEM_EXCHANGE_WS_URL``
in the daemon's settings, ``--rest-url`` of the downloader), so the same code runs against
the real exchange, a testnet or the project's emulators. Each venue's URL layout
(:func:`url_overrides`; the daemon's venue adapters use it too, so there is one rule):

* **binance** spot: ``rest_url`` -> ``urls.api.public``, the ``/api/v3`` base (a bare
  ``http://host:port`` gets ``/api/v3`` appended); ``ws_url`` -> ``urls.api.ws.spot`` and
  ``.margin`` (ccxt.pro appends ``/<stream index>``);
* **bybit**: ``rest_url`` -> ``urls.api.public``, the host (ccxt appends ``/v5/market/...``;
  a trailing ``/v5`` is dropped); ``ws_url`` -> ``urls.api.ws.public.spot``;
* **okx**: ``rest_url`` -> ``urls.api.rest``, the host (ccxt appends ``/api/v5/...``; a
  trailing ``/api/v5`` is dropped); ``ws_url`` -> ``urls.api.ws`` (ccxt.pro appends
  ``/business``, ``/public``).

``options.fetchMarkets.types = ["spot"]`` always on these three, or ``load_markets`` would
also read the futures/options markets (other hosts on Binance), which an override may not
redirect and an emulator does not serve.

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
    if exchange_id in KNOWN_VENUES:
        opts["fetchMarkets"] = {"types": ["spot"]}
    urls = url_overrides(exchange_id, rest_url, ws_url)
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


#: venues whose URL layout (:func:`url_overrides`) and spot-only markets this module knows
KNOWN_VENUES = ("binance", "bybit", "okx")


def url_overrides(exchange_id: str, rest_url: str | None = None,
                  ws_url: str | None = None) -> dict[str, Any]:
    """The ``urls.api`` entries that point ``exchange_id``'s ccxt client at ``rest_url`` /
    ``ws_url`` (module docstring); ``{}`` without overrides. A venue whose layout is not
    known raises ``ValueError`` (a silently ignored override would reach the real exchange)."""
    if rest_url is None and ws_url is None:
        return {}
    if exchange_id not in KNOWN_VENUES:
        raise ValueError(f"URL overrides are only defined for {', '.join(KNOWN_VENUES)}, "
                         f"not {exchange_id!r}")
    api: dict[str, Any] = {}
    ws = ws_url.strip().rstrip("/") if ws_url is not None else None
    if exchange_id == "binance":
        if rest_url is not None:
            api["public"] = rest_api_base(rest_url)
        if ws is not None:
            api["ws"] = {"spot": ws, "margin": ws}
    elif exchange_id == "bybit":
        if rest_url is not None:
            api["public"] = _strip_suffix(rest_url, "/v5")
        if ws is not None:
            api["ws"] = {"public": {"spot": ws}}
    else:  # okx
        if rest_url is not None:
            api["rest"] = _strip_suffix(rest_url, "/api/v5")
        if ws is not None:
            api["ws"] = ws
    return api


def point_at(exchange: Any, rest_url: str | None = None, ws_url: str | None = None) -> None:
    """Point an existing ccxt client at other endpoints (:func:`url_overrides`), keeping its
    other hosts."""
    patch = url_overrides(exchange.id, rest_url, ws_url)
    if patch:
        exchange.urls["api"] = _deep_merge(exchange.urls.get("api") or {}, patch)


def _strip_suffix(url: str, suffix: str) -> str:
    base = url.strip().rstrip("/")
    return base[: -len(suffix)] if base.endswith(suffix) else base


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
