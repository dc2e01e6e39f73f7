"""Read-only HTTP endpoint of the daemon (aiohttp): ``/health``, ``/metrics``, ``/positions``,
``/fills?since=``.

Security posture, because the daemon runs for weeks next to exchange credentials:

* binds ``127.0.0.1`` by default; binding anything that is not loopback is **refused**
  (``InsecureBindError``, raised before the socket opens) unless a bearer token is set;
* with a token, every request (health included) needs ``Authorization: Bearer <token>``,
  compared in constant time; otherwise ``401``;
* GET/HEAD only: there is no route that changes anything (``405`` for other methods);
* the token is a ``SecretStr`` end to end and never logged; aiohttp's access log is off
  (we log no request lines at all, so nothing a client sends can leak into the journal);
  aiohttp's own error reports (a malformed or oversized request: its exception text and
  traceback quote the request's bytes, a bearer token included) are replaced by one JSON
  line naming the error type and status (:class:`_RequestErrorLog`).

The data behind ``/positions`` and ``/fills`` comes from a ``StateProvider`` (the daemon's
SQLite state), sync or async; ``/health`` and ``/metrics`` come from the ops models.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import ipaddress
import json
import math
import sys
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Protocol

import structlog
from aiohttp import web
from pydantic import SecretStr
from tandem.daemon.ops.health import Health
from tandem.daemon.ops.metrics import CONTENT_TYPE_LATEST, Metrics

__all__ = [
    "DEFAULT_FILLS_LIMIT",
    "MAX_FILLS_LIMIT",
    "InsecureBindError",
    "OpsServer",
    "StateProvider",
    "is_loopback_host",
]

DEFAULT_FILLS_LIMIT = 1000
MAX_FILLS_LIMIT = 10_000

Rows = Sequence[Mapping[str, Any]]


class StateProvider(Protocol):
    """What the HTTP layer reads from the daemon's state (methods may be async)."""

    def positions(self) -> Rows | Awaitable[Rows]:
        """Open paper positions, one mapping per asset."""

    def fills(self, since: int | None, limit: int, since_id: int | None = None,
              ) -> Rows | Awaitable[Rows]:
        """Journal rows with ``ts > since`` (all when None), oldest first, at most ``limit``
        (see :meth:`tandem.daemon.ops.provider.SqliteStateProvider.fills_sync`). A provider with
        a unique journal sequence returns it per row as ``seq`` and honours ``since_id``
        (``seq > since_id``); ``since_id`` is passed only when a client sent it."""


class InsecureBindError(ValueError):
    """Refusing to listen on a non-loopback address without a bearer token."""


def is_loopback_host(host: str | None) -> bool:
    """True only for addresses that cannot be reached from another machine.

    Hostnames other than ``localhost`` count as non-loopback: resolving them could change
    under our feet, and the safe failure is to demand a token.
    """
    if not host:
        return False  # aiohttp binds every interface for an empty host
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _secret(token: SecretStr | str | None) -> SecretStr | None:
    if token is None:
        return None
    token = token if isinstance(token, SecretStr) else SecretStr(token)
    return token if token.get_secret_value() else None  # "" means no token


def _jsonable(value: Any) -> Any:
    """JSON has no NaN/inf: map them to null; numpy scalars to Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(_jsonable(body), allow_nan=False),
        status=status,
        content_type="application/json",
    )


class _RequestErrorLog:
    """Stands in for the ``aiohttp.server`` logger of the request handler.

    aiohttp logs a request it cannot parse (``BadHttpMessage``, ``LineTooLong``...) with
    ``logger.exception``: the exception's message and the traceback quote the offending
    request bytes, e.g. an oversized ``Authorization`` header. Here each report becomes ONE
    structured line with aiohttp's fixed message text, the error type and the HTTP status;
    neither the exception's text nor the traceback (the client's bytes) is ever logged.
    """

    def __init__(self) -> None:
        self._log = structlog.get_logger(component="ops.http")

    def _emit(self, level: str, args: tuple[Any, ...], exc_info: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if exc is None and exc_info:
            exc = sys.exc_info()[1]
        text = args[0] if args and isinstance(args[0], str) else ""
        # aiohttp's format strings are constants ("Error handling request from %s"); only
        # the text before the first placeholder is kept, never a formatted argument.
        getattr(self._log, level)(
            "http_request_error", detail=text.split("%", 1)[0].strip()[:80],
            error=None if exc is None else type(exc).__name__,
            status=getattr(exc, "code", None) or getattr(exc, "status", None))

    def debug(self, *args: Any, **kw: Any) -> None:
        self._emit("debug", args, kw.get("exc_info"))

    def info(self, *args: Any, **kw: Any) -> None:
        self._emit("info", args, kw.get("exc_info"))

    def warning(self, *args: Any, **kw: Any) -> None:
        self._emit("warning", args, kw.get("exc_info"))

    def error(self, *args: Any, **kw: Any) -> None:
        self._emit("error", args, kw.get("exc_info"))

    def exception(self, *args: Any, **kw: Any) -> None:
        self._emit("error", args, kw.get("exc_info", True))


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class OpsServer:
    """The daemon's read-only HTTP server. ``await start()`` → bound port; ``await stop()``."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        health: Health,
        provider: StateProvider | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: SecretStr | str | None = None,
        dashboard: Any = None,
    ):
        self._token = _secret(token)
        self.dashboard = dashboard  # daemon.ops.dashboard.DashboardHub: "/" and its routes
        if not is_loopback_host(host) and self._token is None:
            raise InsecureBindError(
                f"settings: TANDEM_HTTP_HOST: {host!r} is not a loopback address; refusing to "
                "serve it without a bearer token (set TANDEM_HTTP_TOKEN, or bind 127.0.0.1)"
            )
        self.metrics, self.health, self.provider = metrics, health, provider
        self.host, self._port = host, int(port)
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    @property
    def auth_required(self) -> bool:
        return self._token is not None

    @property
    def port(self) -> int:
        """The bound port (the real one after ``start()`` when 0 was asked)."""
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware])
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/positions", self._positions)
        app.router.add_get("/fills", self._fills)
        if self.dashboard is not None:
            self.dashboard.add_routes(app)
        return app

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # A browser on the dashboard authenticates with its session cookie instead (read-only).
        if self._token is not None and not (self.dashboard is not None
                                            and self.dashboard.allows(request)):
            header = request.headers.get("Authorization", "")
            scheme, _, given = header.partition(" ")
            expected = self._token.get_secret_value().encode()
            # surrogateescape: a header with bytes that are not UTF-8 reaches us with lone
            # surrogates, which a strict encode turned into a 500; as bytes it is just wrong.
            given_b = given.strip().encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given_b, expected):
                return web.json_response(
                    {"error": "unauthorized"}, status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="tandem"'},
                )
        return await handler(request)

    # --- handlers ----------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        report = self.health.evaluate()
        # 503 when degraded so `curl -f`, Docker's HEALTHCHECK and load balancers see it.
        return _json_response(report.to_dict(), status=200 if report.ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        # Rendering a few hundred series takes milliseconds: do it off the event loop so a
        # scrape never delays a slice by more than a GIL switch interval.
        body = await asyncio.to_thread(self.metrics.render)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def _positions(self, request: web.Request) -> web.Response:
        if self.provider is None:
            return _json_response({"error": "no state yet"}, status=503)
        rows = await _maybe_await(self.provider.positions())
        return _json_response({"positions": list(rows)})

    async def _fills(self, request: web.Request) -> web.Response:
        try:
            since = _int_param(request, "since", None)
            limit = _int_param(request, "limit", DEFAULT_FILLS_LIMIT)
            since_id = _int_param(request, "since_id", None)
        except ValueError as exc:
            return _json_response({"error": str(exc)}, status=400)
        if limit < 1:  # not "one row": a client asking for none (or -5) has a bug to see
            return _json_response({"error": f"limit must be at least 1, got {limit}"}, status=400)
        limit = min(int(limit), MAX_FILLS_LIMIT)  # a page is at most this big; cursors go on
        if self.provider is None:
            return _json_response({"error": "no state yet"}, status=503)
        cursor = {} if since_id is None else {"since_id": since_id}
        rows = [dict(r) for r in await _maybe_await(self.provider.fills(since, limit, **cursor))]
        # Two cursors. next_since_id: the last row's journal sequence number, unique, so a
        # page boundary can never fall between fills that share a ts (follow it with
        # ?since_id=). next_since (ts, kept for existing clients): safe because a page
        # selected by since alone is never cut inside one bar's fills (the provider).
        seqs = [r.pop("seq") for r in rows if "seq" in r]
        next_since = max((int(r["ts"]) for r in rows), default=since)
        next_since_id = int(seqs[-1]) if seqs else since_id
        return _json_response({"fills": rows, "next_since": next_since,
                               "next_since_id": next_since_id})

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; returns the bound port (useful with ``port=0``)."""
        # access_log=None: request lines (paths, headers) never reach the logs.
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     logger=_RequestErrorLog())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self._port = server.sockets[0].getsockname()[1]
        return self._port

    async def stop(self) -> None:
        """Stop listening and close open connections (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


#: What each integer query parameter is, for its error message.
_PARAM_MEANING = {"since": "ms since the epoch", "limit": "rows per page"}
_INT64 = (-(2**63), 2**63 - 1)  # what SQLite can compare with: larger ones answered 500


def _int_param(request: web.Request, name: str, default: int | None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    meaning = _PARAM_MEANING.get(name, "")
    what = f"{name} must be an integer" + (f" ({meaning})" if meaning else "")
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(what) from None
    if not _INT64[0] <= value <= _INT64[1]:
        raise ValueError(f"{what} within a 64-bit range")
    return value
