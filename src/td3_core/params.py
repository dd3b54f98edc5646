"""The one parameter system of the nodes (trainer, driver, simulator).

A node lists its parameters once, in a ParamTable of Param(name, default, description, check):
the default fixes the type, the description goes into the ROS descriptor, the check says what is
wrong with a value. `table.declare(node)` declares them all (read-only: they are read once at
start-up, so a change at runtime is refused instead of silently ignored) and returns what the
node was given; `table.validate(values)` is ROS-free and returns the typed, checked values, or
raises ParamError naming the first bad parameter. Each node turns those values into its own
frozen dataclass (DriverParams, TrainerParams, the simulator's NodeParams).

Types: a double accepts an integer (`-p rate_hz:=20`), nothing else converts; doubles must be
finite. Parameters are declared with dynamic typing so that a value of the wrong type reaches
this check (and its message naming the parameter) instead of failing inside rclpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

Value = bool | int | float | str
Check = Callable[[Any], str | None]  # what is wrong with a value, or None

_KINDS = {float: "a double", int: "an integer", bool: "a boolean", str: "a string"}


class ParamError(ValueError):
    """An unusable parameter value; `name` is the parameter, `problem` what is wrong with it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter '{name}': {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class Param:
    name: str
    default: Value
    description: str
    check: Check | None = None

    def value(self, given: Any) -> Value:
        """`given` with the default's type and checked; ParamError otherwise."""
        expected = type(self.default)
        if expected is float and isinstance(given, int) and not isinstance(given, bool):
            given = float(given)
        if type(given) is not expected:
            raise ParamError(self.name, f"must be {_KINDS[expected]}, got {given!r}")
        problem = self.check(given) if self.check else None
        if problem is None and expected is float and not math.isfinite(given):
            problem = "must be finite"
        if problem:
            raise ParamError(self.name, f"{problem}, got {given!r}")
        return given


class ParamTable:
    """A node's parameters, in declaration order."""

    def __init__(self, params: Iterable[Param]) -> None:
        self.params = tuple(params)
        self._by_name = {p.name: p for p in self.params}
        if len(self._by_name) != len(self.params):
            raise ValueError("a parameter is listed twice")

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __getitem__(self, name: str) -> Param:
        return self._by_name[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def validate(self, given: Mapping[str, Any]) -> Mapping[str, Value]:
        """Every parameter typed and checked (a missing one takes its default), read-only."""
        unknown = sorted(set(given) - set(self._by_name))
        if unknown:
            raise ParamError(unknown[0], "unknown parameter")
        return MappingProxyType({p.name: p.value(given.get(p.name, p.default)) for p in self.params})

    def declare(self, node: Any) -> dict[str, Any]:
        """Declare every parameter on `node` with its descriptor; the values it was given, unchecked."""
        from rcl_interfaces.msg import ParameterDescriptor
        from rclpy.exceptions import ParameterException

        given: dict[str, Any] = {}
        for param in self.params:
            descriptor = ParameterDescriptor(description=param.description, read_only=True, dynamic_typing=True)
            try:
                given[param.name] = node.declare_parameter(param.name, param.default, descriptor).value
            except ParameterException as error:  # e.g. an invalid override: name it instead of a traceback
                raise ParamError(param.name, f"cannot be declared: {error}") from error
        return given


def build(factory: Callable[..., Any], fields: Mapping[str, Any], prefix: str = "", **names: str) -> Any:
    """factory(**fields), for a config class whose checks raise ValueError("<field> <problem>"):
    that error as a ParamError naming the parameter, names[field] or else prefix + field."""
    try:
        return factory(**fields)
    except ParamError:
        raise
    except (TypeError, ValueError) as error:
        field, _, problem = str(error).partition(" ")
        if field in fields:
            raise ParamError(names.get(field, prefix + field), problem) from error
        raise ParamError(prefix.rstrip(".") or factory.__name__, str(error)) from error


# ----------------------------------------------------------------------------- checks


def positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """low <= v <= high, each end open where asked: in_range(0, 1, high_open=True) is [0, 1)."""

    def check(v: float) -> str | None:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return (
            None
            if above and below
            else f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        )

    return check


def one_of(*choices: str) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(repr(c) for c in choices)}"


def ros_name(v: str) -> str | None:
    """A ROS name token (a role name: topics are /carla/<role_name>/...)."""
    return (
        None
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", v)
        else "must be a ROS name (a letter, then letters, digits, '_')"
    )


def file_name_part(v: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9_.-]+", v) else "must be letters, digits, '_', '-' or '.' (a file name)"
