"""``tandem-daemon`` as a new user drives it from the README and ``.env.example``: settings and
options that were accepted and then ignored, and a replay that hung on a closed log pipe.

Every test runs the real command (``python -m tandem.daemon.cli``) on the small 1m test
profile: the emulator on 127.0.0.1 and the real ccxt.pro client, state in ``tmp_path``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_daemon_support import small_profile

REPO = Path(__file__).resolve().parents[1]


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    prof = json.loads(small_profile().model_dump_json())
    path.write_text(json.dumps({"version": 1, "profiles": {"tst": prof}}))
    return path


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The caller's environment without its TANDEM_* settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANDEM_")}
    return {**env, "PYTHONPATH": str(REPO), "TANDEM_STATE_DB": str(tmp_path / "state.sqlite"),
            "TANDEM_HTTP_ENABLED": "false", **settings}


def _replay(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tandem.daemon.cli", "replay", "--manifest",
            str(_manifest(tmp_path)), "--profile", "tst", "--sample", "--bars", "5", *extra]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt, json_lines", [("console", False), ("json", True), ("auto", True)])
def test_log_format_setting_is_honoured(tmp_path: Path, fmt: str, json_lines: bool) -> None:
    """``.env.example`` documents TANDEM_LOG_FORMAT (json|console), yet the daemon never read
    it: logs were JSON whenever stderr was not a terminal, whatever it said. ``auto`` (the
    default) keeps that choice (README: JSON lines when not on a terminal)."""
    proc = subprocess.run(_replay(tmp_path), capture_output=True, text=True, cwd=tmp_path,
                          env=_env(tmp_path, TANDEM_LOG_FORMAT=fmt), timeout=100)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "daemon_stop" in ln]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("{") is json_lines, lines[0]


@pytest.mark.timeout(120)
def test_replay_finishes_when_its_log_reader_goes_away(tmp_path: Path) -> None:
    """``tandem-daemon replay ... 2>&1 | head`` hung forever: once ``head`` exited, a log line
    raised BrokenPipeError inside the daemon's tasks and the replay waited for a slice that
    never came. Log lines past a closed stderr are dropped; the replay ends and says so."""
    proc = subprocess.Popen(_replay(tmp_path, "--log-format", "json"), cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    proc.stderr.readline()  # the first log line, then the reader is gone (like head -1)
    proc.stderr.close()
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("replay hung after its stderr reader exited")
    assert proc.returncode == 0
    assert "replay of tst" in out and "fingerprint run=" in out
