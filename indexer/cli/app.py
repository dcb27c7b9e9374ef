"""The `docgate-index` app: its commands, in the order `--help` lists them, and `main`."""

from __future__ import annotations

from typing import Annotated

from indexer.cli.build import build, update
from indexer.cli.collections import drop, list_, stats, verify
from indexer.commands import command_app, version_option

app = command_app("docgate-index", "Index documentation into immutable, searchable generations.")

VersionFlag = Annotated[bool, version_option("docgate-index")]


def _root(version: VersionFlag = False) -> None:
    """Index documentation into immutable, searchable generations."""


app.callback()(_root)
app.command()(build)
app.command()(update)
app.command("list")(list_)
app.command()(stats)
app.command()(verify)
app.command()(drop)


def main() -> None:
    app()
