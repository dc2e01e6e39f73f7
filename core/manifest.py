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
typo fails loudly. Any problem raises :class:`ManifestError` whose message names the file,
the profile and the field; drivers print it and exit non-zero before any output
(``python -m core.manifest manifest.json`` does exactly that).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
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
    model_validator,
)

from core.timeframes import (
    EXCHANGE_TIMEFRAMES,
    TimeframeError,
    check_htf,
    timeframe_to_ms,
)

RATING_COLUMNS = {"rating_ma": 0, "rating_osc": 1, "rating_all": 2}
# Extra highest-timeframe bars beyond the longest lookback, so exponential seeds (EMA/RMA,
# which Pine seeds with an SMA) have partly converged before the first tradable bar.
WARMUP_MARGIN_HTF_BARS = 50
#: The longest warm-up window accepted (warmup_bars × base timeframe): no market has a
#: century of history, and a window past the representable dates (pandas ends in 2262,
#: epoch ms in int64) used to crash the backtest and make the daemon fetch from 1970.
MAX_WARMUP_YEARS = 100
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")
_PROFILE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class ManifestError(ValueError):
    """An invalid manifest; the message names the file, profile and field."""

    def __init__(self, message: str, *, profile: str | None = None, field: str | None = None):
        super().__init__(message)
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
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_tf(tf: str) -> str:
    try:
        timeframe_to_ms(tf)
    except TimeframeError as exc:
        raise ValueError(str(exc)) from None
    if tf not in EXCHANGE_TIMEFRAMES:
        raise ValueError(f"timeframe {tf!r} is not offered by exchanges; use one of {', '.join(EXCHANGE_TIMEFRAMES)}")
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
                    raise ValueError(f"weight of {tf!r} must be a finite number >= 0, got {w}")
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
    min_trade_value: float = Field(default=10.0, ge=0)


class Portfolio(_Strict):
    """Portfolio mode: rebalance schedule and weight cap."""

    #: rebalance on base bars whose close falls on this timeframe's UTC epoch boundary,
    #: so the backtest and the daemon pick the same bars without a clock.
    rebalance_every: str = "1d"
    max_weight: float = Field(default=0.25, gt=0, le=1)

    @field_validator("rebalance_every")
    @classmethod
    def _tf(cls, v: str) -> str:
        return _check_tf(v)


class Profile(_Strict):
    """One strategy profile. Build through :func:`load_manifest` or :meth:`Manifest.profile`."""

    strategy: Literal["rating_all", "rating_ma", "rating_osc"]
    exchange: str
    core_assets: list[str] = Field(min_length=1)
    universe: list[str] = Field(default_factory=list)
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
            raise ValueError(f"unknown exchange {v!r} (not a ccxt exchange id)")
        return v

    @field_validator("core_assets", "universe")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        for s in v:
            if not _SYMBOL_RE.match(s):
                raise ValueError(f"{s!r} is not a ccxt unified symbol like 'BTC/USDT'")
        dup = sorted({s for s in v if v.count(s) > 1})
        if dup:
            raise ValueError(f"duplicate symbols: {', '.join(dup)}")
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
                    "mtf.weights", f"keys {sorted(w)} must be exactly the timeframes {self.timeframes}"
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
        if self.execution.mode == "portfolio" and self.execution.long_short:
            raise _FieldProblem("execution.long_short", "portfolio mode is long-only")
        return self

    @model_validator(mode="after")
    def _warmup_span(self) -> Profile:
        if self.warmup_bars is not None:
            span_ms = self.warmup_bars * timeframe_to_ms(self.base_timeframe)
            if span_ms > MAX_WARMUP_YEARS * 365.25 * 86_400_000:
                raise _FieldProblem(
                    "warmup_bars", f"{self.warmup_bars} {self.base_timeframe} bars span "
                    f"{span_ms / (365.25 * 86_400_000):.3g} years; the warm-up window must be at "
                    f"most {MAX_WARMUP_YEARS} years")
        return self

    # ---- derived values -----------------------------------------------------------------
    @property
    def name(self) -> str:
        """The profile's key in the manifest ('' when built directly)."""
        return self._name

    @property
    def assets(self) -> list[str]:
        """Every traded symbol, in engine order: core assets first, then the rest of the universe."""
        return list(self.core_assets) + [s for s in self.universe if s not in self.core_assets]

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
                f"{self._source}: profile {key!r} not found; available: {', '.join(self.profiles)}",
                profile=key,
            )
        return self.profiles[key]


class _ManifestHead(_Strict):
    """Top-level keys of the manifest, profiles left raw (validated one by one)."""

    version: Literal[1] = 1
    default_profile: str | None = None
    profiles: dict[str, Any]


@lru_cache(maxsize=1)
def _ccxt_exchanges() -> frozenset[str]:
    import ccxt  # imported lazily: ~0.8 s, and only the exchange check needs it

    return frozenset(ccxt.exchanges)


def _rating_warmup_bars() -> int:
    # Imported lazily: validating a manifest should not pay for importing the kernels.
    from core.ratings import RATING_WARMUP_BARS

    return int(RATING_WARMUP_BARS)


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_validation(src: str, profile: str | None, exc: ValidationError) -> ManifestError:
    errs = exc.errors()
    first = errs[0]
    field = ".".join(str(p) for p in first["loc"]) or "(profile)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (not allowed here)"
    elif first["type"] == "missing":
        msg = "required field is missing"
    else:
        msg = f"{msg} (got {_describe(first.get('input'))})"
    where = f"profile {profile!r}, " if profile else ""
    more = f" [+{len(errs) - 1} more problem(s)]" if len(errs) > 1 else ""
    return ManifestError(f"{src}: {where}field {field!r}: {msg}{more}", profile=profile, field=field)


def _validate_profile(src: str, name: str, raw: Any) -> Profile:
    if not _PROFILE_NAME_RE.match(name):
        raise ManifestError(
            f"{src}: profile {name!r}: name must be lowercase letters, digits and '_'", profile=name
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


def parse_manifest(data: Any, source: str = "manifest") -> Manifest:
    """Validate an already-parsed manifest document; raise :class:`ManifestError`."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: top level must be a JSON object, got {type(data).__name__}")
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
            f"{source}: field 'default_profile': {man.default_profile!r} is not one of the profiles "
            f"({', '.join(profiles)})",
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


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``manifest.json``; every problem is a :class:`ManifestError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{p}: cannot read manifest: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse_manifest(data, source=str(p.name))


def main(argv: list[str] | None = None) -> int:
    """``python -m core.manifest [manifest.json] [profile]``: validate and summarise."""
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
