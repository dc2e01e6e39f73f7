"""Install the top-level folders ``core/``, ``backtest/`` and ``daemon/`` as ``tandem.*``.

The repository keeps the layout the design calls for; the installed import names carry the
project's name, so a site-packages shared with python-daemon (``daemon``) or any other
``core`` holds both. Everything else about the build is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS = ("core", "backtest", "daemon")

setup(
    packages=["tandem"] + [f"tandem.{p}" for p in find_packages(include=[f"{f}*" for f in FOLDERS])],
    package_dir={"tandem": "tandem", **{f"tandem.{f}": f for f in FOLDERS}},
)
