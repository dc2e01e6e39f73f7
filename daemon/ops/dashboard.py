"""The live dashboard for people, served by the daemon's own HTTP server (``OpsServer``).

Routes (registered by :meth:`DashboardHub.add_routes`):

* ``GET /`` — the page (or, when a token is required and the browser has no session, a
  login form); ``GET /static/{name}`` — its CSS/JS, shipped inside the package (no CDN);
* ``POST /login`` — the token in a form body; sets an ``HttpOnly; SameSite=Strict`` session
  cookie whose value is an HMAC of the token (never the token itself, never in a URL);
  ``POST /logout`` clears it;
* ``GET /api/dashboard`` — the snapshot as JSON; ``GET /events`` — server-sent events: one
  stream per browser, a ``snapshot`` event pushed after committed slices (coalesced: at
  most one build in flight and ``min_push_interval_s`` between pushes, so a fast replay
  cannot cause a storm) and a ``heartbeat`` event every ``heartbeat_s``.

What a snapshot shows and where it comes from:

* equity since the session's first trading slice, and its drawdown — rebuilt once from the
  journal (cash after the last fill + positions at their last consumed close), then one
  point per committed slice (``engine.equity()``); thinned to at most ``2 * max_points``
  for the chart, the maximum drawdown kept exact;
* open positions with entry, last price, unrealized PnL (net of the entry fee paid, as the
  equity counts it; ``entry_fee`` beside it) and the SL/TP/trailing levels —
  ``Engine.open_levels()`` of the running engine (the same state the next slice's exit
  check reads; ``/positions``' SQLite view is the fallback when no daemon is attached);
* the latest fills and their count — the SQLite journal through the state provider's
  database file, read-only, in a worker thread (a committed slice is visible at once
  under WAL, a half slice never);
* feed health — age of the last websocket update, reconnects, backfills (the feeds'
  counters), late and missing candles per asset (the ``late`` and ``slices`` tables,
  counted incrementally);
* slice lag (``Health.slice_lag_s``) and the last slice's step-to-commit time (after its
  candles arrived: the wait for them is the lag);
* the core assets' MTF ratings, labelled per RATINGS.md by :func:`tandem.core.ratings.label_of`.

Everything is read-only: no route changes trading state.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import SecretStr
from tandem.daemon.ops.health import Health
from tandem.daemon.ops.http import is_loopback_host
from tandem.daemon.ops.metrics import Metrics

__all__ = ["SESSION_COOKIE", "DashboardHub"]

SESSION_COOKIE = "tandem_session"
_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                 ".svg": "image/svg+xml"}
# The page loads only its own files; inline SVG is built with DOM calls (no inline script).
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_PUBLIC_PATHS = frozenset({"/", "/login", "/logout"})


def _static_files() -> dict[str, bytes]:
    """The page's files, read once from the package (``daemon/ops/static``)."""
    root = resources.files("tandem.daemon.ops") / "static"
    return {f.name: f.read_bytes() for f in root.iterdir()
            if f.is_file() and Path(f.name).suffix in _STATIC_TYPES}


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _sse(event: str, data: str) -> bytes:
    # ``data`` is one line of JSON (json.dumps never emits a raw newline).
    return f"event: {event}\ndata: {data}\n\n".encode()


class _EquityTrack:
    """Equity per trading slice: exact peak and maximum drawdown, a thinned series.

    ``start`` is the session's initial cash: the first peak and the base of "since start",
    as in the backtest's stats, so a first slice that pays an entry fee is a drawdown."""

    def __init__(self, max_points: int, start: float | None = None):
        self.max_points = max(16, int(max_points))
        self.points: list[tuple[int, float, float]] = []  # (ts_close ms, equity, drawdown)
        self.peak = -math.inf
        self.max_dd = 0.0
        self.first: float | None = None
        self.start: float | None = None
        self._stride, self._skipped = 1, 0
        self._last: tuple[int, float, float] | None = None
        self.set_start(start)

    def set_start(self, start: float | None) -> None:
        """The initial cash (ignored once points exist: their drawdowns are computed)."""
        if start is None or not math.isfinite(start) or self.points or self._last:
            return
        self.first = self.start = float(start)
        self.peak = max(self.peak, float(start))

    def add(self, ts: int, equity: float) -> None:
        if not math.isfinite(equity):
            return
        if self.first is None:
            self.first = equity
        self.peak = max(self.peak, equity)
        dd = equity / self.peak - 1.0 if self.peak > 0 else 0.0
        self.max_dd = min(self.max_dd, dd)
        point = (int(ts), equity, dd)
        self._last = point  # the chart always ends at the newest point
        self._skipped += 1
        if self._skipped >= self._stride:
            self._skipped = 0
            self.points.append(point)
            if len(self.points) > 2 * self.max_points:
                self.points = self.points[::2]  # halve the resolution, keep the span
                self._stride *= 2

    def with_history(self, history: Sequence[tuple[int, float]],
                     start: float | None = None) -> _EquityTrack:
        """A track of ``history`` (rebuilt from the journal; ``start``: the initial cash)
        followed by this one's points."""
        first_live = self.points[0][0] if self.points else None
        out = _EquityTrack(self.max_points, self.start if start is None else start)
        for ts, eq in history:
            if first_live is None or ts < first_live:
                out.add(ts, eq)
        mine = list(self.points)
        if self._last is not None and (not mine or mine[-1][0] != self._last[0]):
            mine.append(self._last)
        for ts, eq, _ in mine:
            out.add(ts, eq)
        out.max_dd = min(out.max_dd, self.max_dd)  # exact over the live part already
        return out

    def to_dict(self) -> dict[str, Any]:
        pts = list(self.points)
        last = self._last
        if last is not None and (not pts or pts[-1][0] != last[0]):
            pts.append(last)
        return {
            "points": [[t, e, d] for t, e, d in pts],
            "start": self.first,
            "last": pts[-1][1] if pts else None,
            "peak": None if self.peak == -math.inf else self.peak,
            "max_drawdown": self.max_dd,
        }


class _JournalReader:
    """Read-only queries on the state database (its own connection per call, in a thread)."""

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self._late: dict[str, int] = {}
        self._missing: dict[str, int] = {}
        self._slices_seen = -(2**63)
        self._tf: int | None = None
        self.initial_cash: float | None = None  # set by equity_history

    def equity_history(self, before_ts: int | None = None) -> list[tuple[int, float]]:
        """Equity after every trading slice, rebuilt from the journal: the cash after the
        last fill plus each position at its asset's last consumed close — the engine's
        ``equity()`` at that slice. Pure Python over cursors (no pandas in the daemon)."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True,
                               timeout=5.0)
        try:
            with contextlib.suppress(sqlite3.OperationalError, KeyError, ValueError, TypeError):
                return self._equity_history(conn, before_ts)
            return []
        finally:
            conn.close()

    def _equity_history(self, conn: sqlite3.Connection,
                        before_ts: int | None) -> list[tuple[int, float]]:
        from tandem.core.timeframes import timeframe_to_ms

        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        profile = json.loads(meta["profile_json"])
        tf = timeframe_to_ms(profile["base_timeframe"])
        cash = self.initial_cash = float(profile["initial_cash"])
        hi = 2**62 if before_ts is None else int(before_ts) - tf  # slice ts = close - tf
        slices = [r[0] for r in conn.execute(
            "SELECT ts FROM slices WHERE warmup = 0 AND ts < ? ORDER BY ts", (hi,))]
        if not slices:
            return []
        fills = conn.execute("SELECT ts, symbol, position_after, cash_after FROM fills "
                             "ORDER BY seq").fetchall()
        held = sorted({f[1] for f in fills})
        pos: dict[str, float] = {}
        last: dict[str, float] = {}
        out: list[tuple[int, float]] = []
        fi = 0
        candles = iter(())
        if held:
            marks = ",".join("?" * len(held))
            candles = conn.execute(
                f"SELECT ts, symbol, close FROM candles WHERE ts >= ? AND ts < ? "
                f"AND symbol IN ({marks}) ORDER BY ts", (slices[0], hi, *held))
        pending = next(candles, None)
        for ts in slices:
            while pending is not None and pending[0] <= ts:
                if pending[2] is not None and math.isfinite(pending[2]):
                    last[pending[1]] = float(pending[2])
                pending = next(candles, None)
            close_ts = ts + tf
            while fi < len(fills) and fills[fi][0] <= close_ts:
                _, symbol, after, cash_after = fills[fi]
                pos[symbol] = float(after)
                cash = float(cash_after)
                fi += 1
            eq = cash + sum(q * last.get(sym, math.nan) for sym, q in pos.items() if q != 0.0)
            out.append((close_ts, eq))
        return out

    def read(self, n_fills: int) -> dict[str, Any]:
        if not self.db_path.exists():
            return {"fills": [], "total": 0, "late": {}, "missing": {}}
        uri = f"{self.db_path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=5.0)
        conn.row_factory = sqlite3.Row
        try:
            with contextlib.suppress(sqlite3.OperationalError):  # tables not created yet
                # One snapshot for all queries: a slice committed between two of them would
                # otherwise be skipped by the incremental "missing" count for good.
                conn.execute("BEGIN")
                return self._read(conn, n_fills)
            return {"fills": [], "total": 0, "late": {}, "missing": {}}
        finally:
            conn.close()

    def _read(self, conn: sqlite3.Connection, n_fills: int) -> dict[str, Any]:
        cols = ("fill_id", "symbol", "ts", "side", "qty", "price", "fee", "reason",
                "position_after", "cash_after")
        rows = conn.execute(
            f"SELECT seq, {', '.join(cols)} FROM fills ORDER BY seq DESC LIMIT ?", (n_fills,)
        ).fetchall()
        total = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM fills").fetchone()[0]
        self._late = {s: n for s, n in conn.execute(
            "SELECT symbol, COUNT(*) FROM late GROUP BY symbol")}
        # Missing assets per slice, counted incrementally (slices only ever get appended).
        for ts, missing in conn.execute(
                "SELECT ts, missing FROM slices WHERE ts > ? AND missing != '[]' ORDER BY ts",
                (self._slices_seen,)):
            for s in json.loads(missing):
                self._missing[s] = self._missing.get(s, 0) + 1
            self._slices_seen = ts
        last = conn.execute("SELECT MAX(ts) FROM slices").fetchone()[0]
        last_close = None
        if last is not None:
            self._slices_seen = max(self._slices_seen, int(last))
            if self._tf is None:
                with contextlib.suppress(TypeError, KeyError, ValueError):
                    from tandem.core.timeframes import timeframe_to_ms

                    row = conn.execute(
                        "SELECT value FROM meta WHERE key = 'profile_json'").fetchone()
                    self._tf = timeframe_to_ms(json.loads(row[0])["base_timeframe"])
            last_close = None if self._tf is None else int(last) + self._tf
        return {"fills": [dict(r) for r in rows], "total": int(total or 0),
                "late": dict(self._late), "missing": dict(self._missing),
                "last_close": last_close}


class DashboardHub:
    """State behind the dashboard and the SSE fan-out. All methods run on the event loop."""

    def __init__(
        self,
        *,
        health: Health,
        metrics: Metrics,
        provider: Callable[[], Any] = lambda: None,
        token: SecretStr | None = None,
        max_points: int = 600,
        n_fills: int = 50,
        heartbeat_s: float = 15.0,
        min_push_interval_s: float = 0.1,
    ):
        self.health, self.metrics = health, metrics
        self._provider = provider
        self._token = token if token is not None and token.get_secret_value() else None
        self.n_fills, self.heartbeat_s = int(n_fills), float(heartbeat_s)
        self.min_push_interval_s = float(min_push_interval_s)
        self.daemon: Any = None
        self.equity = _EquityTrack(max_points)
        self.last_latency_s: float | None = None
        self.last_slice_ts: int | None = None
        self.slices = 0
        self._subs: set[asyncio.Queue[tuple[str, str] | None]] = set()
        self._builder: asyncio.Task[None] | None = None
        self._dirty = False
        self._last_push = 0.0
        self._reader: _JournalReader | None = None
        self._static: dict[str, bytes] | None = None
        self._closing = False
        self._seed: asyncio.Task[None] | None = None
        self.pushes = 0  # snapshots pushed (for tests and the bench)

    # --- wiring -------------------------------------------------------------------------
    def attach(self, daemon: Any) -> None:
        """The running daemon (duck-typed: ``stepper``, ``supervisor``, ``cfg``)."""
        self.daemon = daemon

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/api/dashboard", self._api)
        app.router.add_get("/events", self._events)
        app.on_shutdown.append(self._on_shutdown)

    # --- events (from Ops, on the slice path: cheap, never blocks) ----------------------
    def on_slice(self, ts_close_ms: int, latency_s: float,
                 fills: Sequence[Mapping[str, Any]] = ()) -> None:
        self.slices += 1
        self.last_slice_ts = int(ts_close_ms)
        self.last_latency_s = float(latency_s)
        d = self.daemon
        engine = getattr(getattr(d, "stepper", None), "engine", None)
        if engine is not None and getattr(d, "live", True):
            with contextlib.suppress(Exception):  # monitoring must never break trading
                if self.equity.first is None:
                    self.equity.set_start(float(engine.config.initial_cash))
                self.equity.add(int(ts_close_ms), float(engine.equity()))
        if self._subs:
            self.request_push()

    def request_push(self) -> None:
        """Schedule a snapshot push to every open stream (coalesced)."""
        self._dirty = True
        if self._builder is None or self._builder.done():
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to push to
                self._builder = asyncio.get_running_loop().create_task(
                    self._push_loop(), name="tandem-dashboard-push")

    async def _push_loop(self) -> None:
        while self._dirty and self._subs and not self._closing:
            wait = self._last_push + self.min_push_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty = False
            try:
                data = json.dumps(await self.snapshot(), allow_nan=False)
            except Exception:  # noqa: BLE001 - a bad snapshot must not kill the fan-out
                continue
            self._last_push = time.monotonic()
            self.pushes += 1
            for q in list(self._subs):
                _offer(q, ("snapshot", data))

    # --- the snapshot -------------------------------------------------------------------
    async def seed_history(self) -> None:
        """Equity since the session's first trading slice, rebuilt from the journal once
        (a restarted daemon's chart starts at its first trade, not at the restart)."""
        provider = self._provider()
        db = getattr(provider, "db_path", None)
        if db is None:
            return
        first_live = self.equity.points[0][0] if self.equity.points else None
        reader = _JournalReader(Path(db))
        history = await asyncio.to_thread(reader.equity_history, first_live)
        self.equity = self.equity.with_history(history, reader.initial_cash)

    async def snapshot(self) -> dict[str, Any]:
        if self._seed is None:
            self._seed = asyncio.ensure_future(self.seed_history())
        if not self._seed.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._seed)
        journal = await self._journal()
        d = self.daemon
        report = self.health.evaluate()
        positions = self._positions()
        if positions is None:
            positions = await self._provider_positions()
        feeds = self._feeds(journal)
        cfg = getattr(d, "cfg", None)
        return {
            "now": int(time.time() * 1000),
            "profile": getattr(cfg, "profile_name", None),
            "run_id": getattr(cfg, "run_id", None),
            "live": bool(getattr(d, "live", False)),
            "health": report.to_dict(),
            "slice": {
                # before the first slice of this process: the journal's last one
                "last_ts_close": self.last_slice_ts or journal.get("last_close"),
                "slices": self.slices,
                "pending": report.details.get("pending_slices", 0),
                "lag_s": round(self.health.slice_lag_s(), 3),
                "last_latency_ms": None if self.last_latency_s is None
                else round(self.last_latency_s * 1000, 3),
            },
            "equity": self._equity(),
            "positions": positions,
            "fills": {"latest": journal["fills"], "total": journal["total"]},
            "feeds": feeds,
            "ratings": self._ratings(),
        }

    def _equity(self) -> dict[str, Any]:
        out = self.equity.to_dict()
        engine = getattr(getattr(self.daemon, "stepper", None), "engine", None)
        if engine is not None:
            with contextlib.suppress(Exception):
                out["cash"] = _num(engine.cash)
                out["now"] = _num(engine.equity())
        return _clean(out)

    async def _journal(self) -> dict[str, Any]:
        provider = self._provider()
        db = getattr(provider, "db_path", None)
        if db is None:
            return {"fills": [], "total": 0, "late": {}, "missing": {}}
        if self._reader is None or self._reader.db_path != Path(db):
            self._reader = _JournalReader(Path(db))
        data = await asyncio.to_thread(self._reader.read, self.n_fills)
        data["fills"] = [_clean(r) for r in data["fills"]]
        return data

    def _positions(self) -> list[dict[str, Any]] | None:
        engine = getattr(getattr(self.daemon, "stepper", None), "engine", None)
        levels = getattr(engine, "open_levels", None)
        if levels is None:
            return None
        try:
            fee_rate = float(engine.config.fee_rate)
            return [_clean(_with_entry_fee(r, fee_rate)) for r in levels()]
        except Exception:  # noqa: BLE001
            return None

    async def _provider_positions(self) -> list[dict[str, Any]]:
        provider = self._provider()
        if provider is None:
            return []
        rows = provider.positions()
        if asyncio.iscoroutine(rows) or isinstance(rows, asyncio.Future):
            rows = await rows
        return [_clean({"symbol": r.get("symbol"), "qty": r.get("qty"),
                        "last": r.get("mark_price")}) for r in rows]

    def _feeds(self, journal: Mapping[str, Any]) -> list[dict[str, Any]]:
        sup = getattr(self.daemon, "supervisor", None)
        feeds = list(getattr(sup, "feeds", None) or [])
        now_wall, now_mono = time.time(), time.monotonic()
        late, missing = journal.get("late", {}), journal.get("missing", {})
        rows = []
        seen = set()
        for f in feeds:
            symbol = str(getattr(f, "symbol", "?"))
            seen.add(symbol)
            at = getattr(f, "last_update_at", None)
            rows.append({
                "symbol": symbol,
                # monotonic -> wall clock, so the browser can age it without asking again
                "last_update_ms": None if at is None
                else int((now_wall - (now_mono - float(at))) * 1000),
                "reconnects": int(getattr(f, "reconnects", 0) or 0),
                "backfills": int(getattr(f, "backfills", 0) or 0),
                "late": int(late.get(symbol, 0)),
                "missing": int(missing.get(symbol, 0)),
                "busy": bool(getattr(f, "busy", False)),
            })
        for symbol in sorted(set(late) | set(missing)):  # no daemon attached: the journal
            if symbol not in seen:
                rows.append({"symbol": symbol, "last_update_ms": None, "reconnects": None,
                             "backfills": None, "late": int(late.get(symbol, 0)),
                             "missing": int(missing.get(symbol, 0)), "busy": False})
        return rows

    def _ratings(self) -> dict[str, Any]:
        stepper = getattr(self.daemon, "stepper", None)
        fn = getattr(stepper, "core_ratings", None)
        if fn is None:
            return {"timeframes": [], "rows": []}
        from tandem.core.ratings import label_of  # RATINGS.md thresholds live in the core only

        try:
            table = fn()
        except Exception:  # noqa: BLE001
            return {"timeframes": [], "rows": []}
        tfs: list[str] = []
        rows = []
        for symbol, by_tf in table.items():
            for tf in by_tf:
                if tf not in tfs:
                    tfs.append(tf)
            rows.append({
                "symbol": symbol,
                "values": {tf: _num(v) for tf, v in by_tf.items()},
                "labels": {tf: (label_of(v) if _num(v) is not None else None)
                           for tf, v in by_tf.items()},
            })
        return {"timeframes": tfs, "rows": rows}

    # --- auth ---------------------------------------------------------------------------
    @property
    def auth_required(self) -> bool:
        return self._token is not None

    def _session_value(self) -> str:
        # An HMAC of the token: the cookie is useless anywhere else, and changing the token
        # logs every browser out.
        key = self._token.get_secret_value().encode() if self._token else b""
        return hmac.new(key, b"tandem-dashboard-session-v1", hashlib.sha256).hexdigest()

    def has_session(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        given = request.cookies.get(SESSION_COOKIE, "")
        # surrogateescape: a cookie of non-UTF-8 bytes is a wrong session, not a 500
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   self._session_value().encode())

    def allows(self, request: web.Request) -> bool:
        """May this request pass without a bearer header? (The OpsServer middleware asks.)
        The login page and the page's static files are public; everything else needs the
        session cookie, and only for reading (GET/HEAD)."""
        path = request.path
        if path in _PUBLIC_PATHS or path.startswith("/static/"):
            return True
        return request.method in ("GET", "HEAD") and self.has_session(request)

    def _host_ok(self, request: web.Request) -> bool:
        """Without a token the page is only for loopback names: a web page a person visits
        cannot rebind its own domain to 127.0.0.1 and read the dashboard (DNS rebinding)."""
        if self._token is not None:
            return True
        try:
            host = request.url.host  # from the Host header, port and brackets removed
        except ValueError:
            return False
        return is_loopback_host(host)

    # --- handlers -----------------------------------------------------------------------
    def _file(self, name: str) -> bytes | None:
        if self._static is None:
            self._static = _static_files()
        return self._static.get(name)

    def _html(self, name: str, status: int = 200, **subs: str) -> web.Response:
        body = (self._file(name) or b"").decode()
        for key, value in subs.items():
            body = body.replace("{{" + key + "}}", value)
        return web.Response(text=body, status=status, content_type="text/html",
                            headers=_SECURITY_HEADERS)

    async def _index(self, request: web.Request) -> web.Response:
        if not self._host_ok(request):
            raise web.HTTPMisdirectedRequest(text="use http://127.0.0.1 or http://localhost")
        if not self.has_session(request):
            return self._html("login.html", message="")
        return self._html("index.html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        if self._token is None:
            raise web.HTTPSeeOther("/")
        try:
            form = await request.post()
        except (ValueError, LookupError):  # bytes that are not UTF-8, an unknown charset
            return self._html("login.html", status=400,
                              message='<p class="error">Unreadable form.</p>')
        given = str(form.get("token", "")).strip().encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, self._token.get_secret_value().encode()):
            await asyncio.sleep(0.3)  # slows guessing; the token is >= 16 chars anyway
            return self._html("login.html", status=401,
                              message='<p class="error">Wrong token.</p>')
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(SESSION_COOKIE, self._session_value(), httponly=True,
                        samesite="Strict", path="/")
        raise resp

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        resp = web.HTTPSeeOther("/")
        resp.del_cookie(SESSION_COOKIE, path="/")
        raise resp

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._file(name)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type=_STATIC_TYPES[Path(name).suffix],
                            headers={"X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "no-cache"})

    async def _api(self, request: web.Request) -> web.Response:
        if not self._host_ok(request):
            raise web.HTTPMisdirectedRequest(text="use http://127.0.0.1 or http://localhost")
        return web.Response(text=json.dumps(await self.snapshot(), allow_nan=False),
                            content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._host_ok(request):
            raise web.HTTPMisdirectedRequest(text="use http://127.0.0.1 or http://localhost")
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a reverse proxy must not buffer the stream
        })
        await resp.prepare(request)
        q: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=4)
        self._subs.add(q)
        try:
            await resp.write(b"retry: 3000\n\n")
            await resp.write(_sse("snapshot", json.dumps(await self.snapshot(),
                                                         allow_nan=False)))
            while not self._closing:
                try:
                    item = await asyncio.wait_for(q.get(), timeout=self.heartbeat_s)
                except TimeoutError:
                    item = ("heartbeat", json.dumps(self._heartbeat(), allow_nan=False))
                if item is None:
                    break
                await resp.write(_sse(*item))
        except (ConnectionResetError, ConnectionError):
            pass  # the browser went away
        finally:
            self._subs.discard(q)
        return resp

    def _heartbeat(self) -> dict[str, Any]:
        report = self.health.evaluate()
        return {"now": int(time.time() * 1000), "health": report.to_dict(),
                "lag_s": round(self.health.slice_lag_s(), 3)}

    async def _on_shutdown(self, app: web.Application) -> None:
        self.close()

    def close(self) -> None:
        """End every open stream (the server's shutdown would otherwise wait for them)."""
        self._closing = True
        for q in list(self._subs):
            _offer(q, None)
        if self._builder is not None:
            self._builder.cancel()

    @property
    def streams(self) -> int:
        return len(self._subs)


def _offer(q: asyncio.Queue[Any], item: Any) -> None:
    """Put without waiting; a slow browser loses its oldest pending update, not the newest."""
    while True:
        try:
            q.put_nowait(item)
            return
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                q.get_nowait()


def _with_entry_fee(row: Mapping[str, Any], fee_rate: float) -> dict[str, Any]:
    """An open position's unrealized PnL net of the entry fee already paid, as the equity
    counts it: the fee left the cash at the entry fill, so ``(last - entry) x qty`` alone
    (the engine's ``open_levels``) showed a flat position as +0 while the equity showed it
    -fee. ``entry_fee`` = ``|qty| x entry x fee_rate``: the kernel's fee of the units still
    held at their (average) entry price; a position opened in one fill paid exactly that.
    The exit's fee is not yet paid and not deducted."""
    out = dict(row)
    if out.get("unrealized") is not None and out.get("entry") is not None:
        fee = abs(float(out["qty"])) * float(out["entry"]) * fee_rate  # the kernel's order
        out["entry_fee"] = fee
        out["unrealized"] = float(out["unrealized"]) - fee
    return out


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, float) or hasattr(v, "item"):
            out[k] = _num(v)
        elif isinstance(v, Mapping):
            out[k] = _clean(v)
        elif isinstance(v, list):
            out[k] = [_clean(x) if isinstance(x, Mapping) else
                      ([_num(y) if isinstance(y, float) else y for y in x]
                       if isinstance(x, (list, tuple)) else x) for x in v]
        else:
            out[k] = v
    return out
