"""Manifest models and loader: the shipped manifest, hashing, and malformed inputs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from core.manifest import (
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
    from core.manifest import WARMUP_MARGIN_HTF_BARS, _rating_warmup_bars

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
