"""What every `docgate-index` command shares: the settings, one-line failures, JSON output, common options."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from indexer.errors import IndexerError
from indexer.logs import configure_logging
from indexer.settings import IndexerSettings

# soft_wrap: an error or summary stays one line however narrow the terminal (or pipe) is.
stderr = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: DOCGATE_CONFIG or built-in defaults)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document instead of tables/progress.")]


def load_settings(config: Path | None) -> IndexerSettings:
    try:
        settings = IndexerSettings.load(config)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error).splitlines()[0], 2)
    configure_logging(settings.log_level)
    return settings


def fail(message: str, code: int) -> NoReturn:
    stderr.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def indexer_command(config: Path | None) -> Iterator[IndexerSettings]:
    """The settings of one command; an `IndexerError` in the block ends it with one line and its code."""
    settings = load_settings(config)
    try:
        yield settings
    except IndexerError as error:
        fail(str(error), error.exit_code)


def emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
