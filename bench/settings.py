"""One way to declare and validate settings: strict pydantic models.

Every settings table the user writes (``bench.toml``, dataset cards, suite
tables, protocol parameters, adapter settings) is a subclass of
:class:`Settings`, declared once. :func:`validate` turns pydantic's errors into
one :class:`~bench.errors.ConfigError` line naming the key, with the nearest
valid name for an unknown key or an unknown choice. Models are strict: ``"3"``
is not an integer and ``true`` is not a number, because TOML already gives
typed values and a silent coercion would hide a typo. :func:`read_toml` is the
one reader of TOML files; :func:`table_reference` turns a model into the rows
of a generated settings reference.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bench.errors import ConfigError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["Settings", "Items", "validate", "read_toml", "field_reference", "table_reference",
           "type_name"]

SettingsT = TypeVar("SettingsT", bound="Settings")
T = TypeVar("T")


class Settings(BaseModel):
    """Base of every settings model: unknown keys are errors, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _array_to_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: A TOML array held as an immutable tuple (strict models refuse a list for a tuple).
Items = Annotated[tuple[T, ...], BeforeValidator(_array_to_tuple)]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning a missing file or a syntax error into one line.

    Raises
    ------
    ConfigError
        Naming the file: not found, a folder, unreadable, not UTF-8 text (TOML
        is UTF-8 by definition), or invalid TOML.
    """
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied; cannot read it") from None
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte "
                          f"{err.object[err.start]:#04x}); save the file as UTF-8, as TOML "
                          "requires") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


def validate(model: type[SettingsT], data: Mapping[str, Any] | None, where: str) -> SettingsT:
    """Validate ``data`` against ``model``.

    Parameters
    ----------
    model : type of Settings
        The schema.
    data : mapping or None
        The table as read (``None`` means empty).
    where : str
        Where the table came from (file and table name), used in messages.

    Raises
    ------
    ConfigError
        One line for the first problem: ``where.key: what is wrong``.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, got {data!r}")
    try:
        return model.model_validate(dict(data or {}))
    except ValidationError as err:
        raise ConfigError(_first_problem(model, err, where)) from None


# ------------------------------------------------------------------ error messages


def _first_problem(model: type[BaseModel], err: ValidationError, where: str) -> str:
    problems = err.errors(include_url=False)
    path, _ = _walk(model, problems[0]["loc"])
    problem = problems[0]
    key = ".".join(str(part) for part in path)
    if problem["type"] == "extra_forbidden":
        _, parent = _walk(model, problem["loc"][:-1])
        place = f"{where}.{'.'.join(str(p) for p in path[:-1])}" if len(path) > 1 else where
        return f"{place}: unknown key {path[-1]!r}{did_you_mean(str(path[-1]), _keys(parent))}"
    if problem["type"] == "missing":
        return f"{where}: missing required key {key!r}"
    # A union reports one problem per member, all at the same key: say them together.
    same = [p for p in problems if _walk(model, p["loc"])[0] == path]
    texts = [_text(p) for p in same]
    message = texts[0] + "".join(f", or {t.removeprefix('expected ')}" for t in texts[1:])
    given = problem.get("input")
    shown = "" if isinstance(given, Mapping) else f" (got {given!r})"
    hint = _choice_hint(same, given)
    return f"{where}.{key}: {message}{shown}{hint}" if key else f"{where}: {message}{shown}{hint}"


_BOUND_ERRORS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="),
                 "less_than": ("lt", "<"), "less_than_equal": ("le", "<=")}


def _text(problem: Mapping[str, Any]) -> str:
    kind, ctx = problem["type"], problem.get("ctx", {})
    if kind == "value_error":
        return str(ctx["error"])
    if kind in _BOUND_ERRORS:
        bound, symbol = _BOUND_ERRORS[kind]
        return f"expected a value {symbol} {ctx[bound]}"
    if kind in ("too_short", "too_long"):
        limit, count = ("at least", ctx["min_length"]) if kind == "too_short" else \
            ("at most", ctx["max_length"])
        return f"expected {limit} {count} item{'s' if count != 1 else ''}"
    return problem["msg"].replace("Input should be", "expected")


def _choice_hint(problems: Sequence[Mapping[str, Any]], given: Any) -> str:
    """A did-you-mean for a string that misses a ``Literal``'s choices."""
    if not isinstance(given, str):
        return ""
    choices = [choice for p in problems if p["type"] == "literal_error"
               for choice in re.findall(r"'([^']*)'", p["ctx"]["expected"])]
    return did_you_mean(given, choices)


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[tuple[Any, ...], Any]:
    """The key path the user wrote for pydantic's ``loc``, and the type found there.

    pydantic puts the name of the union member it tried into ``loc`` (e.g.
    ``"literal['first','random']"``); the user never wrote it, so it is dropped.
    The type is None where the walk cannot follow (e.g. into ``Any``).
    """
    path: list[Any] = []
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if _is_union(current):
            members = [m for m in get_args(current) if m is not type(None)]
            current = next((m for m in members if getattr(m, "__name__", None) == part), None)
            continue
        path.append(part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for name, f in current.model_fields.items()
                          if part in (name, f.alias)), None)
            current = None if field is None else field.annotation
        elif get_origin(current) in (dict, Mapping):
            current = get_args(current)[1]
        elif get_origin(current) in (list, tuple, set, frozenset, Sequence):
            current = get_args(current)[0]
        else:
            current = None
    return tuple(path), _unwrap(current)


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X and ``X | None`` -> X (pydantic tags neither in ``loc``)."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif _is_union(annotation):
            members = [m for m in get_args(annotation) if m is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _keys(model: Any) -> list[str]:
    """Field names (and aliases) of ``model`` for the suggestion; none if not a model."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


# ------------------------------------------------------------------ generated reference


def field_reference(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per field (name, type, default, description) for generated docs."""
    rows = []
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "required"
        else:
            value = field.get_default(call_default_factory=True)
            default = repr(list(value) if isinstance(value, tuple) else value)
        rows.append({"name": field.alias or name,
                     "type": type_name(field.annotation, field.metadata),
                     "default": default, "description": field.description or ""})
    return rows


def table_reference(model: type[BaseModel], table: str = "") -> list[dict[str, str]]:
    """Rows (table, key, type, default, description) for ``model`` and its sub-tables.

    A field holding a settings model is its own table ``table.key``; a field
    holding a table of settings models (``dict[str, Model]``) is the table
    ``table.key.NAME``; any other table of named entries is one row
    ``NAME`` of ``table.key``. Other fields are rows of ``table``.
    """
    rows = []
    for row, field in zip(field_reference(model), model.model_fields.values(), strict=True):
        inner = _unwrap(field.annotation)
        named = f"{table}.{row['name']}" if table else row["name"]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            rows.extend(table_reference(inner, named))
            continue
        if get_origin(inner) is dict:
            value = _unwrap(get_args(inner)[1])
            if isinstance(value, type) and issubclass(value, BaseModel):
                rows.extend(table_reference(value, f"{named}.NAME"))
            else:  # a table of user-named entries: NAME = value
                rows.append({"table": named, "key": "NAME", "type": type_name(value),
                             "default": "-", "description": row["description"]})
            continue
        rows.append({"table": table, "key": row["name"], "type": row["type"],
                     "default": row["default"], "description": row["description"]})
    return rows


_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}
_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"),
           (annotated_types.Le, "le", "<="), (annotated_types.Lt, "lt", "<"))


def type_name(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A short English name of a field's type, with its bounds (``integer >= 1``)."""
    bounds = [f"{symbol} {getattr(item, attr)}" for item in metadata
              for kind, attr, symbol in _BOUNDS if isinstance(item, kind)]
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return type_name(inner, [*metadata, *_flatten(extra)])
    suffix = f" {' and '.join(bounds)}" if bounds else ""
    if _is_union(annotation):
        members = [m for m in get_args(annotation) if m is not type(None)]
        text = " or ".join(type_name(m) for m in members)
        return text + suffix + (" or none" if len(members) < len(get_args(annotation)) else "")
    if get_origin(annotation) is Literal:
        return " | ".join(repr(choice) for choice in get_args(annotation))
    if get_origin(annotation) in (tuple, list):
        return f"list of {type_name(get_args(annotation)[0])}"
    if get_origin(annotation) is dict:
        return f"table of {type_name(get_args(annotation)[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation))) + suffix


def _flatten(metadata: Sequence[Any]) -> list[Any]:
    """pydantic ``Field(...)`` in ``Annotated`` carries its bounds in ``.metadata``."""
    flat = []
    for item in metadata:
        flat.extend(getattr(item, "metadata", None) or [item])
    return flat
