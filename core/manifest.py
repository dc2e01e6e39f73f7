"""The strategy manifest (``manifest.json``): pydantic models, loader and clear errors.

Layout (DESIGN.md "Configuration", docs/CONTRACTS.md "Engine")::

    {"version": 1, "default_profile": "crypto_rating_all",
     "profiles": {"crypto_rating_all": {
        "strategy": "rating_all", "exchange": "binance",
        "core_assets": ["BTC/USDT", ...], "universe": [...],
        "base_timeframe": "1h", "timeframes": ["1h", "4h", "1d"],
        "mtf": {"mode": "wide", "weights": {"1h": 1, "4h": 1, "1d": 1}, "min_agree": null},
        "entry_threshold": 0.1, "exit_threshold": -0.1,
        "exit_rules": {...}, "execution": {...}, "portfolio": {...},
        "initial_cash": 10000, "warmup_bars": null}}}

Every model forbids unknown keys and is strict about types (``"5"`` is not a number), so a
typo fails loudly. Every number must be finite (JSON's ``Infinity``/``NaN`` and ``1e400``,
which Python reads as infinity, are refused), a JSON key may appear once per object, and the
file is bounded (:data:`MAX_MANIFEST_BYTES`, :data:`MAX_SYMBOLS` per list,
:data:`MAX_JSON_DEPTH` levels) so a hostile or broken file fails fast instead of hanging.
Any problem raises :class:`ManifestError` whose message names the file, the profile and the
field (quoting at most 80 characters of any value); drivers print it and exit non-zero
before any output (``python -m tandem.core.manifest manifest.json`` does exactly that).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from tandem.core.quoting import clip, quote
from tandem.core.timeframes import (
    EXCHANGE_TIMEFRAMES,
    TimeframeError,
    check_htf,
    timeframe_to_ms,
)

RATING_COLUMNS = {"rating_ma": 0, "rating_osc": 1, "rating_all": 2}
# Extra highest-timeframe bars beyond the longest lookback, so exponential seeds (EMA/RMA,
# which Pine seeds with an SMA) have partly converged before the first tradable bar.
WARMUP_MARGIN_HTF_BARS = 50
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")
_PROFILE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
#: Size limits. The shipped manifest is ~10 kB and its deepest value 5 levels down; Binance
#: lists ~2,000 spot pairs. These bounds are far above any real use and keep validation (and
#: the engine arrays sized by the asset count) fast; beyond them the file is refused.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_SYMBOLS = 5000
MAX_JSON_DEPTH = 16
#: An explicit warm-up may span at most 20 years of base bars (the derived one spans < 5):
#: more is a typo, and 10**15 bars overflowed the backtest's timestamps (a traceback).
MAX_WARMUP_SPAN_MS = int(20 * 365.25 * 86_400_000)
# A whole message is capped too: a safety net should some value reach it unquoted.
_MAX_MESSAGE = 1000


class ManifestError(ValueError):
    """An invalid manifest; the message names the file, profile and field."""

    def __init__(self, message: str, *, profile: str | None = None, field: str | None = None):
        super().__init__(clip(message, _MAX_MESSAGE))
        self.profile = profile
        self.field = field


class _FieldProblem(Exception):
    """Raised from cross-field checks. Not a ValueError, so pydantic lets it through and the
    loader can name the exact field (pydantic would report a model-level error without one)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field must be finite (an infinite initial_cash would
    # otherwise pass validation and crash profile_hash, or poison every equity value).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def _count(n: int) -> str:
    # str() of a huge int is slow and past 4300 digits refused: show its magnitude instead
    return str(n) if abs(n) < 10**30 else f"~10^{int(n.bit_length() * 0.30103)}"


def _check_tf(tf: str) -> str:
    if len(tf) > 8:  # no timeframe is this long; keep the message short
        raise ValueError(f"invalid timeframe {quote(tf)}")
    try:
        timeframe_to_ms(tf)
    except TimeframeError as exc:
        raise ValueError(str(exc)) from None
    if tf not in EXCHANGE_TIMEFRAMES:
        raise ValueError(f"timeframe {quote(tf)} is not offered by exchanges; use one of {', '.join(EXCHANGE_TIMEFRAMES)}")
    return tf


class MtfConfig(_Strict):
    """How the timeframes' ratings combine into one signal."""

    mode: Literal["wide", "vote"] = "wide"
    #: timeframe -> weight (>= 0). Omitted: every timeframe weighs 1.
    weights: dict[str, float] | None = None
    #: vote mode only: the summed weight of agreeing timeframes needed for a signal
    #: (``>=`` counts). Same units as ``weights``: with weights 1/1/1, ``2`` = two of three.
    min_agree: float | None = Field(default=None, gt=0)

    @field_validator("weights")
    @classmethod
    def _weights_non_negative(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v is not None:
            for tf, w in v.items():
                if not math.isfinite(w) or w < 0:
                    raise ValueError(f"weight of {quote(tf)} must be a finite number >= 0, got {w}")
        return v


class ExitRules(_Strict):
    """SL/TP/trailing overlay; fractions of the fill price (0.05 = 5 %); null or 0 = off."""

    stop_loss_pct: float | None = Field(default=None, ge=0, lt=1)
    take_profit_pct: float | None = Field(default=None, ge=0, le=100)
    trailing_stop_pct: float | None = Field(default=None, ge=0, lt=1)
    exit_on_signal: bool = True
    intrabar: Literal["pessimistic", "ohlc", "adaptive"] = "pessimistic"


class Execution(_Strict):
    """Order mode, costs and sizing."""

    mode: Literal["discrete", "portfolio"] = "discrete"
    fee_rate: float = Field(default=0.001, ge=0, lt=0.1)
    slippage_bps: float = Field(default=5.0, ge=0, le=1000)
    sizing: Literal["fraction", "risk"] = "fraction"
    size_pct: float = Field(default=0.1, gt=0, le=1)
    risk_pct: float = Field(default=0.01, gt=0, le=1)
    long_short: bool = False
    #: quote value below which a portfolio trade or a discrete entry is skipped (never an exit)
    min_trade_value: float = Field(default=10.0, ge=0)


class Portfolio(_Strict):
    """Portfolio mode: rebalance schedule and weight cap."""

    #: rebalance on base bars whose close falls on this timeframe's UTC epoch boundary,
    #: so the backtest and the daemon pick the same bars without a clock.
    rebalance_every: str = "1d"
    max_weight: float = Field(default=0.25, gt=0, le=1)
    #: how much each eligible asset (signal +1) gets: ``score`` (proportional to the
    #: combined score, the original rule), ``equal``, ``inverse_vol`` (1/σ of the last
    #: ``lookback`` base-bar returns), ``min_variance`` (long-only, Ledoit–Wolf shrunk
    #: covariance), ``risk_parity`` (equal risk contribution, same covariance), ``hrp``
    #: (hierarchical risk parity, single linkage, same covariance). See :mod:`core.weighting`.
    weighting: Literal["score", "equal", "inverse_vol", "min_variance", "risk_parity",
                       "hrp"] = "score"
    #: base bars of returns for volatility (an asset holds weight only with a full window)
    lookback: int = Field(default=60, ge=2, le=100_000)
    #: an optimizer weight below this goes to cash (0 = off)
    min_weight: float = Field(default=0.0, ge=0, le=1)
    #: skip an asset's rebalance trade when its target moved by at most this (0 = off)
    band: float = Field(default=0.0, ge=0, le=1)
    #: most total |Δ target weight| per rebalance; larger moves are scaled down (None = off)
    turnover_cap: float | None = Field(default=None, gt=0, le=2)

    @field_validator("rebalance_every")
    @classmethod
    def _tf(cls, v: str) -> str:
        return _check_tf(v)

    @model_validator(mode="after")
    def _weights_consistent(self) -> Portfolio:
        if self.min_weight > self.max_weight:
            raise _FieldProblem("portfolio.min_weight",
                                f"{self.min_weight} is above portfolio.max_weight {self.max_weight}")
        if not self.plain_score() and not _have_scipy():
            # core.weighting's kernels use numba's linear algebra, which needs scipy's BLAS
            # and LAPACK. scipy is an extra, not a dependency: with it installed, numba
            # imports scipy.linalg in every process that loads a kernel (~0.5 s).
            raise _FieldProblem("portfolio.weighting",
                                "weighting settings other than the score rule need scipy: "
                                "pip install 'tandem[optimizers]'")
        return self

    def plain_score(self) -> bool:
        """True when only the original score rule applies (no weighting setting changed):
        the drivers then skip :mod:`tandem.core.weighting` entirely."""
        return all(getattr(self, k) == v for k, v in _WEIGHTING_DEFAULTS.items())

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # Settings at their defaults are left out, so every profile written before
        # portfolio.weighting existed keeps its canonical JSON, hash and fingerprints.
        data = handler(self)
        for k, v in _WEIGHTING_DEFAULTS.items():
            if k in data and data[k] == v:
                del data[k]
        return data


_WEIGHTING_DEFAULTS: dict[str, Any] = {
    "weighting": "score", "lookback": 60, "min_weight": 0.0, "band": 0.0, "turnover_cap": None,
}


class Profile(_Strict):
    """One strategy profile. Build through :func:`load_manifest` or :meth:`Manifest.profile`."""

    strategy: Literal["rating_all", "rating_ma", "rating_osc"]
    exchange: str
    core_assets: list[str] = Field(min_length=1, max_length=MAX_SYMBOLS)
    universe: list[str] = Field(default_factory=list, max_length=MAX_SYMBOLS)
    base_timeframe: str
    timeframes: list[str] = Field(min_length=1)
    mtf: MtfConfig = Field(default_factory=MtfConfig)
    #: combined score > entry_threshold -> +1 (bullish); < exit_threshold -> -1 (bearish).
    #: Strict inequalities, as TradingView's labels (Buy is v > 0.1).
    entry_threshold: float = Field(default=0.1, ge=-1, le=1)
    exit_threshold: float = Field(default=-0.1, ge=-1, le=1)
    exit_rules: ExitRules = Field(default_factory=ExitRules)
    execution: Execution = Field(default_factory=Execution)
    portfolio: Portfolio = Field(default_factory=Portfolio)
    initial_cash: float = Field(default=10_000.0, gt=0)
    #: base bars fed before the first tradable bar; null = derived (see derived_warmup_bars)
    warmup_bars: int | None = Field(default=None, ge=0)

    _name: str = PrivateAttr(default="")

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, v: str) -> str:
        if v not in _ccxt_exchanges():
            raise ValueError(f"unknown exchange {quote(v)} (not a ccxt exchange id)")
        return v

    @field_validator("core_assets", "universe")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        for s in v:
            if not _SYMBOL_RE.match(s):
                raise ValueError(f"{quote(s)} is not a ccxt unified symbol like 'BTC/USDT'")
        # One counting pass (list.count per symbol was quadratic: 20k symbols took 14 s).
        dup = sorted(s for s, n in Counter(v).items() if n > 1)
        if dup:
            raise ValueError(f"duplicate symbols: {clip(', '.join(dup))}")
        return v

    @field_validator("base_timeframe")
    @classmethod
    def _base_tf(cls, v: str) -> str:
        return _check_tf(v)

    @field_validator("timeframes")
    @classmethod
    def _tfs(cls, v: list[str]) -> list[str]:
        for tf in v:
            _check_tf(tf)
        if len(set(v)) != len(v):
            raise ValueError("duplicate timeframes")
        ms = [timeframe_to_ms(tf) for tf in v]
        if ms != sorted(ms):
            raise ValueError("timeframes must be listed from shortest to longest")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Profile:
        base = self.base_timeframe
        if self.timeframes[0] != base:
            if base in self.timeframes:
                raise _FieldProblem("base_timeframe", f"{base!r} must be the smallest of timeframes {self.timeframes}")
            raise _FieldProblem("timeframes", f"must start with the base timeframe {base!r}, got {self.timeframes}")
        for tf in self.timeframes[1:]:
            try:
                check_htf(base, tf)
            except TimeframeError as exc:
                raise _FieldProblem("timeframes", str(exc)) from None
        w = self.mtf.weights
        if w is not None:
            if set(w) != set(self.timeframes):
                raise _FieldProblem(
                    "mtf.weights", f"keys {clip(str(sorted(w)))} must be exactly the timeframes {self.timeframes}"
                )
            if sum(w.values()) <= 0:
                raise _FieldProblem("mtf.weights", "at least one weight must be > 0")
        total = sum(self.tf_weights())
        if self.mtf.mode == "vote":
            if self.mtf.min_agree is None:
                raise _FieldProblem("mtf.min_agree", "required when mtf.mode is 'vote'")
            if self.mtf.min_agree > total:
                raise _FieldProblem(
                    "mtf.min_agree", f"{self.mtf.min_agree} exceeds the total weight {total}: no signal could ever fire"
                )
        elif self.mtf.min_agree is not None:
            raise _FieldProblem("mtf.min_agree", "only applies to mtf.mode 'vote'")
        if self.entry_threshold < self.exit_threshold:
            raise _FieldProblem(
                "entry_threshold", f"{self.entry_threshold} is below exit_threshold {self.exit_threshold}"
            )
        try:
            check_htf(base, self.portfolio.rebalance_every)
        except TimeframeError as exc:
            raise _FieldProblem("portfolio.rebalance_every", str(exc)) from None
        er = self.exit_rules
        if self.execution.sizing == "risk" and not er.stop_loss_pct:
            raise _FieldProblem("execution.sizing", "'risk' sizing needs exit_rules.stop_loss_pct > 0")
        pf = self.portfolio
        if pf.weighting == "min_variance" and pf.lookback < len(self.assets):
            raise _FieldProblem(
                "portfolio.lookback",
                f"{pf.lookback} bars of returns are fewer than the {len(self.assets)} assets: "
                "min_variance needs lookback >= the number of assets for a usable covariance",
            )
        if self.execution.mode == "portfolio" and self.execution.long_short:
            raise _FieldProblem("execution.long_short", "portfolio mode is long-only")
        self._check_can_trade()
        if self.warmup_bars is not None and self.warmup_bars * timeframe_to_ms(base) > MAX_WARMUP_SPAN_MS:
            raise _FieldProblem(
                "warmup_bars",
                f"{_count(self.warmup_bars)} bars of {base} span more than 20 years; at most "
                f"{MAX_WARMUP_SPAN_MS // timeframe_to_ms(base)} (null derives it from the lookbacks)",
            )
        if len(self.assets) > MAX_SYMBOLS:
            raise _FieldProblem(
                "universe", f"core_assets and universe together name {len(self.assets)} symbols; at most {MAX_SYMBOLS}"
            )
        return self

    def _check_can_trade(self) -> None:
        """Refuse what can never trade. The engine skips (never shrinks) an entry that costs
        more than the cash or is worth less than ``min_trade_value``; before a first trade
        the equity is ``initial_cash`` and stays so, so such a first entry is refused
        forever: the run exited 0 with no trade and nothing said why."""
        ex, cash = self.execution, self.initial_cash
        sl = self.exit_rules.stop_loss_pct
        margin = 1.0 - 1e-9  # the kernel's own rounding decides the exact borderline
        if ex.mode == "portfolio":
            value, what = self.portfolio.max_weight * cash, "portfolio.max_weight × initial_cash"
        elif ex.sizing == "risk" and sl:
            spend = ex.risk_pct * cash / sl * (1.0 + ex.fee_rate)
            if spend * margin > cash:
                raise _FieldProblem(
                    "execution.risk_pct",
                    f"{ex.risk_pct} of equity at a stop-loss of {sl} sizes every entry at "
                    f"{spend / cash:.4g}× the equity (fee included): more than the cash, so every "
                    "entry is skipped (entries are never shrunk); lower risk_pct or widen the stop")
            value, what = ex.risk_pct * cash / sl, "the risk-sized entry"
        else:
            value = ex.size_pct * cash / (1.0 + ex.fee_rate)
            what = "execution.size_pct × initial_cash (fee aside)"
        if value < ex.min_trade_value * margin:
            raise _FieldProblem(
                "execution.min_trade_value",
                f"{ex.min_trade_value:g} is more than the largest first trade, {what} = "
                f"{value:.6g}: no trade could ever happen")

    # ---- derived values -----------------------------------------------------------------
    @property
    def name(self) -> str:
        """The profile's key in the manifest ('' when built directly)."""
        return self._name

    @property
    def assets(self) -> list[str]:
        """Every traded symbol, in engine order: core assets first, then the rest of the universe."""
        core = set(self.core_assets)  # a set: `in` on the list was quadratic in the universe size
        return list(self.core_assets) + [s for s in self.universe if s not in core]

    @property
    def rating_column(self) -> int:
        """Index of the chosen rating in a rating output row (0 ma, 1 osc, 2 all)."""
        return RATING_COLUMNS[self.strategy]

    @property
    def htfs(self) -> list[str]:
        """The higher timeframes (every timeframe but the base)."""
        return list(self.timeframes[1:])

    def tf_weights(self) -> list[float]:
        """Weights in ``timeframes`` order (1.0 each when omitted)."""
        w = self.mtf.weights
        return [1.0] * len(self.timeframes) if w is None else [float(w[tf]) for tf in self.timeframes]

    def derived_warmup_bars(self) -> int:
        """Base bars to warm up: (longest lookback + margin) on the highest timeframe, plus
        one highest-timeframe bucket that may be dropped as partial."""
        ratio = timeframe_to_ms(self.timeframes[-1]) // timeframe_to_ms(self.base_timeframe)
        return (_rating_warmup_bars() + WARMUP_MARGIN_HTF_BARS + 1) * ratio

    @property
    def warmup(self) -> int:
        """Effective warm-up in base bars (``warmup_bars`` if set, else derived)."""
        return self.derived_warmup_bars() if self.warmup_bars is None else self.warmup_bars

    def engine_params(self) -> dict[str, Any]:
        """Flat engine parameters with the CONTRACTS.md names (off -> NaN)."""
        er, ex, pf = self.exit_rules, self.execution, self.portfolio
        nan = float("nan")
        return {
            "stop_loss_pct": er.stop_loss_pct or nan,
            "take_profit_pct": er.take_profit_pct or nan,
            "trailing_stop_pct": er.trailing_stop_pct or nan,
            "exit_on_signal": er.exit_on_signal,
            "intrabar": er.intrabar,
            "mode": ex.mode,
            "fee_rate": ex.fee_rate,
            "slippage_bps": ex.slippage_bps,
            "sizing": ex.sizing,
            "size_pct": ex.size_pct,
            "risk_pct": ex.risk_pct,
            "long_short": ex.long_short,
            "max_weight": pf.max_weight,
            "min_trade_value": ex.min_trade_value,
            "initial_cash": self.initial_cash,
        }

    def canonical_json(self) -> str:
        """Stable JSON of the effective profile (sorted keys, resolved warm-up)."""
        data = self.model_dump(mode="json")
        data["warmup_bars"] = self.warmup
        return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def profile_hash(self) -> str:
        """sha256 hex of :meth:`canonical_json`: identifies the exact configuration of a run."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class Manifest(_Strict):
    """The whole manifest file."""

    version: Literal[1] = 1
    default_profile: str | None = None
    profiles: dict[str, Profile] = Field(min_length=1)
    _source: str = PrivateAttr(default="manifest")

    def profile(self, name: str | None = None) -> Profile:
        """The named profile (or ``default_profile``); :class:`ManifestError` if absent."""
        key = name or self.default_profile
        if key is None:
            raise ManifestError(f"{self._source}: no profile given and no default_profile set", field="default_profile")
        if key not in self.profiles:
            raise ManifestError(
                f"{self._source}: profile {quote(key)} not found; available: {clip(', '.join(self.profiles))}",
                profile=key,
            )
        return self.profiles[key]


class _ManifestHead(_Strict):
    """Top-level keys of the manifest, profiles left raw (validated one by one)."""

    version: Literal[1] = 1
    default_profile: str | None = None
    profiles: dict[str, Any]


@lru_cache(maxsize=1)
def _have_scipy() -> bool:
    import importlib.util

    return importlib.util.find_spec("scipy") is not None


@lru_cache(maxsize=1)
def _ccxt_exchanges() -> frozenset[str]:
    """ccxt's exchange ids, read from its package source: importing ccxt costs ~0.8 s, which
    every backtest and daemon start would pay for this one check (measured: 1 ms this way).
    If a ccxt release no longer spells the list that way, import it after all."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("ccxt")
    if spec is not None and spec.origin:
        found = re.search(r"^exchanges = (\[.*?\])", Path(spec.origin).read_text(), re.S | re.M)
        if found:
            try:
                return frozenset(ast.literal_eval(found.group(1)))
            except (ValueError, SyntaxError):
                pass
    import ccxt

    return frozenset(ccxt.exchanges)


def _rating_warmup_bars() -> int:
    # Imported lazily: validating a manifest should not pay for importing the kernels.
    from tandem.core.ratings import RATING_WARMUP_BARS

    return int(RATING_WARMUP_BARS)


#: Fields given as fractions (0.05 = 5 %), whose out-of-range values are likely percentages.
_FRACTION_FIELDS = frozenset({"stop_loss_pct", "take_profit_pct", "trailing_stop_pct", "fee_rate",
                              "size_pct", "risk_pct", "max_weight", "min_weight", "band"})
_BOUND_ERRORS = frozenset({"less_than", "less_than_equal", "greater_than", "greater_than_equal"})


def _format_validation(src: str, profile: str | None, exc: ValidationError) -> ManifestError:
    errs = exc.errors()
    first = errs[0]
    field = clip(".".join(str(p) for p in first["loc"]) or "(profile)")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (not allowed here)"
    elif first["type"] == "missing":
        msg = "required field is missing"
    else:
        got = quote(first.get("input"))
        # Our own validators often quote the value already; a bound's message never does
        # ("less than 0.1" for 0.1 read as if the value were quoted).
        if got not in msg or first["type"] in _BOUND_ERRORS:
            msg = f"{msg} (got {got})"
    if first["loc"] and first["loc"][-1] in _FRACTION_FIELDS and first["type"] in _BOUND_ERRORS:
        # "less than 1 (got 5)" did not say why: a stop at 5 meant as 5 % is written 0.05
        msg += "; it is a fraction (0.05 = 5 %)"
    where = f"profile {profile!r}, " if profile else ""
    more = f" [+{len(errs) - 1} more problem(s)]" if len(errs) > 1 else ""
    return ManifestError(f"{src}: {where}field {field!r}: {msg}{more}", profile=profile, field=field)


def _validate_profile(src: str, name: str, raw: Any) -> Profile:
    if not isinstance(name, str) or len(name) > 64 or not _PROFILE_NAME_RE.match(name):
        raise ManifestError(
            f"{src}: profile {quote(name)}: name must be lowercase letters, digits and '_' "
            "(at most 64)", profile=str(name)
        )
    try:
        prof = Profile.model_validate(raw)
    except ValidationError as exc:
        raise _format_validation(src, name, exc) from None
    except _FieldProblem as exc:
        raise ManifestError(
            f"{src}: profile {name!r}, field {exc.field!r}: {exc.message}", profile=name, field=exc.field
        ) from None
    prof._name = name
    return prof


def _where(source: str, path: tuple[Any, ...]) -> tuple[str, str | None, str]:
    """Message prefix, profile and field for a location in the document (as the
    validation errors name them: the profile, then the field inside it)."""
    keys = [str(k) for k in path]
    if len(keys) >= 3 and keys[0] == "profiles":
        field = clip(".".join(keys[2:]))
        return f"{source}: profile {quote(keys[1])}, field {field!r}", keys[1], field
    field = clip(".".join(keys) or "(top level)")
    return f"{source}: field {field!r}", None, field


def _check_structure(data: Any, source: str, duplicates: dict[int, str] | None = None) -> None:
    """Refuse a document nested deeper than :data:`MAX_JSON_DEPTH`, with a list or object of
    more than :data:`MAX_SYMBOLS` items, or (``duplicates``: id of a parsed object -> its
    first repeated key) with a repeated key. Iterative, so no depth can exhaust the stack
    here or later (pydantic, json.dumps in messages); linear in the document's size."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if duplicates and id(node) in duplicates:
                prefix, profile, field = _where(source, (*path, duplicates[id(node)]))
                raise ManifestError(
                    f"{prefix}: duplicate key (each key may appear once; a second one would "
                    "silently replace the first)", profile=profile, field=field,
                )
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if node and len(path) >= MAX_JSON_DEPTH:
            prefix, profile, field = _where(source, path)
            raise ManifestError(
                f"{prefix}: nested deeper than {MAX_JSON_DEPTH} levels", profile=profile, field=field
            )
        if len(node) > MAX_SYMBOLS:  # no list or object of a manifest needs more: stop here
            prefix, profile, field = _where(source, path)
            raise ManifestError(
                f"{prefix}: {len(node)} items; at most {MAX_SYMBOLS}", profile=profile, field=field
            )
        # Only containers need a visit: pushing every string of a long list cost seconds.
        kids = [(v, (*path, k)) for k, v in items if isinstance(v, (dict, list))]
        stack.extend(reversed(kids))


def parse_manifest(data: Any, source: str = "manifest") -> Manifest:
    """Validate an already-parsed manifest document; raise :class:`ManifestError`."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: top level must be a JSON object, got {type(data).__name__}")
    _check_structure(data, source)
    raw_profiles = data.get("profiles")
    if not isinstance(raw_profiles, dict) or not raw_profiles:
        raise ManifestError(f"{source}: field 'profiles': must be a non-empty object of profiles", field="profiles")
    try:
        head = _ManifestHead.model_validate(data)
    except ValidationError as exc:
        raise _format_validation(source, None, exc) from None
    profiles = {name: _validate_profile(source, name, raw) for name, raw in raw_profiles.items()}
    # Profiles are validated one by one above (so errors name them); assemble without
    # validating twice.
    man = Manifest.model_construct(
        version=head.version, default_profile=head.default_profile, profiles=profiles
    )
    if man.default_profile is not None and man.default_profile not in profiles:
        raise ManifestError(
            f"{source}: field 'default_profile': {quote(man.default_profile)} is not one of the profiles "
            f"({clip(', '.join(profiles))})",
            field="default_profile",
        )
    man._source = source
    return man


REPO_MANIFEST = Path(__file__).resolve().parents[1] / "manifest.json"


def resolve_manifest_path(explicit: str | Path | None, configured: str | Path) -> Path:
    """The manifest to load: ``--manifest`` if given, else the configured path
    (``TANDEM_MANIFEST_PATH``, default ``./manifest.json``); a relative configured path that
    does not exist falls back to the repository's shipped manifest, so the CLIs also work
    when started from another folder. Both drivers call this one rule.
    """
    if explicit is not None:
        return Path(explicit)
    path = Path(configured)
    if not path.exists() and not path.is_absolute() and REPO_MANIFEST.exists():
        return REPO_MANIFEST
    return path


def _read_text(p: Path) -> str:
    """The file as text: at most :data:`MAX_MANIFEST_BYTES`, UTF-8 (a leading BOM is fine)."""
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ManifestError(f"{p}: cannot read manifest: {getattr(exc, 'strerror', None) or exc}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{p}: manifest is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MB; refused")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ManifestError(
            f"{p}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at line {line}, offset {exc.start}); "
            "save the manifest as UTF-8"
        ) from None


def _parse_json(text: str, p: Path) -> Any:
    """JSON with every object's keys unique and a bounded depth; ManifestError otherwise."""
    duplicates: dict[int, str] = {}
    keep: list[dict[str, Any]] = []  # keeps ids in `duplicates` valid until the check

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):  # some key repeats: find the first one
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicates[id(obj)] = key
                    keep.append(obj)
                    break
                seen.add(key)
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:  # the C parser recurses per nesting level
        raise ManifestError(f"{p}: invalid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts (4300 digits)
        raise ManifestError(f"{p}: invalid JSON: {clip(str(exc))}") from None
    _check_structure(data, str(p.name), duplicates)
    return data


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``manifest.json``; every problem is a :class:`ManifestError`."""
    p = Path(path)
    data = _parse_json(_read_text(p), p)
    return parse_manifest(data, source=str(p.name))


def main(argv: list[str] | None = None) -> int:
    """``python -m tandem.core.manifest [manifest.json] [profile]``: validate and summarise."""
    args = sys.argv[1:] if argv is None else argv
    path = args[0] if args else "manifest.json"
    try:
        man = load_manifest(path)
        names = [args[1]] if len(args) > 1 else list(man.profiles)
        profs = [man.profile(n) for n in names]
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in profs:
        print(
            f"{p.name}: {p.strategy} {p.exchange} {'/'.join(p.timeframes)} mtf={p.mtf.mode} "
            f"mode={p.execution.mode} assets={len(p.assets)} warmup={p.warmup} hash={p.profile_hash()[:12]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
