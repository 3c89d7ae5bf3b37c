"""One way to declare and validate settings: strict pydantic models.

Every settings table the user writes (``bench.toml``, dataset cards, suite
tables, protocol parameters, adapter settings) is a subclass of
:class:`Settings`, declared once. :func:`validate` turns pydantic's errors into
one :class:`~bench.errors.ConfigError` line naming the key, with the nearest
valid name for an unknown key. Models are strict: ``"3"`` is not an integer
and ``true`` is not a number, because TOML already gives typed values and a
silent coercion would hide a typo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bench.errors import ConfigError, did_you_mean

__all__ = ["Settings", "validate", "field_reference"]

SettingsT = TypeVar("SettingsT", bound="Settings")


class Settings(BaseModel):
    """Base of every settings model: unknown keys are errors, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


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
    try:
        return model.model_validate(dict(data or {}))
    except ValidationError as err:
        raise ConfigError(_first_problem(model, err, where)) from None


def _first_problem(model: type[BaseModel], err: ValidationError, where: str) -> str:
    problem = err.errors(include_url=False)[0]
    location = [str(part) for part in problem["loc"]]
    key = ".".join(location)
    if problem["type"] == "extra_forbidden":
        known = _known_keys(model, problem["loc"][:-1])
        parent = ".".join(location[:-1])
        place = f"{where}.{parent}" if parent else where
        return f"{place}: unknown key {location[-1]!r}{did_you_mean(location[-1], known)}"
    if problem["type"] == "missing":
        return f"{where}: missing required key {key!r}"
    given = problem.get("input")
    shown = "" if isinstance(given, Mapping) else f" (got {given!r})"
    message = problem["msg"].replace("Input should be", "expected")
    return f"{where}.{key}: {message}{shown}" if key else f"{where}: {message}{shown}"


def _known_keys(model: type[BaseModel], path: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) of the model at ``path``, for the suggestion."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    fields = getattr(current, "model_fields", {})
    return [field.alias or name for name, field in fields.items()]


def field_reference(model: type[BaseModel]) -> list[dict[str, str]]:
    """One row per field (name, type, default, description) for generated docs."""
    rows = []
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default())
        annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
        rows.append({"name": field.alias or name, "type": annotation.replace("typing.", ""),
                     "default": default, "description": field.description or ""})
    return rows
