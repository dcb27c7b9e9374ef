"""Strict checks of tool arguments against the published input schema, before any coercion.

The MCP SDK validates arguments with pydantic in lax mode, which turns ``"3"``, ``true`` and ``2.0``
into ``3``, ``1`` and ``2``, and answers bad input with pydantic's own report (which echoes the
input, library versions and documentation URLs). This layer runs first: JSON types are compared
exactly (a boolean is not an integer, a float is not an integer even when whole), unknown and
missing arguments are refused, and each problem is one line of our own naming the argument and
what it accepts. Value ranges are then checked by the validators in `guards`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.security.guards import (
    COLLECTIONS_MAX,
    K_MAX,
    K_MIN,
    MAX_TOKENS_MAX,
    MAX_TOKENS_MIN,
    NEIGHBORS_MAX,
    NEIGHBORS_MIN,
    PATH_PREFIX_MAX_CHARS,
    QUERY_MAX_CHARS,
    InvalidArgument,
)

# What each argument accepts, in words, for the messages (tools that declare other arguments get
# a description built from their schema).
ALLOWED: dict[str, str] = {
    "query": f"a string of 1 to {QUERY_MAX_CHARS} characters",
    "question": f"a string of 1 to {QUERY_MAX_CHARS} characters",
    "collections": f"a list of up to {COLLECTIONS_MAX} collection names, or null",
    "version": "a version label string such as '3.2', or null",
    "k": f"an integer from {K_MIN} to {K_MAX}",
    "max_tokens": f"an integer from {MAX_TOKENS_MIN} to {MAX_TOKENS_MAX}",
    "neighbors": f"an integer from {NEIGHBORS_MIN} to {NEIGHBORS_MAX}",
    "cursor": "the next_cursor string of the previous page, or null",
    "path_prefix": f"a path string of at most {PATH_PREFIX_MAX_CHARS} characters, or null",
    "chunk_id": "a chunk id of 32 hex characters",
}

_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


def _alternatives(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    options = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(options, list):
        return [o for o in options if isinstance(o, Mapping)]
    return [schema]


def _matches(schema: Mapping[str, Any], value: Any) -> bool:
    """Exact JSON-type match, recursing into list items; no coercion of any kind."""
    for option in _alternatives(schema):
        declared = option.get("type")
        if declared is None:
            return True  # an unconstrained schema accepts anything
        types = declared if isinstance(declared, list) else [declared]
        actual = _json_type(value)
        # An integer is a number, but never the other way round (2.0 is not an integer here).
        if actual in types or (actual == "integer" and "number" in types):
            items = option.get("items")
            if (
                actual == "array"
                and isinstance(items, Mapping)
                and not all(_matches(items, v) for v in value)
            ):
                continue
            return True
    return False


def _describe(name: str, schema: Mapping[str, Any]) -> str:
    if name in ALLOWED:
        return ALLOWED[name]
    words: list[str] = []
    for option in _alternatives(schema):
        declared = option.get("type")
        for kind in declared if isinstance(declared, list) else [declared]:
            if isinstance(kind, str) and kind in _TYPE_WORDS and _TYPE_WORDS[kind] not in words:
                words.append(_TYPE_WORDS[kind])
    return " or ".join(words) or "a value"


def check_arguments(tool: str, schema: Mapping[str, Any], arguments: Any) -> None:
    """Raise InvalidArgument (one line, naming the argument) unless `arguments` fit `schema` exactly."""
    if not isinstance(arguments, dict):
        raise InvalidArgument(f"{tool}: arguments must be a JSON object")
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    unknown = [name for name in arguments if name not in properties]
    if unknown:
        accepted = ", ".join(properties) or "no arguments"
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidArgument(f"{tool}: unknown argument{plural}; it takes: {accepted}")
    required = schema.get("required")
    for name in required if isinstance(required, list) else []:
        if name not in arguments:
            raise InvalidArgument(
                f"{name}: required, {_describe(name, properties.get(name, {}))}", argument=name
            )
    for name, value in arguments.items():
        spec = properties[name]
        if isinstance(spec, Mapping) and not _matches(spec, value):
            raise InvalidArgument(
                f"{name}: must be {_describe(name, spec)}, got {_TYPE_WORDS.get(_json_type(value), 'a value')}",
                argument=name,
            )
