"""Manifest models and loader: the shipped manifest, hashing, and malformed inputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from tandem.core.manifest import (
    ManifestError,
    Profile,
    load_manifest,
    main,
    parse_manifest,
)

from tests.conftest import REPO_ROOT

MANIFEST = REPO_ROOT / "manifest.json"
CONTRACT_ENGINE_PARAMS = {  # docs/CONTRACTS.md "Engine"
    "stop_loss_pct", "take_profit_pct", "trailing_stop_pct", "exit_on_signal", "intrabar",
    "mode", "fee_rate", "slippage_bps", "sizing", "size_pct", "risk_pct", "long_short",
    "max_weight", "min_trade_value", "initial_cash",
}


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(MANIFEST.read_text())


def test_shipped_manifest_loads() -> None:
    man = load_manifest(MANIFEST)
    for name in ("crypto_rating_all", "crypto_rating_ma", "crypto_rating_osc"):
        p = man.profile(name)
        assert p.name == name
        assert p.strategy == name.removeprefix("crypto_")
        assert p.exchange == "binance" and p.base_timeframe == "1h"
        assert p.timeframes == ["1h", "4h", "1d"]
        assert p.core_assets[:4] == ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
        assert len(p.assets) > len(p.core_assets)
        assert p.assets[: len(p.core_assets)] == p.core_assets
        assert set(p.engine_params()) == CONTRACT_ENGINE_PARAMS
    assert man.profile().name == "crypto_rating_all"
    modes = {(p.mtf.mode, p.execution.mode) for p in man.profiles.values()}
    assert modes == {("wide", "discrete"), ("vote", "discrete"), ("wide", "portfolio"), ("vote", "portfolio")}


def test_unknown_profile_names_it() -> None:
    with pytest.raises(ManifestError, match="'nope' not found; available: crypto_rating_all"):
        load_manifest(MANIFEST).profile("nope")


def test_warmup_derived_and_override(doc: dict) -> None:
    from tandem.core.manifest import WARMUP_MARGIN_HTF_BARS, _rating_warmup_bars

    p = load_manifest(MANIFEST).profile("crypto_rating_all")
    # Highest timeframe 1d on a 1h base: 24 base bars per lookback bar.
    assert p.warmup == (_rating_warmup_bars() + WARMUP_MARGIN_HTF_BARS + 1) * 24
    d = copy.deepcopy(doc)
    d["profiles"]["crypto_rating_all"]["warmup_bars"] = 500
    d["profiles"]["crypto_rating_all"]["timeframes"] = ["1h", "4h"]
    d["profiles"]["crypto_rating_all"]["mtf"]["weights"] = {"1h": 1.0, "4h": 1.0}
    p2 = parse_manifest(d).profile("crypto_rating_all")
    assert p2.warmup == 500
    d["profiles"]["crypto_rating_all"]["warmup_bars"] = None
    assert parse_manifest(d).profile("crypto_rating_all").warmup == (_rating_warmup_bars() + WARMUP_MARGIN_HTF_BARS + 1) * 4


def test_hash_is_stable_and_sensitive(doc: dict) -> None:
    base = load_manifest(MANIFEST).profile("crypto_rating_all")
    h = base.profile_hash()
    assert len(h) == 64
    # Key order and defaults spelled out or omitted do not change the hash.
    raw = doc["profiles"]["crypto_rating_all"]
    shuffled = dict(reversed(list(raw.items())))
    shuffled["exit_rules"] = dict(reversed(list(raw["exit_rules"].items())))
    assert Profile.model_validate(shuffled).profile_hash() == h
    # Any real change does.
    changed = copy.deepcopy(raw)
    changed["exit_rules"]["stop_loss_pct"] = 0.051
    assert Profile.model_validate(changed).profile_hash() != h
    # The hash covers the effective warm-up: derived == explicitly the same number.
    explicit = copy.deepcopy(raw)
    explicit["warmup_bars"] = base.warmup
    assert Profile.model_validate(explicit).profile_hash() == h


def test_cli_ok(capsys) -> None:
    assert main([str(MANIFEST)]) == 0
    out = capsys.readouterr().out
    assert "crypto_rating_osc" in out


# --- malformed manifests ----------------------------------------------------------------
P = "crypto_rating_all"


def _set(path: str, value):
    """Mutation: set a dotted field of profile P (value _DEL deletes it)."""

    def apply(d: dict) -> None:
        node = d["profiles"][P]
        *parents, last = path.split(".")
        for k in parents:
            node = node[k]
        if value is _DEL:
            del node[last]
        else:
            node[last] = value

    return apply


_DEL = object()

# (id, mutation, expected field in the message)
MALFORMED = [
    ("unknown strategy", _set("strategy", "rating_macd"), "strategy"),
    ("timeframe 7m", _set("timeframes", ["1h", "7m"]), "timeframes"),
    ("base not the smallest", _set("timeframes", ["15m", "1h", "4h"]), "base_timeframe"),
    ("base missing from timeframes", _set("timeframes", ["4h", "1d"]), "timeframes"),
    ("timeframes not sorted", _set("timeframes", ["1h", "1d", "4h"]), "timeframes"),
    ("base timeframe 90m", _set("base_timeframe", "90m"), "base_timeframe"),
    ("negative stop", _set("exit_rules.stop_loss_pct", -0.05), "exit_rules.stop_loss_pct"),
    ("stop as percent", _set("exit_rules.stop_loss_pct", 5), "exit_rules.stop_loss_pct"),
    ("entry threshold > 1", _set("entry_threshold", 1.5), "entry_threshold"),
    ("exit threshold < -1", _set("exit_threshold", -2), "exit_threshold"),
    ("entry below exit", _set("entry_threshold", -0.3), "entry_threshold"),
    ("empty core assets", _set("core_assets", []), "core_assets"),
    ("unknown key", _set("stop_loss", 0.05), "stop_loss"),
    ("unknown nested key", _set("exit_rules.trailing", 0.05), "exit_rules.trailing"),
    ("string for number", _set("initial_cash", "10000"), "initial_cash"),
    ("string for bool", _set("exit_rules.exit_on_signal", "yes"), "exit_rules.exit_on_signal"),
    ("list for string", _set("exchange", ["binance"]), "exchange"),
    ("unknown exchange", _set("exchange", "binanse"), "exchange"),
    ("bad symbol", _set("core_assets", ["BTCUSDT"]), "core_assets"),
    ("duplicate symbol", _set("universe", ["ETH/USDT", "ETH/USDT"]), "universe"),
    ("unknown intrabar", _set("exit_rules.intrabar", "optimistic"), "exit_rules.intrabar"),
    ("unknown mtf mode", _set("mtf.mode", "stack"), "mtf.mode"),
    ("weights miss a timeframe", _set("mtf.weights", {"1h": 1.0, "4h": 1.0}), "mtf.weights"),
    ("negative weight", _set("mtf.weights", {"1h": 1.0, "4h": -1.0, "1d": 1.0}), "mtf.weights"),
    ("vote without min_agree", _set("mtf", {"mode": "vote"}), "mtf.min_agree"),
    ("min_agree unreachable", _set("mtf", {"mode": "vote", "min_agree": 4}), "mtf.min_agree"),
    ("min_agree in wide mode", _set("mtf.min_agree", 2), "mtf.min_agree"),
    ("rebalance not a multiple", _set("portfolio.rebalance_every", "30m"), "portfolio.rebalance_every"),
    ("max weight > 1", _set("portfolio.max_weight", 1.5), "portfolio.max_weight"),
    ("zero cash", _set("initial_cash", 0), "initial_cash"),
    ("negative warmup", _set("warmup_bars", -1), "warmup_bars"),
    ("fee as percent", _set("execution.fee_rate", 0.1), "execution.fee_rate"),
    ("unknown execution mode", _set("execution.mode", "margin"), "execution.mode"),
    ("risk sizing without stop", lambda d: (_set("execution.sizing", "risk")(d), _set("exit_rules.stop_loss_pct", None)(d)), "execution.sizing"),
    ("missing strategy", _set("strategy", _DEL), "strategy"),
    ("weekly htf on 3d base", lambda d: (_set("base_timeframe", "3d")(d), _set("timeframes", ["3d", "1w"])(d), _set("mtf.weights", None)(d)), "timeframes"),
]


@pytest.mark.parametrize("case,mutate,field", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_manifest(tmp_path: Path, doc: dict, capsys, case, mutate, field) -> None:
    d = copy.deepcopy(doc)
    mutate(d)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert f"profile '{P}'" in msg and f"field '{field}'" in msg, msg
    assert info.value.profile == P and info.value.field == field
    # The CLI prints that one message to stderr, nothing to stdout, and exits non-zero.
    assert main([str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == f"error: {msg}"


@pytest.mark.parametrize(
    "text,expect",
    [
        ("{not json", "invalid JSON at line 1"),
        ("[]", "top level must be a JSON object"),
        ('{"profiles": {}}', "field 'profiles'"),
        ('{"version": 1}', "field 'profiles'"),
    ],
)
def test_malformed_document(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(ManifestError, match=expect):
        load_manifest(path)


def test_manifest_level_errors(doc: dict) -> None:
    d = copy.deepcopy(doc)
    d["default_profile"] = "missing"
    with pytest.raises(ManifestError, match="field 'default_profile'.*'missing' is not one of"):
        parse_manifest(d)
    d = copy.deepcopy(doc)
    d["profile"] = {}
    with pytest.raises(ManifestError, match="field 'profile': unknown key"):
        parse_manifest(d)
    d = copy.deepcopy(doc)
    d["version"] = 2
    with pytest.raises(ManifestError, match="field 'version'"):
        parse_manifest(d)
    d = copy.deepcopy(doc)
    d["profiles"]["Bad Name"] = d["profiles"][P]
    with pytest.raises(ManifestError, match="profile 'Bad Name'"):
        parse_manifest(d)
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest("/nonexistent/manifest.json")


# --- hostile manifests (issue 16 items 10, 11, 13) ----------------------------------------
def _write(tmp_path: Path, d: dict, **replace: str) -> Path:
    """Write ``d`` as JSON, then substitute raw JSON text for placeholder strings (so the file
    can hold what json.dumps won't write: ``1e400``, a repeated key...)."""
    text = json.dumps(d)
    for placeholder, raw in replace.items():
        assert f'"{placeholder}"' in text
        text = text.replace(f'"{placeholder}"', raw)
    path = tmp_path / "manifest.json"
    path.write_text(text)
    return path


def _one_line_error(path: Path, capsys) -> str:
    """load_manifest raises ManifestError, and the CLI prints that one line and exits 2."""
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 500, msg
    assert main([str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: {msg}\n"
    return msg


def _float_fields() -> list[str]:
    """Every float field of a profile, as a dotted path (found from the models, so a float
    field added later is covered without editing this test)."""
    from tandem.core.manifest import Execution, ExitRules, MtfConfig, Portfolio

    paths = []
    for prefix, model in (("", Profile), ("execution.", Execution), ("exit_rules.", ExitRules),
                          ("portfolio.", Portfolio), ("mtf.", MtfConfig)):
        for name, info in model.model_fields.items():
            if "float" in str(info.annotation):
                paths.append(prefix + ("weights.1h" if name == "weights" else name))
    return paths


FLOAT_FIELDS = _float_fields()


def test_float_fields_found() -> None:
    assert {"initial_cash", "execution.min_trade_value", "mtf.weights.1h", "mtf.min_agree"} <= set(FLOAT_FIELDS)


@pytest.mark.parametrize("raw", ["Infinity", "-Infinity", "NaN", "1e400", "-1e400"])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_non_finite_float_names_the_field(tmp_path: Path, doc: dict, capsys, field: str, raw: str) -> None:
    """JSON's Infinity/NaN and 1e400 (read as inf) in any float field: one line naming the
    field. Before: initial_cash/min_trade_value Infinity passed and profile_hash crashed."""
    d = copy.deepcopy(doc)
    prof = d["profiles"][P]
    if field.startswith("mtf."):
        prof["mtf"] = {"mode": "vote", "min_agree": 2, "weights": {"1h": 1.0, "4h": 1.0, "1d": 1.0}}
    node = prof
    *parents, last = field.split(".")
    for k in parents:
        node = node[k]
    node[last] = "@PLACEHOLDER@"
    msg = _one_line_error(_write(tmp_path, d, **{"@PLACEHOLDER@": raw}), capsys)
    assert f"profile '{P}', field '{field}'" in msg, msg


def test_non_finite_float_built_directly(doc: dict) -> None:
    """The models refuse infinity however they are built (profile_hash used to crash)."""
    raw = copy.deepcopy(doc["profiles"][P])
    raw["initial_cash"] = float("inf")
    with pytest.raises(ManifestError, match="field 'initial_cash'.*finite"):
        parse_manifest({"profiles": {P: raw}})


def test_latin1_manifest(tmp_path: Path, doc: dict, capsys) -> None:
    d = copy.deepcopy(doc)
    d["profiles"][P]["exchange"] = "bïnance"
    path = tmp_path / "manifest.json"
    path.write_bytes(json.dumps(d, ensure_ascii=False, indent=1).encode("latin-1"))
    msg = _one_line_error(path, capsys)
    assert "not UTF-8" in msg and "byte 0xef" in msg and str(path) in msg, msg


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"\xef\xbb\xbf" + MANIFEST.read_bytes())
    assert load_manifest(path).profile(P).name == P


@pytest.mark.parametrize("depth", [30, 100_000])
def test_deeply_nested_json(tmp_path: Path, capsys, depth: int) -> None:
    """Nesting past the C parser's recursion limit (before: RecursionError traceback), or
    deep but parseable (a field named)."""
    path = tmp_path / "manifest.json"
    path.write_text('{"profiles": {"p": {"exit_rules": ' + "[" * depth + "]" * depth + "}}}")
    msg = _one_line_error(path, capsys)
    assert "nested deeper than" in msg, msg
    if depth == 30:
        assert "profile 'p', field 'exit_rules.0.0." in msg, msg


def test_deep_document_via_parse_manifest() -> None:
    node: list = []
    for _ in range(5000):  # deeper than Python's recursion limit
        node = [node]
    with pytest.raises(ManifestError, match="nested deeper than"):
        parse_manifest({"profiles": {"p": {"universe": node}}})


@pytest.mark.parametrize(
    "where,expect",
    [
        ("profile field", f"profile '{P}', field 'strategy': duplicate key"),
        ("profile name", f"field 'profiles.{P}': duplicate key"),
        ("nested field", f"profile '{P}', field 'exit_rules.stop_loss_pct': duplicate key"),
        ("top level", "field 'version': duplicate key"),
    ],
)
def test_duplicate_keys_refused(tmp_path: Path, doc: dict, capsys, where: str, expect: str) -> None:
    """JSON lets a key repeat and Python keeps the last: a second profile of the same name,
    or a field given twice, silently replaced the first. Refused, naming key and path."""
    text = MANIFEST.read_text()
    if where == "profile field":
        text = text.replace(f'"{P}": {{', f'"{P}": {{"strategy": "rating_ma", ', 1)
    elif where == "profile name":
        text = text.replace('"profiles": {', f'"profiles": {{"{P}": {{}}, ', 1)
    elif where == "nested field":
        text = text.replace('"exit_rules": {', '"exit_rules": {"stop_loss_pct": 0.2, ', 1)
    else:
        text = text.replace("{", '{"version": 1, ', 1)
    path = tmp_path / "manifest.json"
    path.write_text(text)
    assert len(json.loads(text)["profiles"]) == len(doc["profiles"])  # plain json: silent
    msg = _one_line_error(path, capsys)
    assert expect in msg, msg


def test_universe_size_limit(tmp_path: Path, doc: dict, capsys) -> None:
    """20k symbols took 14 s to validate (quadratic duplicate check) and 3M never finished:
    refused at once, naming the field."""
    import time

    from tandem.core.manifest import MAX_SYMBOLS

    d = copy.deepcopy(doc)
    d["profiles"][P]["universe"] = [f"S{i}/USDT" for i in range(20_000)]
    path = _write(tmp_path, d)
    t0 = time.perf_counter()
    msg = _one_line_error(path, capsys)
    assert time.perf_counter() - t0 < 5
    assert f"profile '{P}', field 'universe'" in msg and f"at most {MAX_SYMBOLS}" in msg, msg
    assert "20000 items" in msg, msg


def test_three_million_symbols_refused_fast(doc: dict) -> None:
    """3M symbols never finished validating; refused before any symbol is looked at."""
    import time

    raw = copy.deepcopy(doc["profiles"][P])
    raw["universe"] = ["BTC/USDT"] * 3_000_000
    t0 = time.perf_counter()
    with pytest.raises(ManifestError, match=f"profile '{P}', field 'universe': 3000000 items; at most 5000$"):
        parse_manifest({"profiles": {P: raw}})
    assert time.perf_counter() - t0 < 2


def test_core_plus_universe_limit(doc: dict) -> None:
    from tandem.core.manifest import MAX_SYMBOLS

    raw = copy.deepcopy(doc["profiles"][P])
    raw["core_assets"] = [f"C{i}/USDT" for i in range(MAX_SYMBOLS // 2 + 1)]
    raw["universe"] = [f"U{i}/USDT" for i in range(MAX_SYMBOLS // 2)]
    with pytest.raises(ManifestError, match=f"field 'universe'.*{MAX_SYMBOLS + 1} symbols; at most {MAX_SYMBOLS}"):
        parse_manifest({"profiles": {P: raw}})
    raw["core_assets"] = raw["core_assets"][:-1]
    assert len(parse_manifest({"profiles": {P: raw}}).profile(P).assets) == MAX_SYMBOLS


def test_duplicate_symbol_check_is_linear() -> None:
    """The duplicate check alone, on far more symbols than a manifest may hold: linear
    (list.count per symbol took 14 s for 20k symbols; 200k would take ~25 min)."""
    import time

    syms = [f"S{i}/USDT" for i in range(200_000)] + ["S7/USDT", "S3/USDT", "S7/USDT"]
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="duplicate symbols: S3/USDT, S7/USDT$"):
        Profile._symbols(syms)
    assert time.perf_counter() - t0 < 5


def test_oversized_file_refused(tmp_path: Path, capsys) -> None:
    from tandem.core.manifest import MAX_MANIFEST_BYTES

    path = tmp_path / "manifest.json"
    path.write_text('{"profiles": {"p": {"exchange": "' + "a" * MAX_MANIFEST_BYTES + '"}}}')
    msg = _one_line_error(path, capsys)
    assert "larger than 8 MB" in msg, msg


def test_huge_value_is_quoted_short(doc: dict, tmp_path: Path, capsys) -> None:
    """A 50 MB exchange value was echoed whole to stderr; now its start and its length."""
    raw = copy.deepcopy(doc["profiles"][P])
    raw["exchange"] = "x" * (50 * 1024 * 1024)
    with pytest.raises(ManifestError) as info:
        parse_manifest({"profiles": {P: raw}})
    msg = str(info.value)
    assert len(msg) < 300 and f"…({50 * 1024 * 1024} chars)" in msg and "field 'exchange'" in msg, msg
    # the same through a file and the CLI (1 MB: under the file size limit)
    d = copy.deepcopy(doc)
    d["profiles"][P]["exchange"] = "y" * 1_000_000
    msg = _one_line_error(_write(tmp_path, d), capsys)
    assert "'" + "y" * 80 + "'…(1000000 chars)" in msg, msg


@pytest.mark.parametrize(
    "mutate,field",
    [
        (_set("stop_loss_" + "x" * 10_000, 1), "stop_loss_xxxx"),  # unknown key: the key is the field
        (_set("core_assets", ["BTC/USDT", "z" * 10_000]), "core_assets"),
        (_set("timeframes", ["1h", "9" * 10_000 + "h"]), "timeframes"),
        (_set("mtf.weights", {"1h": 1.0, "q" * 10_000: 1.0}), "mtf.weights"),
    ],
    ids=["long key", "long symbol", "long timeframe", "long weight key"],
)
def test_long_inputs_quoted_short(tmp_path: Path, doc: dict, capsys, mutate, field) -> None:
    d = copy.deepcopy(doc)
    mutate(d)
    msg = _one_line_error(_write(tmp_path, d), capsys)
    assert f"field '{field}" in msg and "…(" in msg, msg


def test_huge_integer_literal(tmp_path: Path, capsys) -> None:
    """An integer past Python's 4300-digit conversion limit is a ValueError, not a JSON error."""
    path = tmp_path / "manifest.json"
    path.write_text('{"profiles": {"p": {"warmup_bars": ' + "9" * 5000 + "}}}")
    assert "invalid JSON" in _one_line_error(path, capsys)


def test_unknown_profile_name_quoted_short() -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(MANIFEST).profile("n" * 100_000)
    assert len(str(info.value)) < 500 and "…(100000 chars)" in str(info.value)


# --- fuzz: random damage to the shipped manifest never escapes as a traceback ----------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["1h", "4h", "1d", "BTC/USDT", "binance", "vote", "portfolio", "risk", ""]),
)
_JSON = st.recursive(_JSON_LEAF, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=12), kids, max_size=4)), max_leaves=12)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _exercise(path: Path) -> None:
    """Load; on success, use everything a driver uses (hash, engine params, assets)."""
    try:
        man = load_manifest(path)
    except ManifestError as exc:
        assert "\n" not in str(exc) and len(str(exc)) <= 1100, str(exc)
        return
    for prof in man.profiles.values():
        prof.profile_hash(), prof.engine_params(), prof.assets, prof.warmup


_ALL_PATHS = list(_paths(json.loads(MANIFEST.read_text())))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_structural_mutations(tmp_path: Path, data) -> None:
    d = json.loads(MANIFEST.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(_ALL_PATHS[1:]))
        node = d
        try:
            for k in where[:-1]:
                node = node[k]
            action = data.draw(st.sampled_from(["replace", "delete"]))
            if action == "delete" and isinstance(node, dict):
                node.pop(where[-1], None)
            elif isinstance(node, (dict, list)) and (isinstance(node, dict) or where[-1] < len(node)):
                node[where[-1]] = data.draw(_JSON)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or retyped this path
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(d))  # Infinity/NaN included, as Python writes them
    _exercise(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3),
                                st.binary(max_size=4) | st.sampled_from([b"{", b"[", b'"', b"1e400", b"\xe9", b","])),
                      min_size=1, max_size=4))
def test_fuzz_byte_mutations(tmp_path: Path, edits) -> None:
    raw = bytearray(MANIFEST.read_bytes())
    for pos, cut, insert in edits:
        pos %= len(raw) + 1
        raw[pos:pos + cut] = insert
    path = tmp_path / "fuzz.json"
    path.write_bytes(bytes(raw))
    _exercise(path)


@pytest.mark.parametrize("bars", [10**15, 10**400, 175_321])
def test_warmup_span_limit(doc: dict, bars: int) -> None:
    """warmup_bars 10**15 passed and the backtest died in pandas (OutOfBoundsDatetime): an
    explicit warm-up spans at most 20 years of base bars (175,320 hours)."""
    raw = copy.deepcopy(doc["profiles"][P])
    raw["warmup_bars"] = bars
    with pytest.raises(ManifestError) as info:
        parse_manifest({"profiles": {P: raw}})
    msg = str(info.value)
    assert "field 'warmup_bars': " in msg and "span more than 20 years; at most 175320" in msg and len(msg) < 300, msg
    raw["warmup_bars"] = 175_320
    assert parse_manifest({"profiles": {P: raw}}).profile(P).warmup == 175_320


def test_readme_states_the_warmup_cap_the_check_applies() -> None:
    # README said "at most 100 years" in one place and "20 years" in another; the check is
    # MAX_WARMUP_SPAN_MS, so every cap the README states must be that one.
    import re

    from tandem.core.manifest import MAX_WARMUP_SPAN_MS

    text = " ".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").split())
    caps = {int(n) for n in re.findall(r"at most (\d+) years of base bars", text)}
    assert caps == {round(MAX_WARMUP_SPAN_MS / (365.25 * 86_400_000))}
