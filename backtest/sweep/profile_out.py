"""``--write-profile NAME``: the chosen parameters as a new profile in a manifest copy.

The new profile is the base profile with the chosen fields replaced (the same
:func:`tandem.backtest.sweep.space.apply_params` the trials used), added to a copy of the input
manifest written to ``--manifest-out`` (default ``<out>/manifest.json``; the profiles earlier
sweeps wrote there are kept), and the written file is loaded back through the manifest
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


def check_target(manifest_path: Path, name: str, manifest_out: Path, base: Any = None,
                 symbols: list[str] | None = None) -> dict[str, Any]:
    """Validate the request before any work; returns the input manifest document.

    ``symbols``: the sweep's ``--symbols`` (the written profile trades only those)."""
    if symbols and base is not None and not set(symbols) & set(base.core_assets):
        raise ProfileOutError(f"--write-profile with --symbols {','.join(symbols)}: the "
                              f"profile written trades only these, and needs one of its "
                              f"core_assets ({', '.join(base.core_assets)}) among them")
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
    return _keep_earlier_profiles(doc, manifest_out, Path(manifest_path), name)


def _keep_earlier_profiles(doc: dict[str, Any], manifest_out: Path, manifest_path: Path,
                           name: str) -> dict[str, Any]:
    """``doc`` plus the profiles an existing ``manifest_out`` holds beyond it: profiles that
    earlier sweeps wrote there were otherwise dropped by the next sweep writing another
    name. ``name`` itself is replaced (rerunning a sweep rewrites its own profile); the
    input manifest's profiles are taken as they are now."""
    if not manifest_out.exists() or manifest_out.resolve() == manifest_path.resolve():
        return doc
    try:
        earlier = json.loads(manifest_out.read_text(encoding="utf-8"))
        profiles = earlier["profiles"]
        if not isinstance(profiles, dict):
            raise TypeError("'profiles' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileOutError(f"--manifest-out {manifest_out} exists and is not a manifest "
                              f"({exc}); pick another path or remove it") from None
    doc = json.loads(json.dumps(doc))
    for other, prof in profiles.items():
        if other != name and other not in doc["profiles"]:
            doc["profiles"][other] = prof
    return doc


def write_profile(doc: dict[str, Any], base: Any, name: str, params: dict[str, Any],
                  manifest_out: Path, symbols: list[str] | None = None) -> str:
    """Add profile ``name`` to ``doc``, write it to ``manifest_out``, validate, return its
    profile hash. ``symbols``: the sweep's ``--symbols`` subset."""
    from tandem.core.manifest import load_manifest

    data = apply_params(base.model_dump(mode="json"), params, list(base.timeframes))
    if symbols:
        # The sweep scored these assets only; the profile with all of the base's assets
        # made `run --profile NAME` (and the daemon) trade others than the scored trial.
        keep = set(symbols)
        data["core_assets"] = [s for s in data["core_assets"] if s in keep]
        data["universe"] = [s for s in data.get("universe") or [] if s in keep]
    doc = json.loads(json.dumps(doc))
    doc["profiles"][name] = data
    manifest_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = manifest_out.with_name(manifest_out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    prof = load_manifest(tmp).profile(name)  # raises ManifestError: nothing replaced
    tmp.replace(manifest_out)
    return prof.profile_hash()
