"""bench.settings: one-line messages from pydantic's errors, and the generated reference."""

from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from bench.errors import ConfigError
from bench.settings import Items, Settings, table_reference, type_name, validate


class Inner(Settings):
    """A sub-table."""

    size: int = Field(1, ge=1, description="a size")


class Outer(Settings):
    """A table with every shape of field the project uses."""

    mode: Literal["fast", "exact"] = Field("fast", description="how")
    start: Literal["first"] | Annotated[int, Field(ge=0)] = Field("first", description="where")
    ratio: Annotated[float, Field(gt=0, le=1)] | None = Field(None, description="a fraction")
    names: Items[str] = Field((), max_length=2, description="names")
    inner: Inner = Field(default_factory=Inner, description="unused: a table")
    named: dict[str, Inner] = Field(default_factory=dict, description="unused: tables")
    roots: dict[str, str] = Field(default_factory=dict, description="NAME = a folder")
    extra: dict[str, Any] = Field(default_factory=dict, description="free")


def _message(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        validate(Outer, data, "t.toml [x]")
    return str(caught.value)


@pytest.mark.parametrize(("data", "expected"), [
    ({"mdoe": "fast"}, "t.toml [x]: unknown key 'mdoe' (did you mean 'mode'?)"),
    ({"inner": {"sise": 2}}, "t.toml [x].inner: unknown key 'sise' (did you mean 'size'?)"),
    ({"named": {"a": {"sizes": 2}}},
     "t.toml [x].named.a: unknown key 'sizes' (did you mean 'size'?)"),
    ({"mode": "exakt"}, "t.toml [x].mode: expected 'fast' or 'exact' (got 'exakt') "
     "(did you mean 'exact'?)"),
    # The union's member names never appear; both members' expectations are said.
    ({"start": "last"}, "t.toml [x].start: expected 'first', or a valid integer (got 'last')"),
    ({"start": -2}, "t.toml [x].start: expected 'first', or a value >= 0 (got -2)"),
    ({"ratio": 0}, "t.toml [x].ratio: expected a value > 0.0 (got 0)"),
    ({"ratio": "half"}, "t.toml [x].ratio: expected a valid number (got 'half')"),
    ({"names": ["a", "b", "c"]}, "t.toml [x].names: expected at most 2 items (got ('a', 'b', "
     "'c'))"),
    ({"names": ["a", 1]}, "t.toml [x].names.1: expected a valid string (got 1)"),
    ({"inner": {"size": 0}}, "t.toml [x].inner.size: expected a value >= 1 (got 0)"),
    ({"roots": {"a": 3}}, "t.toml [x].roots.a: expected a valid string (got 3)"),
    ([1, 2], "t.toml [x]: expected a table, got [1, 2]"),
])
def test_one_line_names_the_key(data, expected):
    assert _message(data) == expected


def test_strict_values_and_arrays_as_tuples():
    table = validate(Outer, {"start": 3, "ratio": 1, "names": ["a", "b"]}, "t")
    assert table.start == 3 and table.ratio == 1.0 and isinstance(table.ratio, float)
    assert table.names == ("a", "b")
    assert validate(Outer, table.model_dump(), "t") == table
    assert validate(Outer, None, "t") == Outer()


def test_type_names_read_like_the_toml_a_user_writes():
    fields = Outer.model_fields
    assert type_name(fields["mode"].annotation) == "'fast' | 'exact'"
    assert type_name(fields["start"].annotation) == "'first' or integer >= 0"
    assert type_name(fields["ratio"].annotation) == "number > 0 and <= 1 or none"
    assert type_name(Inner.model_fields["size"].annotation,
                     Inner.model_fields["size"].metadata) == "integer >= 1"
    assert type_name(fields["names"].annotation) == "list of string"


def test_table_reference_walks_sub_tables():
    rows = {(row["table"], row["key"]): row for row in table_reference(Outer, "x")}
    assert set(rows) == {("x", "mode"), ("x", "start"), ("x", "ratio"), ("x", "names"),
                         ("x.inner", "size"), ("x.named.NAME", "size"), ("x.roots", "NAME"),
                         ("x.extra", "NAME")}
    assert rows["x", "mode"] == {"table": "x", "key": "mode", "type": "'fast' | 'exact'",
                                 "default": "'fast'", "description": "how"}
    assert rows["x", "names"]["default"] == "[]"
    assert rows["x.roots", "NAME"]["description"] == "NAME = a folder"
    assert rows["x.named.NAME", "size"]["default"] == "1"
