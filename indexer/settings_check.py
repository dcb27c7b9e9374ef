"""Words a rejected setting as one line a user can act on: which key, where it came from, what is valid.

pydantic reports an unknown key as `extra_forbidden` at a location such as `retrieval.rrf`; this
module names the source (the environment variable that set it, or the config file), lists the
keys the table does declare, and suggests the closest one. The environment source of
pydantic-settings only reads variables of fields it knows, so a misspelled *table* name
(`DOCGATE_RETREIVAL__RRF_K`) or top-level key (`DOCGATE_DATA_DIRR`) would pass unseen; those are
caught here before validation.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

PREFIX = "DOCGATE_"
# Read by the loader itself, not a field of the tree.
LOADER_VARIABLES = frozenset({"DOCGATE_CONFIG"})


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line naming the key and its source."""


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model class behind a field's annotation (`X`, `X | None`), or None for a plain value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            found = _section_model(member)
            if found is not None:
                return found
    return None


def _named_tables(annotation: Any) -> type[BaseModel] | None:
    """The model of each entry of a table of named tables (`dict[str, X]`, `[collections.<name>]`)."""
    if typing.get_origin(annotation) is dict:
        _, value = typing.get_args(annotation)
        return _section_model(value)
    return None


def _aliases(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for field in model.model_fields.values():
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str):
                names.add(choice)
    return names


def valid_keys(model: type[BaseModel]) -> list[str]:
    """The keys a table accepts in a file (fields reachable only through an env alias excluded)."""
    return sorted(name for name, field in model.model_fields.items() if field.validation_alias is None)


def _model_at(root: type[BaseModel], path: tuple[str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    parts = iter(path)
    for part in parts:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        entry = _named_tables(annotation)
        if entry is not None:
            if next(parts, None) is None:
                return None  # the table of names itself: its keys are free
            model = entry
        else:
            model = _section_model(annotation)
    return model


def _suggestion(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _source(location: tuple[str, ...], environ: Mapping[str, str], config: Path | None) -> str:
    variable = PREFIX + "__".join(location).upper()
    if any(name.upper() == variable for name in environ):
        return f"environment variable {variable}"
    return f"config file {config}" if config is not None else "the settings"


def explain(
    error: ValidationError,
    root: type[BaseModel],
    config: Path | None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The first problem of a failed validation, in one line."""
    env = os.environ if environ is None else environ
    first = error.errors()[0]
    location = tuple(str(part) for part in first["loc"])
    dotted = ".".join(location)
    if first["type"] == "extra_forbidden":
        table = location[:-1]
        model = _model_at(root, table)
        keys = valid_keys(model) if model is not None else []
        where = f"[{'.'.join(table)}]" if table else "the top level"
        return (
            f"unknown setting {dotted!r} in {_source(location, env, config)}"
            f"{_suggestion(location[-1], keys)}; valid keys of {where}: {', '.join(keys)}"
        )
    message = str(first["msg"]).removeprefix("Value error, ")
    if not location:
        return f"invalid settings: {message}"
    return f"invalid value for {dotted!r} in {_source(location, env, config)}: {message}"


def unknown_environment_names(root: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """Messages for `DOCGATE_*` variables that look like settings but name none.

    A variable with `__` must start with a known table (deeper keys are checked by the tables
    themselves). A single-segment variable is refused only when it is a near miss of a top-level
    key: other `DOCGATE_*` names may hold secrets that a setting such as `answer.provider.api_key_env`
    points at.
    """
    fields = [name for name, field in root.model_fields.items() if field.validation_alias is None]
    tables = [
        name
        for name in fields
        if _section_model(root.model_fields[name].annotation) is not None
        or _named_tables(root.model_fields[name].annotation) is not None
    ]
    known = {PREFIX + name.upper() for name in fields} | LOADER_VARIABLES | _aliases(root)
    problems: list[str] = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        parts = upper[len(PREFIX) :].lower().split("__")
        if len(parts) > 1 and parts[0] not in tables:
            problems.append(
                f"unknown settings table {parts[0]!r} in environment variable {variable}"
                f"{_suggestion(parts[0], tables)}; tables: {', '.join(sorted(tables))}"
            )
        elif len(parts) == 1 and difflib.get_close_matches(parts[0], fields, n=1, cutoff=0.8):
            problems.append(
                f"unknown setting in environment variable {variable}{_suggestion(parts[0], fields)}; "
                f"top-level keys: {', '.join(sorted(fields))}"
            )
    return problems
