"""Hostile configuration through every driver (issue 16 items 11, 13): one ``error:`` line on
stderr naming the file/field, exit 2, nothing on stdout and nothing written.

The matrix runs the drivers' ``main`` in-process (cheap); one case per command also runs as
a real subprocess, where the exit code and the absence of a traceback are what a user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

P = "crypto_rating_all"
DOC = json.loads((REPO_ROOT / "manifest.json").read_text())


def _manifest_text(**profile_raw: str) -> str:
    """The shipped manifest with raw JSON text for some fields of profile P."""
    d = json.loads(json.dumps(DOC))
    for key in profile_raw:
        node = d["profiles"][P]
        *parents, last = key.split("__")
        for k in parents:
            node = node[k]
        node[last] = f"@{key}@"
    text = json.dumps(d)
    for key, raw in profile_raw.items():
        text = text.replace(f'"@{key}@"', raw)
    return text


# (id, manifest bytes or None for the shipped one, .env bytes or None, expected in the message)
CASES = [
    ("initial_cash Infinity", _manifest_text(initial_cash="Infinity").encode(),
     None, f"manifest.json: profile '{P}', field 'initial_cash': Input should be a finite number"),
    ("min_trade_value 1e400", _manifest_text(execution__min_trade_value="1e400").encode(),
     None, f"manifest.json: profile '{P}', field 'execution.min_trade_value': Input should be a finite"),
    ("latin-1 manifest", _manifest_text(exchange='"b\u00efnance"').encode("latin-1"),
     None, "manifest.json: not UTF-8 text (byte 0xef"),
    ("nested manifest", ('{"profiles": ' + "[" * 50_000 + "]" * 50_000 + "}").encode(),
     None, "manifest.json: invalid JSON: nested deeper than 16 levels"),
    ("duplicate profile", json.dumps(DOC).replace('"profiles": {', f'"profiles": {{"{P}": {{}}, ', 1).encode(),
     None, f"manifest.json: field 'profiles.{P}': duplicate key"),
    ("1 MB exchange", _manifest_text(exchange=json.dumps("e" * 1_000_000)).encode(),
     None, "field 'exchange': unknown exchange '" + "e" * 80 + "'…(1000000 chars)"),
    ("latin-1 .env", None, b"TANDEM_LOG_LEVEL=INFO\nNOTE=caf\xe9\n", "settings: .env: not UTF-8 text (byte 0xe9 at line 2)"),
]
COMMANDS = {
    "tandem.core.manifest": lambda m: ["tandem.core.manifest", str(m)],
    "backtest run": lambda m: ["tandem.backtest.cli", "run", "--manifest", str(m)],
    "daemon run": lambda m: ["tandem.daemon.cli", "run", "--manifest", str(m)],
    "daemon replay": lambda m: ["tandem.daemon.cli", "replay", "--manifest", str(m)],
}


def _setup(tmp_path: Path, manifest: bytes | None, env: bytes | None) -> Path:
    path = tmp_path / "manifest.json"
    path.write_bytes(manifest if manifest is not None else (REPO_ROOT / "manifest.json").read_bytes())
    if env is not None:
        (tmp_path / ".env").write_bytes(env)
    return path


def _main(module: str):
    if module == "tandem.core.manifest":
        from tandem.core.manifest import main
    elif module == "tandem.backtest.cli":
        from tandem.backtest.cli import main
    else:
        from tandem.daemon.cli import main
    return main


@pytest.fixture
def clean_cwd(tmp_path: Path, monkeypatch) -> Path:
    for key in list(os.environ):
        if key.startswith("TANDEM_") and key not in ("TANDEM_TEST_DATA", "TANDEM_WARMUP"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.timeout(120)  # a regression would start the daemon: fail, do not hang
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case,manifest,env,expect", CASES, ids=[c[0] for c in CASES])
def test_hostile_config_in_process(clean_cwd: Path, capsys, command, case, manifest, env, expect) -> None:
    if command == "tandem.core.manifest" and env is not None:
        pytest.skip("python -m tandem.core.manifest reads no settings")
    path = _setup(clean_cwd, manifest, env)
    before = sorted(clean_cwd.iterdir())
    module, *args = COMMANDS[command](path)
    assert _main(module)(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err[:2000]
    assert expect in err and len(err) < 500, err[:2000]
    assert sorted(clean_cwd.iterdir()) == before  # nothing written


SUBPROCESS = [
    ("tandem.core.manifest", "min_trade_value 1e400"),
    ("backtest run", "latin-1 manifest"),
    ("daemon run", "latin-1 .env"),
    ("daemon replay", "nested manifest"),
]


@pytest.mark.parametrize("command,case", SUBPROCESS, ids=[f"{c}: {k}" for c, k in SUBPROCESS])
def test_hostile_config_subprocess(tmp_path: Path, command: str, case: str) -> None:
    _, manifest, env_bytes, expect = next(c for c in CASES if c[0] == case)
    path = _setup(tmp_path, manifest, env_bytes)
    before = sorted(tmp_path.iterdir())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_") or k == "TANDEM_WARMUP"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    proc = subprocess.run([sys.executable, "-m", *COMMANDS[command](path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert expect in proc.stderr, proc.stderr
    assert sorted(tmp_path.iterdir()) == before
