"""Hand-written checks of TOML tables, being replaced by :mod:`bench.settings`.

Still used by the dataset readers and the adapters; delete this module when
they validate with :func:`bench.settings.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from difflib import get_close_matches
from typing import Any

from bench.errors import ConfigError


def check_table(
    table: Mapping[str, Any],
    schema: Mapping[str, type | tuple[type, ...]],
    where: str,
    required: tuple[str, ...] = (),
) -> None:
    """Check ``table`` against ``schema`` (key -> allowed type(s)).

    Raises
    ------
    ConfigError
        For an unknown key (with the nearest valid name), a value of the wrong
        type, or a missing required key.
    """
    for key, value in table.items():
        if key not in schema:
            hint = get_close_matches(key, list(schema), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}: unknown key {key!r}{suggestion}")
        expected = schema[key]
        # bool is an int subclass; do not let true pass where a number is expected.
        if isinstance(value, bool) and bool not in _as_tuple(expected):
            raise ConfigError(f"{where}.{key}: expected {_type_names(expected)}, got a boolean")
        if not isinstance(value, expected):
            raise ConfigError(
                f"{where}.{key}: expected {_type_names(expected)}, got {type(value).__name__} "
                f"{value!r}"
            )
    for key in required:
        if key not in table:
            raise ConfigError(f"{where}: missing required key {key!r}")


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _type_names(expected: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean",
             "list": "a list", "dict": "a table"}
    return " or ".join(names.get(t.__name__, t.__name__) for t in _as_tuple(expected))
