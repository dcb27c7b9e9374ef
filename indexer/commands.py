"""What the two command lines (`docgate-index` and `docgate`) share: how an app is set up, `--version`."""

from __future__ import annotations

from typing import Any

import typer

from indexer import __version__


def command_app(name: str, help: str) -> typer.Typer:
    """A top-level app: help when called bare, one-line errors instead of tracebacks, no completion installers."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


def version_option(program: str) -> Any:
    """A `--version` flag that prints `program` and the installed version, then exits.

    The type is typer's (`typer.Option` is declared as returning `Any`); use it in `Annotated[bool, ...]`.
    """

    def print_version(value: bool) -> None:
        if value:
            typer.echo(f"{program} {__version__}")
            raise typer.Exit()

    return typer.Option(
        "--version", callback=print_version, is_eager=True, help="Print the version and exit."
    )
