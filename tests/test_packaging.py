"""Tandem installs under one import name, ``tandem`` (issue 19).

The repository keeps its folders ``core/``, ``backtest/`` and ``daemon/``; ``setup.py`` ships
them as ``tandem.core``, ``tandem.backtest`` and ``tandem.daemon``. python-daemon's module is
``daemon``: before, a venv holding both gave one of them to ``import daemon``, and a regular
install wrote one package's files over the other's. These tests build the wheel, install it
into a fresh venv beside python-daemon and run both console scripts there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SHIPPED = ("tandem", "core", "backtest", "daemon")

try:  # not `import daemon`: inside the checkout that name is the folder daemon/
    version("python-daemon")
except PackageNotFoundError:
    pytest.skip("python-daemon (the test extra) is not installed", allow_module_level=True)


def _python_daemon_is_theirs(python: str, cwd: Path) -> str:
    """Import both ``daemon`` (python-daemon) and ``tandem.daemon`` in one interpreter."""
    code = ("import daemon, tandem.daemon, tandem.daemon.cli\n"
            "assert hasattr(daemon, 'DaemonContext'), daemon.__file__\n"
            "print(tandem.daemon.__file__)")
    res = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip()


def test_editable_install_leaves_daemon_to_python_daemon(tmp_path: Path) -> None:
    where = _python_daemon_is_theirs(sys.executable, tmp_path)
    assert Path(where).resolve() == (REPO_ROOT / "daemon" / "__init__.py").resolve()


@pytest.mark.slow
def test_wheel_installs_beside_python_daemon_and_both_clis_run(tmp_path: Path) -> None:
    # Build from a copy: a build leaves build/ and *.egg-info behind, never in the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    for folder in SHIPPED:
        shutil.copytree(REPO_ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(dist), str(src)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("tandem-*.whl")
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"tandem", wheel.name.split("-py3")[0] + ".dist-info"}, tops

    # A fresh venv with only the wheel of its own; the test venv's packages (numba, pandas,
    # python-daemon, ...) are reachable through a .pth, so no index is needed.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = str(venv / "bin" / "python")
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)

    where = _python_daemon_is_theirs(py, tmp_path)
    assert Path(where).is_relative_to(site), where
    for script in ("tandem-backtest", "tandem-daemon"):
        res = subprocess.run([str(venv / "bin" / script), "--help"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and "usage:" in res.stdout, res.stderr[-2000:]
    res = subprocess.run([str(venv / "bin" / "tandem-backtest"), "demo", "--days", "20",
                          "--manifest", str(REPO_ROOT / "manifest.json"),
                          "--out", str(tmp_path / "out")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fingerprint" in res.stdout + res.stderr
