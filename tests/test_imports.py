"""What a command imports is what a user waits for (issue 15): ``--help`` and a manifest
check load neither numba, ccxt nor pandas (nor structlog, ~60 ms with the asyncio it
imports: the download command's options live apart from the downloader for that); the
exchange-id check reads ccxt's own list."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY = ("numba", "ccxt", "pandas", "pyarrow", "scipy", "matplotlib", "structlog")


def _imported_after(code: str) -> list[str]:
    probe = (code + "\nimport sys\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_help_and_manifest_check_import_nothing_heavy() -> None:
    code = ("from tandem.backtest.cli import build_parser\nbuild_parser().format_help()\n"
            "from tandem.daemon.cli import _parser as daemon_parser\ndaemon_parser().format_help()\n"
            "from tandem.core.manifest import load_manifest\nload_manifest('manifest.json')")
    assert _imported_after(code) == []


def test_exchange_ids_are_ccxts_own_list() -> None:
    import ccxt
    from tandem.core.manifest import _ccxt_exchanges

    assert _ccxt_exchanges() == frozenset(ccxt.exchanges)


def test_the_readmes_replay_imports_no_pandas(tmp_path) -> None:
    """The README's main job (replay: emulator, daemon, journal export, summary) never
    needs pandas, which costs ~0.4 s of the process (issue 15). Small: two assets on 1m."""
    from tests.test_ops_daemon import base_env, write_manifest

    write_manifest(tmp_path)
    env = base_env(tmp_path, TANDEM_HTTP_ENABLED="false")
    args = ["replay", "--sample", "--bars", "120", "--db", str(tmp_path / "r.sqlite"),
            "--fresh", "--out", str(tmp_path / "out")]
    probe = (f"import sys\nfrom tandem.daemon.cli import main\nrc = main({args!r})\n"
             "print('pandas' in sys.modules, rc)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, env=env)
    assert done.stdout.strip().splitlines()[-1] == "False 0", done.stderr[-2000:]
    assert "fingerprint run=" in done.stdout
    assert (tmp_path / "out" / "fills.csv").exists()
