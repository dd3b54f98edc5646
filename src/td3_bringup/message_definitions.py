"""ROS 2 message types by name: the Python class, and the `ros2msg` definition text recordings need.

MCAP files of ROS 2 bags (and Foxglove's live channels) carry, per channel, the message
definition with every nested type appended the way rosbag2 writes it:

    <Odometry.msg>
    ================================================================================
    MSG: std_msgs/Header
    <Header.msg>
    ...

The .msg files come from the installed message packages (<prefix>/share/<package>/msg/), found
on AMENT_PREFIX_PATH and in this environment's prefix, as with a sourced ROS install.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from functools import cache
from pathlib import Path

SEPARATOR = "=" * 80
PRIMITIVES = frozenset(
    [
        "bool",
        "byte",
        "char",
        "float32",
        "float64",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "string",
        "wstring",
    ]
)
_FIELD_TYPE = re.compile(r"^([A-Za-z0-9_/]+)")


class MessageTypeError(LookupError):
    """A type name that is not an installed ROS 2 message."""


def split_type_name(type_name: str) -> tuple[str, str]:
    """'nav_msgs/msg/Odometry' or 'nav_msgs/Odometry' → ('nav_msgs', 'Odometry')."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise MessageTypeError(f"'{type_name}' is not a message type name (package/msg/Name)")


def message_class(type_name: str) -> type:
    package, name = split_type_name(type_name)
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as error:
        raise MessageTypeError(f"message type '{type_name}' is not installed: {error}") from error


def _prefixes() -> list[Path]:
    entries = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [Path(p) for p in entries] + [Path(sys.prefix)]


@cache
def _msg_text(package: str, name: str) -> str:
    for prefix in _prefixes():
        path = prefix / "share" / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
    raise MessageTypeError(f"no definition file {package}/msg/{name}.msg under {[str(p) for p in _prefixes()]}")


def _nested_types(package: str, text: str) -> list[tuple[str, str]]:
    """The non-primitive field types of a .msg text, in order, as (package, name)."""
    found = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        match = _FIELD_TYPE.match(words[0]) if len(words) >= 2 else None
        if match is None or "=" in words[1]:  # blank, comment, or a constant (always primitive)
            continue
        field_type = match.group(1)
        if field_type in PRIMITIVES:
            continue
        found.append(split_type_name(field_type) if "/" in field_type else (package, field_type))
    return found


@cache
def ros2msg_definition(type_name: str) -> str:
    """The full definition of `type_name` with its nested types, as rosbag2 stores it."""
    package, name = split_type_name(type_name)
    main = _msg_text(package, name)
    parts = [main.rstrip("\n")]
    seen: set[tuple[str, str]] = set()
    pending = _nested_types(package, main)
    while pending:
        dependency = pending.pop(0)
        if dependency in seen:
            continue
        seen.add(dependency)
        text = _msg_text(*dependency)
        parts.append(f"{SEPARATOR}\nMSG: {dependency[0]}/{dependency[1]}\n{text.rstrip(chr(10))}")
        pending.extend(_nested_types(dependency[0], text))
    return "\n".join(parts) + "\n"
