"""The built-in files: default ``bench.toml``, dataset cards, the paper's tables.

They live at the top of the repository (``bench.toml``, ``datasets/*.toml``,
``reports/*.csv``). A wheel carries copies as package data under
``bench/_builtin/`` (``setup.py`` copies them at build time); a source
checkout or an editable install has no such folder and reads the
repository's own files. Both are found with :mod:`importlib.resources`, and
neither is ever written to: paths in the built-in ``bench.toml`` resolve
against the working directory (:mod:`bench.config`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from bench.errors import RunError

CONFIG_NAME = "bench.toml"
CARDS_FOLDER = "datasets"
REPORTS_FOLDER = "reports"
# Package data folder of a wheel; setup.py writes the same layout there.
PACKAGED = "_builtin"


def builtin_root() -> Path:
    """The folder holding the built-in ``bench.toml``, ``datasets/`` and ``reports/``.

    Raises
    ------
    RunError
        When neither the package data nor the repository's files are there
        (a broken installation).
    """
    package = _as_path(files("bench"))
    for root in (package / PACKAGED, package.parent):
        if (root / CONFIG_NAME).is_file() and (root / CARDS_FOLDER).is_dir():
            return root
    raise RunError(f"the built-in {CONFIG_NAME} and dataset cards are missing: neither "
                   f"{package / PACKAGED} (installed wheel) nor {package.parent / CONFIG_NAME} "
                   "(source checkout) exists; reinstall medsam2-bench")


def builtin_config() -> Path:
    """The default ``bench.toml``, used when no other is found."""
    return builtin_root() / CONFIG_NAME


def builtin_cards() -> Path:
    """The folder of the built-in dataset cards."""
    return builtin_root() / CARDS_FOLDER


def reports_folder() -> Path:
    """The folder of the reference tables (the paper's, ``demo-reference.csv``)."""
    return builtin_root() / REPORTS_FOLDER


def source_checkout() -> Path | None:
    """The repository folder when running from a source checkout, None from a wheel."""
    root = builtin_root()
    return None if root.name == PACKAGED else root


def in_package(path: Path) -> bool:
    """True when ``path`` lies inside the installed ``bench`` package (never written to)."""
    package = _as_path(files("bench")).resolve()
    return Path(path).resolve().is_relative_to(package)


def _as_path(resource: object) -> Path:
    # pip installs wheels unpacked, so package data are plain files; a zipped
    # import would need every reader to take file objects instead of paths.
    if not isinstance(resource, Path):
        raise RunError(f"the bench package is imported from {resource} (not a folder); "
                       "install medsam2-bench with pip")
    return resource
