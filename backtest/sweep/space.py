"""The search space: manifest fields by dotted path → candidate values.

A space file (YAML or JSON) maps a dotted path of the profile (``exit_rules.stop_loss_pct``)
to either a list of values or a range ``{low, high, step?, log?}``. A trial is the base
profile with those fields replaced, validated again by the manifest model
(:func:`tandem.core.manifest.parse_manifest`), so an invalid combination is reported with the
model's own message instead of running.

Only fields that leave the ratings unchanged are sweepable: the ratings are computed once
per data window and shared by every trial. Paths that would change them (timeframes,
base_timeframe, assets, warmup_bars, exchange) are refused before any work.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Sweepable leaf paths (``mtf.weights.<tf>`` is added per profile timeframe).
SWEEPABLE: tuple[str, ...] = (
    "strategy",
    "entry_threshold",
    "exit_threshold",
    "mtf.mode",
    "mtf.min_agree",
    "exit_rules.stop_loss_pct",
    "exit_rules.take_profit_pct",
    "exit_rules.trailing_stop_pct",
    "exit_rules.exit_on_signal",
    "exit_rules.intrabar",
    "execution.mode",
    "execution.fee_rate",
    "execution.slippage_bps",
    "execution.sizing",
    "execution.size_pct",
    "execution.risk_pct",
    "execution.long_short",
    "execution.min_trade_value",
    "portfolio.max_weight",
    "portfolio.rebalance_every",
    # How much each eligible asset gets (core.weighting): the return window is computed per
    # trial from the closes, never from the ratings, so these leave the ratings shared.
    "portfolio.weighting",
    "portfolio.lookback",
    "portfolio.min_weight",
    "portfolio.band",
    "portfolio.turnover_cap",
    "initial_cash",
)
#: Fields that change the ratings (or the data): never sweepable, named in the error.
RATING_FIELDS = ("timeframes", "base_timeframe", "core_assets", "universe", "warmup_bars",
                 "exchange")


#: Values one grid field may have: a grid is built in memory before it runs, so a tiny step
#: (1e-12 over [0, 1]) hung the command instead of saying anything.
MAX_GRID_VALUES = 1_000_000
#: Trials of a whole grid (the product of its fields): it is built up front, in memory.
MAX_GRID_TRIALS = 1_000_000


class SpaceError(ValueError):
    """A bad space file or path (CLI exit 2); the message says what and where."""


@dataclass(frozen=True)
class Dim:
    """One swept field: either explicit ``values`` or a numeric range."""

    path: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False  # a range whose bounds and step are all integers

    @property
    def column(self) -> str:
        return f"param.{self.path}"

    def grid(self) -> list[Any]:
        """Every value of this dimension (a range needs a step)."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.step is None:
            raise SpaceError(f"{self.path}: a range needs 'step' for --search grid "
                             "(or give a list of values)")
        n = self._steps()
        return [self._snap(self.low + k * self.step) for k in range(n + 1)]

    def _steps(self) -> int:
        """Whole steps from low to high. A step so small the count is not finite raised an
        OverflowError traceback (int of inf)."""
        assert self.low is not None and self.high is not None and self.step is not None
        n = (self.high - self.low) / self.step + 1e-9
        if not math.isfinite(n):
            raise SpaceError(f"{self.path}: step {self.step:g} is too small for the range "
                             f"{self.low:g} .. {self.high:g}")
        # For every search: random draws a step index (numpy's int64 bound) and TPE builds
        # a stepped distribution, both raised tracebacks on a step of 1e-300.
        if n + 1 > MAX_GRID_VALUES:
            count = f"{int(n) + 1:,}" if n < 1e15 else f"~10^{int(math.log10(n))}"
            raise SpaceError(f"{self.path}: step {self.step:g} makes {count} grid values; "
                             f"at most {MAX_GRID_VALUES:,} per field (a bigger step, or no "
                             "step with --search random/tpe)")
        return int(math.floor(n))

    def _snap(self, v: float) -> Any:
        # low + k*step in binary floats gives 0.060000000000000005; 12 digits are plenty.
        return int(round(v)) if self.integer else round(float(v), 12)

    def sample(self, rng: Any) -> Any:
        """One random value (numpy Generator), honouring ``step`` and ``log``."""
        if self.values is not None:
            return self.values[int(rng.integers(len(self.values)))]
        assert self.low is not None and self.high is not None
        if self.step is not None:
            n = self._steps()
            return self._snap(self.low + int(rng.integers(n + 1)) * self.step)
        if self.log:
            v = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            v = rng.uniform(self.low, self.high)
        return int(round(v)) if self.integer else float(v)


def sweepable_paths(profile: Any) -> list[str]:
    """Every sweepable path for ``profile`` (weights per its timeframes)."""
    return list(SWEEPABLE) + [f"mtf.weights.{tf}" for tf in profile.timeframes]


#: Integers beyond this are refused (float() of a 400-digit one raised OverflowError).
_MAX_INT = 2**63


def _count_text(v: int) -> str:
    return f"~10^{int(abs(v).bit_length() * 0.30103)}"


def _num(path: str, key: str, v: Any) -> float:
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _MAX_INT:
        raise SpaceError(f"{path}: '{key}' {_count_text(v)} is too large a number")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        hint = (" (YAML reads 1e-3 without a dot as text: write 1.0e-3 or 0.001)"
                if isinstance(v, str) and _looks_numeric(v) else "")
        raise SpaceError(f"{path}: '{key}' must be a finite number, got {v!r}{hint}")
    return float(v)


def _looks_numeric(text: str) -> bool:
    """A string float() reads as a finite number (no sweepable text field has such values)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def whole_number_field(path: str) -> bool:
    """True when the manifest field at ``path`` takes whole numbers (``portfolio.lookback``):
    its ranges then give integers, also without a step (random/TPE drew floats, which the
    strict model refuses)."""
    import types
    import typing

    from tandem.core.manifest import Profile

    model: Any = Profile
    ann: Any = None
    for key in path.split("."):
        fields = getattr(model, "model_fields", None)
        if not isinstance(fields, dict) or key not in fields:
            return False
        ann = model = fields[key].annotation
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = set(typing.get_args(ann)) - {type(None)}
        ann = args.pop() if len(args) == 1 else None
    return ann is int


def parse_dim(path: str, spec: Any, *, whole: bool = False) -> Dim:
    """One entry of the space file → :class:`Dim` (shape checks only; values are checked by
    the manifest model per trial). ``whole``: the field takes whole numbers
    (:func:`whole_number_field`), so a range's bounds and step must be integers and every
    value it gives is one."""
    if isinstance(spec, list):
        if not spec:
            raise SpaceError(f"{path}: empty list of values")
        for v in spec:
            if isinstance(v, dict | list):
                raise SpaceError(f"{path}: values must be scalars, got {v!r}")
            if v is not None and not isinstance(v, bool | int | float | str):
                # YAML dates (2021-01-01), !!binary…: a TypeError traceback from the resume
                # key's JSON after the data was loaded.
                raise SpaceError(f"{path}: values must be numbers, text, true/false or null, "
                                 f"got {type(v).__name__} {v!r}")
            if isinstance(v, int) and abs(v) > _MAX_INT:
                raise SpaceError(f"{path}: {_count_text(v)} is too large a number")
            if isinstance(v, float) and not math.isfinite(v):
                # YAML .nan/.inf, JSON NaN: a traceback (the resume key's JSON refuses them)
                # after the data was loaded.
                raise SpaceError(f"{path}: values must be finite, got {v!r}")
            if isinstance(v, str) and _looks_numeric(v):
                # YAML 1.1 reads 1e-3 (no dot) as text: the trials with it were all invalid,
                # and a mixed list made its column (and the written profile) text.
                raise SpaceError(f"{path}: {v!r} is text, not a number (YAML reads 1e-3 "
                                 "without a dot as text: write 1.0e-3 or 0.001)")
        # Compared as numbers: [1000, 1000.0] ran one trial twice under two keys (two
        # "distinct" trials, and a field "without effect").
        if len({json.dumps(float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                           else v) for v in spec}) != len(spec):
            raise SpaceError(f"{path}: duplicate values in {spec!r}")
        return Dim(path, values=tuple(spec))
    if isinstance(spec, dict):
        unknown = set(spec) - {"low", "high", "step", "log"}
        if unknown or "low" not in spec or "high" not in spec:
            raise SpaceError(f"{path}: a range is {{low, high, step?, log?}}, got {spec!r}")
        low, high = _num(path, "low", spec["low"]), _num(path, "high", spec["high"])
        step = None if spec.get("step") is None else _num(path, "step", spec["step"])
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{path}: 'log' must be true or false, got {log!r}")
        if high < low:
            raise SpaceError(f"{path}: high ({high}) is below low ({low})")
        if step is not None and step <= 0:
            raise SpaceError(f"{path}: step must be > 0, got {step}")
        if log and low <= 0:
            raise SpaceError(f"{path}: log: true needs low > 0, got {low}")
        if log and step is not None:
            raise SpaceError(f"{path}: use either step or log: true, not both")
        # Integer values only when an integer step says so (or the field takes whole
        # numbers): {low: 0, high: 1} without a step drew only 0 or 1 (random/tpe).
        integer = step is not None and all(
            isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
            for k in ("low", "high", "step"))
        if whole:
            for key, v in (("low", low), ("high", high), ("step", step)):
                if v is not None and not v.is_integer():
                    raise SpaceError(f"{path}: takes whole numbers; '{key}' {v:g} is not one")
            integer = True
        dim = Dim(path, low=low, high=high, step=step, log=log, integer=integer)
        if step is not None:
            dim._steps()  # a count that is not finite: refused here, for every search
        return dim
    raise SpaceError(f"{path}: expected a list of values or {{low, high, step}}, got {spec!r}")


def check_path(path: str, profile: Any) -> None:
    """Refuse unknown and rating-changing paths, naming the sweepable ones."""
    allowed = sweepable_paths(profile)
    if path in allowed:
        return
    head = path.split(".")[0]
    listing = ", ".join(allowed)
    if head in RATING_FIELDS:
        raise SpaceError(f"{path!r} changes the ratings (computed once for all trials) and "
                         f"cannot be swept; sweepable fields: {listing}")
    raise SpaceError(f"unknown or unsweepable field {path!r}; sweepable fields: {listing}")


def load_space(path: str | Path, profile: Any) -> list[Dim]:
    """Read a YAML/JSON space file and validate its shape and paths (before any work)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpaceError(f"{p}: cannot read space file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # a binary or UTF-16 file: a traceback before
        raise SpaceError(f"{p}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}); save the space file as UTF-8") from None
    # A key given twice is refused, as in the manifest: both parsers keep the last one
    # silently, so a space listing a field twice swept only its second list.
    if p.suffix.lower() == ".json":
        def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            keys = [k for k, _ in pairs]
            for k in keys:
                if keys.count(k) > 1:
                    raise SpaceError(f"{p}: duplicate key {k!r}; each key may appear once")
            return dict(pairs)

        try:
            data = json.loads(text, object_pairs_hook=unique)
        except json.JSONDecodeError as exc:
            raise SpaceError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    else:
        import yaml

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node: Any, deep: bool = False) -> Any:
                seen: set[Any] = set()
                for key_node, _ in node.value:
                    key = self.construct_object(key_node, deep=deep)
                    try:
                        if key in seen:
                            raise SpaceError(f"{p}: duplicate key {key!r} at line "
                                             f"{key_node.start_mark.line + 1}; each key may "
                                             "appear once")
                        seen.add(key)
                    except TypeError:  # an unhashable key: SafeLoader's own error below
                        pass
                return super().construct_mapping(node, deep)

        try:
            data = yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            raise SpaceError(f"{p}: invalid YAML: {str(exc).splitlines()[0]}") from None
    return parse_space(data, profile, source=str(p))


def parse_space(data: Any, profile: Any, source: str = "space") -> list[Dim]:
    """An already-parsed space document → dimensions, in file order."""
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{source}: the space must be a non-empty mapping of field → values")
    dims = []
    for path, spec in data.items():
        if not isinstance(path, str):
            raise SpaceError(f"{source}: field names must be strings, got {path!r}")
        check_path(path, profile)
        try:
            dim = parse_dim(path, spec, whole=whole_number_field(path))
            check_values(dim, profile)
        except SpaceError as exc:
            raise SpaceError(f"{source}: {exc}") from None
        dims.append(dim)
    try:
        check_combinations(dims, profile)
    except SpaceError as exc:
        raise SpaceError(f"{source}: {exc}") from None
    return dims


def _edge_values(dim: Dim) -> list[tuple[Any, Any]]:
    """``(shown, checked)`` values that bound what ``dim`` can give: every listed value; a stepped
    range's low and last step; a continuous range's bounds moved inward by one float (a
    draw never lands on them, so {low: 0, high: 1} suits a fraction that must be > 0)."""
    if dim.values is not None:
        return [(v, v) for v in dim.values]
    assert dim.low is not None and dim.high is not None
    if dim.step is None and dim.integer:  # whole numbers: a draw is rounded, ends included
        return [(int(dim.low), int(dim.low)), (int(dim.high), int(dim.high))]
    if dim.step is None:
        return [(dim.low, math.nextafter(dim.low, dim.high)),
                (dim.high, math.nextafter(dim.high, dim.low))]
    top = dim._snap(dim.low + dim._steps() * dim.step)
    ends = [int(dim.low), int(top)] if dim.integer else [dim.low, top]
    return [(v, v) for v in ends]


def check_values(dim: Dim, profile: Any) -> None:
    """Refuse a value the manifest model refuses *by itself* (its type or bounds: a
    stop-loss of 5 meant as 5 %, 0/1 for true/false), before any work.

    Such a value made every trial holding it an invalid row: exit 0 after the whole sweep,
    "winner none" or a winner among the other values only. Checks that tie fields together
    (entry below exit, min_weight above max_weight) depend on the other swept values:
    :func:`check_combinations` refuses a value only when they refuse it with all of them."""
    from pydantic import ValidationError
    from tandem.core.manifest import Profile, _FieldProblem

    keys = tuple(dim.path.split("."))
    # A weight's own check covers the whole mapping (its type error is at its own path).
    own = keys[:2] if keys[:2] == ("mtf", "weights") else keys
    base = profile.model_dump(mode="json")
    for v, checked in _edge_values(dim):
        try:
            Profile.model_validate(apply_params(base, {dim.path: checked},
                                                list(profile.timeframes)))
        except ValidationError as exc:
            for e in exc.errors():
                if tuple(str(k) for k in e["loc"]) in (own, keys):
                    msg = e["msg"].removeprefix("Value error, ")
                    raise SpaceError(f"{dim.path}: value {v!r} is refused by the manifest: "
                                     f"{msg}") from None
        except _FieldProblem:
            pass  # a cross-field check: check_combinations, with the other swept values


#: Most combinations of the other swept fields' values :func:`check_combinations` tries for
#: one value (0.5 s for 10^4 on 24 assets); with more, the values are left to the trials
#: (a value refused with all of them is then invalid rows, as before the check).
MAX_CROSS_COMBOS = 20_000
#: Values a range of another field brings to those combinations: its ends and points
#: evenly between (the manifest's cross-field bounds are monotone, so the ends decide them;
#: the points between catch a window such as risk_pct between min_trade_value and the cash).
CROSS_POINTS = 5


def _cross_candidates(dim: Dim) -> list[Any]:
    """The values of another swept field that :func:`check_combinations` pairs a value with:
    a list's values, a range's ends and :data:`CROSS_POINTS` - 2 points between."""
    if dim.values is not None:
        return list(dim.values)
    assert dim.low is not None and dim.high is not None
    if dim.step is not None:
        n = dim._steps()
        ks = sorted({round(i * n / (CROSS_POINTS - 1)) for i in range(CROSS_POINTS)})
        vals = [dim._snap(dim.low + k * dim.step) for k in ks]
    elif dim.integer:
        lo, hi = int(dim.low), int(dim.high)
        vals = sorted({round(lo + (hi - lo) * i / (CROSS_POINTS - 1)) for i in range(CROSS_POINTS)})
    else:  # a draw never lands on the ends themselves (as _edge_values)
        step = (dim.high - dim.low) / (CROSS_POINTS - 1)
        vals = ([math.nextafter(dim.low, dim.high)]
                + [round(dim.low + i * step, 12) for i in range(1, CROSS_POINTS - 1)]
                + [math.nextafter(dim.high, dim.low)])
    return list(dict.fromkeys(vals))


def check_combinations(dims: list[Dim], profile: Any) -> None:
    """Refuse a value that the manifest's cross-field checks refuse with every combination of
    the other swept fields' values (``portfolio.min_weight`` above every ``max_weight``, a
    ``min_variance`` lookback shorter than the asset count, ``entry_threshold`` below every
    ``exit_threshold``): each trial holding it would be an invalid row, found after the
    whole sweep, exit 0 with a winner among the other values. The message is the model's
    for the first combination. A value valid with some combination stays, and so do the
    invalid trials it makes with the others (per trial, as before)."""
    import itertools

    from pydantic import ValidationError
    from tandem.core.manifest import Profile, _FieldProblem

    base = profile.model_dump(mode="json")
    tfs = list(profile.timeframes)
    for dim in dims:
        others = [d for d in dims if d is not dim]
        cands = [_cross_candidates(d) for d in others]
        if math.prod(len(c) for c in cands) > MAX_CROSS_COMBOS:
            continue  # too many to try before the sweep: the trials say it
        if dim.values is None and dim.step is None and not dim.integer:
            # A continuous range's ends are limits a draw only approaches, where a cross-field
            # check may well refuse (size_pct near 0 buys less than min_trade_value): it is
            # judged by the points between them.
            own = [(x, x) for x in _cross_candidates(dim)[1:-1]]
        else:
            own = _edge_values(dim)
        for v, checked in own:
            first = ""
            for combo in itertools.product(*cands):
                params = {d.path: x for d, x in zip(others, combo, strict=True)}
                params[dim.path] = checked
                try:
                    Profile.model_validate(apply_params(base, params, tfs))
                    break
                except ValidationError as exc:
                    e = exc.errors()[0]
                    why = (f"{'.'.join(str(k) for k in e['loc'])}: "
                           f"{e['msg'].removeprefix('Value error, ')}")
                except _FieldProblem as exc:
                    why = f"{exc.field}: {exc.message}"
                first = first or why
            else:
                also = " (with every value of the other swept fields)" if others else ""
                raise SpaceError(f"{dim.path}: value {v!r} is refused by the manifest: "
                                 f"{first}{also}")


def apply_params(base: dict[str, Any], params: dict[str, Any], timeframes: list[str]
                 ) -> dict[str, Any]:
    """A deep copy of the profile dict ``base`` with ``params`` set by dotted path."""
    data = copy.deepcopy(base)
    for path, value in params.items():
        keys = path.split(".")
        node = data
        for k in keys[:-1]:
            if k == "weights" and node.get("weights") is None:
                # Omitted weights mean 1.0 each; make them explicit so one can be changed.
                node["weights"] = {tf: 1.0 for tf in timeframes}
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return data


def trial_profile(base_profile: Any, params: dict[str, Any]) -> tuple[Any | None, str]:
    """``(profile, "")`` for a valid trial, ``(None, message)`` for an invalid one.

    The message is the manifest model's, so the user sees exactly why the combination is
    refused (e.g. "entry_threshold ... is below exit_threshold ...").
    """
    from tandem.core.manifest import ManifestError, parse_manifest

    name = base_profile.name or "profile"
    data = apply_params(base_profile.model_dump(mode="json"), params,
                        list(base_profile.timeframes))
    try:
        return parse_manifest({"profiles": {name: data}}, source="trial").profile(name), ""
    except ManifestError as exc:
        return None, str(exc)


def params_key(params: dict[str, Any]) -> str:
    """Canonical JSON of a trial's parameters (sorted paths): part of the resume key."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False)
