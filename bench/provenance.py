"""What a run records about the software it ran with: package versions, git state, time.

One place for installed package versions: the run record (``config.json``)
and the prediction cache's keys (:mod:`bench.cache`) both use
:func:`package_versions`.
"""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.resources import source_checkout

# The packages whose versions the run record lists.
RECORDED_PACKAGES = ("medsam2-bench", "numpy", "scipy", "pandas", "medpy", "scikit-image",
                     "nibabel", "torch", "sam2")


def package_versions(packages: Iterable[str]) -> dict[str, str | None]:
    """Installed version of each distribution in ``packages`` (None when not installed)."""
    versions: dict[str, str | None] = {}
    for package in packages:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def git_state(folder: Path) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``folder``.

    Both are None when ``folder`` is not in a git checkout or git is missing.
    """
    state: dict[str, Any] = {"commit": None, "dirty": None}
    try:
        state["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, check=True,
                                         capture_output=True, text=True).stdout.strip()
        state["dirty"] = bool(subprocess.run(["git", "status", "--porcelain"], cwd=folder,
                                             check=True, capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError):
        pass  # an installed copy, or no git: the record says unknown
    return state


def provenance() -> dict[str, Any]:
    """Package versions, the project's git state and the platform, for the run record."""
    return {"versions": {"python": platform.python_version(),
                         **package_versions(RECORDED_PACKAGES)},
            # An installed wheel has no commit (its site-packages may sit in another
            # project's git tree, whose commit would be recorded by mistake).
            "git": git_state(checkout) if (checkout := source_checkout()) is not None
            else {"commit": None, "dirty": None},
            "platform": platform.platform()}


def timestamp() -> str:
    """The local time as the run record writes it (ISO 8601 with the UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
