"""What a run records about the software it ran with: package versions, git state, time.

One place for installed package versions: the run record (``config.json``)
and the prediction cache's keys (:mod:`bench.cache`) both use
:func:`package_versions`.
"""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.resources import source_checkout

PACKAGE = "medsam2-bench"
# The packages whose versions the run record lists.
RECORDED_PACKAGES = (PACKAGE, "numpy", "scipy", "pandas", "medpy", "scikit-image",
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


def package_version() -> str:
    """The installed version of medsam2-bench (``bench.__version__`` when run uninstalled)."""
    from bench import __version__

    return package_versions([PACKAGE])[PACKAGE] or __version__


def provenance() -> dict[str, Any]:
    """The package version, the project's git state when known, and the platform.

    ``git`` (``{"commit": sha, "dirty": bool}``) is present only when the code
    runs from a git checkout: an installed wheel has no commit, and its
    site-packages may sit in another project's git tree, whose commit would be
    recorded by mistake. The version then identifies the code.
    """
    record: dict[str, Any] = {"version": package_version(),
                              "versions": {"python": platform.python_version(),
                                           **package_versions(RECORDED_PACKAGES)},
                              "platform": platform.platform()}
    checkout = source_checkout()
    git = git_state(checkout) if checkout is not None else {"commit": None}
    if git["commit"]:
        record["git"] = git
    return record


def describe(record: Mapping[str, Any]) -> str:
    """One line naming the code a run used: ``medsam2-bench 0.1.0, git commit abc…``.

    The commit (and "uncommitted changes") appear only when the record has
    one; records written before the version was recorded show ``version
    unknown``.
    """
    version = record.get("version") or record.get("versions", {}).get(PACKAGE)
    text = f"{PACKAGE} {version or '(version unknown)'}"
    git = record.get("git") or {}
    if git.get("commit"):
        text += f", git commit `{git['commit']}`"
        if git.get("dirty"):
            text += " (uncommitted changes)"
    return text


def timestamp() -> str:
    """The local time as the run record writes it (ISO 8601 with the UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
