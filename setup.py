"""Build hook: the wheel carries the built-in files as package data.

The repository keeps ``bench.toml``, ``datasets/*.toml`` and ``reports/*.csv``
at its top level; a wheel needs them inside the package. ``build_py`` copies
them to ``bench/_builtin/`` in the build folder (never into the source tree),
where :mod:`bench.resources` finds them. Editable installs skip the copy and
read the repository's files. Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# Kept in step with bench/resources.py (CONFIG_NAME, CARDS_FOLDER, REPORTS_FOLDER,
# PACKAGED); tests/test_install.py checks the wheel against the repository.
BUILTIN = ("bench.toml", "datasets/*.toml", "reports/*.csv")
TARGET = Path("bench", "_builtin")


def builtin_files() -> list[Path]:
    """The repository's built-in files, relative to its root; refuses a partial set."""
    found = []
    for pattern in BUILTIN:
        matches = sorted(path.relative_to(HERE) for path in HERE.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{HERE / pattern}: no such file; the wheel would lack "
                                    "its built-in files")
        found.extend(matches)
    return found


class BuildWithBuiltins(build_py):
    """``build_py`` that also copies the built-in files into ``bench/_builtin``."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            for source in builtin_files():
                target = Path(self.build_lib) / TARGET / source
                self.mkpath(str(target.parent))
                self.copy_file(str(HERE / source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return [*outputs, *(str(Path(self.build_lib) / TARGET / source)
                            for source in builtin_files())]


def packages() -> list[str]:
    """``bench`` and its subpackages, with the top-level ``adapters/`` folder installed as
    ``bench.adapters``: the wheel's one top-level module is ``bench``, so it never clashes
    with another distribution's ``adapters`` (AdapterHub's library has that import name).
    ``benchmarks/`` is not shipped."""
    adapters = ["bench.adapters", *(f"bench.adapters.{name}"
                                    for name in find_packages(str(HERE / "adapters")))]
    return [*find_packages(str(HERE), include=["bench", "bench.*"]), *adapters]


setup(cmdclass={"build_py": BuildWithBuiltins}, packages=packages(),
      package_dir={"bench.adapters": "adapters"})
