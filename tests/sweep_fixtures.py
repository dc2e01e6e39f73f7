"""Tiny sweep inputs shared by the sweep tests: 3 assets × 60 days of 1h demo candles and a
manifest whose profile ``t`` trades them with a 20-day warm-up."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYMS = ["BTC/USDT", "ETH/USDT", "DOGE/USDT"]
SPACE = """\
entry_threshold: [0.05, 0.1, 0.2]
exit_threshold: [-0.1, 0.1]
exit_rules.stop_loss_pct: {low: 0.02, high: 0.04, step: 0.01}
"""


def make_inputs(folder: Path, days: int = 60) -> dict[str, Path]:
    from tandem.backtest.demo_data import generate_candles, write_csv_folder

    data = folder / "data"
    write_csv_folder(generate_candles(SYMS, start="2024-01-01", n_bars=24 * days, seed=11), data)
    doc = json.loads((REPO / "manifest.json").read_text())
    p = doc["profiles"]["crypto_rating_all"]
    p.update(core_assets=SYMS[:2], universe=SYMS[2:], warmup_bars=480)
    doc["profiles"] = {"t": p}
    doc["default_profile"] = "t"
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(doc, indent=1))
    space = folder / "space.yaml"
    space.write_text(SPACE)
    return {"data": data, "manifest": manifest, "space": space}


def portfolio_inputs(folder: Path, portfolio: dict, days: int = 30) -> dict[str, Path]:
    """:func:`make_inputs` with profile ``t`` in portfolio mode with these ``portfolio``
    settings."""
    inp = make_inputs(folder, days=days)
    doc = json.loads(inp["manifest"].read_text())
    doc["profiles"]["t"]["execution"]["mode"] = "portfolio"
    doc["profiles"]["t"]["portfolio"] = portfolio
    inp["manifest"].write_text(json.dumps(doc))
    return inp


def sweep_args(inp: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["sweep", "--manifest", str(inp["manifest"]), "--profile", "t", "--data",
            str(inp["data"]), "--space", str(inp["space"]), "--out", str(out),
            "--no-progress", *extra]


def slow_evaluate_chunk(data, base, trials):  # noqa: ANN001, ANN201
    """evaluate_chunk that takes long enough for a test to kill its worker mid-task."""
    import time

    from tandem.backtest.sweep.evaluate import evaluate_chunk

    time.sleep(0.4)
    return evaluate_chunk(data, base, trials)
