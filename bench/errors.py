"""The project's own error types, and the one "did you mean" lookup.

The CLI maps these to a one-line message and an exit code (configuration and
usage: 2; data and run problems: 1 or 2 as documented in ``bench.cli``). Any
other exception is a bug and is shown with its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path


class BenchError(Exception):
    """Base of every error the harness reports as one line."""


class ConfigError(BenchError, ValueError):
    """A configuration, card or command-line problem, one line naming the key."""


class DataError(BenchError, ValueError):
    """A file that cannot be used: one line naming the file and the problem.

    Attributes
    ----------
    path : str
        The offending file (or folder).
    problem : str
        What is wrong with it.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


class RunError(BenchError, RuntimeError):
    """A run cannot start or continue (e.g. resuming with a different plan)."""


@dataclass(frozen=True)
class Problem:
    """One finding of a dataset check.

    Attributes
    ----------
    severity : {"error", "warning", "info"}
        Errors make a case unusable (or the dataset incomplete); warnings are
        worth a look (an empty mask); info lines report counts.
    path : str
        The file or folder concerned.
    message : str
        What was found, one line.
    """

    severity: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest known name, or ``""``."""
    hint = get_close_matches(str(name), [str(k) for k in known], n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def unknown_name(what: str, name: str, known: Iterable[str], where: str = "") -> ConfigError:
    """A ConfigError for an unknown ``name`` of kind ``what``, with a suggestion.

    Examples
    --------
    >>> str(unknown_name("model", "registraton", ["registration", "empty"]))
    "unknown model 'registraton' (did you mean 'registration'?)"
    """
    known = sorted(str(k) for k in known)
    prefix = f"{where}: " if where else ""
    suggestion = did_you_mean(name, known)
    if not suggestion and known:
        suggestion = f" (known: {', '.join(known)})"
    return ConfigError(f"{prefix}unknown {what} {name!r}{suggestion}")
