"""``--write-profile NAME``: the chosen parameters as a new profile in a manifest copy.

The new profile is the base profile with the chosen fields replaced (the same
:func:`tandem.backtest.sweep.space.apply_params` the trials used), added to a copy of the input
manifest (or ``--manifest-out``), and the written file is loaded back through the manifest
model before its profile hash is reported — so ``tandem-backtest run --profile NAME`` and
the daemon run exactly the trial the sweep scored.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tandem.backtest.sweep.space import apply_params

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class ProfileOutError(ValueError):
    """Bad --write-profile / --manifest-out (exit 2)."""


def check_target(manifest_path: Path, name: str, manifest_out: Path) -> dict[str, Any]:
    """Validate the request before any work; returns the input manifest document."""
    if not _NAME_RE.match(name):
        raise ProfileOutError(f"--write-profile {name!r}: a profile name is lowercase letters, "
                              "digits and '_'")
    try:
        doc = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProfileOutError(f"cannot read the manifest {manifest_path}: {exc}") from None
    if name in doc.get("profiles", {}):
        raise ProfileOutError(f"--write-profile {name!r}: the manifest already has a profile "
                              "of that name; pick another")
    if manifest_out.is_dir():
        raise ProfileOutError(f"--manifest-out {manifest_out} is a folder; give a file path")
    return doc


def write_profile(doc: dict[str, Any], base: Any, name: str, params: dict[str, Any],
                  manifest_out: Path) -> str:
    """Add profile ``name`` to ``doc``, write it to ``manifest_out``, validate, return its
    profile hash."""
    from tandem.core.manifest import load_manifest

    data = apply_params(base.model_dump(mode="json"), params, list(base.timeframes))
    doc = json.loads(json.dumps(doc))
    doc["profiles"][name] = data
    manifest_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest_out.with_name(manifest_out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    prof = load_manifest(tmp).profile(name)  # raises ManifestError: nothing replaced
    tmp.replace(manifest_out)
    return prof.profile_hash()
