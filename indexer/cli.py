"""`docgate-index`: build | update | list | stats | verify | drop.

Exit codes: 0 success; non-zero with one actionable line on stderr (see `indexer.errors`).
`--json` prints one JSON document on stdout for scripts and monitoring.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from indexer import generations as gens
from indexer.build import BuildRequest, BuildSummary, build_collection
from indexer.errors import IndexerError
from indexer.logs import configure_logging
from indexer.settings import IndexerSettings
from indexer.status import collection_stats, verify_collection

app = typer.Typer(
    name="docgate-index",
    help="Index documentation into immutable, searchable generations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: DOCGATE_CONFIG or built-in defaults)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document instead of tables/progress.")]


def _settings(config: Path | None) -> IndexerSettings:
    try:
        settings = IndexerSettings.load(config)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error).splitlines()[0], 2)
    configure_logging(settings.log_level)
    return settings


def _fail(message: str, code: int) -> typer.Exit:
    stderr.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


class _RateColumn(ProgressColumn):
    """Items per second of the current stage (documents/s while parsing, embeddings/s while embedding)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:7.1f}/s" if speed else "       ", style="progress.data.speed")


class _RichProgress:
    """Draws build stages with documents/chunks counts and a live rate."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def stage(self, name: str, total: int | None) -> None:
        if self._task is not None:
            self._progress.stop_task(self._task)
        self._task = self._progress.add_task(name, total=total)

    def advance(self, amount: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, amount)


def _run_build(
    collection: str,
    source: Path,
    version: str,
    include: list[str] | None,
    exclude: list[str] | None,
    incremental: bool,
    config: Path | None,
    as_json: bool,
) -> None:
    settings = _settings(config)
    request = BuildRequest(
        collection=collection,
        source=source.expanduser(),
        version=version,
        include=include or [],
        exclude=exclude or [],
        incremental=incremental,
    )
    try:
        if as_json or not stderr.is_terminal:
            summary = build_collection(settings, request)
        else:
            columns = (
                TextColumn("{task.description:<20}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=stderr) as progress:
                summary = build_collection(settings, request, progress=_RichProgress(progress))
    except IndexerError as error:
        _fail(str(error), error.exit_code)
    if as_json:
        _emit_json(summary.model_dump())
    else:
        _print_summary(summary)


def _print_summary(summary: BuildSummary) -> None:
    if summary.status == "unchanged":
        stderr.print(f"{summary.collection}: no changes; generation {summary.generation} stays published")
        return
    stderr.print(
        f"{summary.collection}: published generation {summary.generation} — {summary.documents} documents, "
        f"{summary.chunks} chunks ({summary.chunks_embedded} embedded, {summary.chunks_reused} reused, "
        f"{summary.documents_removed} documents removed, {summary.documents_skipped} files skipped) "
        f"in {summary.seconds:.1f}s, {summary.embeddings_per_second:.0f} embeddings/s"
    )


CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
SourceOption = Annotated[Path, typer.Option("--source", "-s", help="Folder (or file) of documentation.")]
VersionOption = Annotated[str, typer.Option("--version", help="Version label of these docs, e.g. 3.2.")]
IncludeOption = Annotated[
    list[str] | None, typer.Option("--include", help="Glob of paths to index (repeatable).")
]
ExcludeOption = Annotated[
    list[str] | None, typer.Option("--exclude", help="Glob of paths to skip (repeatable).")
]


@app.command()
def build(
    collection: CollectionOption,
    source: SourceOption,
    version: VersionOption = "latest",
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Parse, chunk and embed every document under SOURCE into a new generation, then publish it."""
    _run_build(collection, source, version, include, exclude, False, config, as_json)


@app.command()
def update(
    collection: CollectionOption,
    source: SourceOption,
    version: VersionOption = "latest",
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Like build, but re-embed only documents whose content changed; publish nothing if none did."""
    _run_build(collection, source, version, include, exclude, True, config, as_json)


@app.command("list")
def list_(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List published collections."""
    settings = _settings(config)
    rows = []
    try:
        for name in gens.list_collections(settings.collections_dir):
            rows.append(collection_stats(settings, name, sizes=False))
    except IndexerError as error:
        _fail(str(error), error.exit_code)
    if as_json:
        _emit_json(rows)
        return
    table = Table("collection", "version", "generation", "documents", "chunks", "model", "created_at")
    for row in rows:
        table.add_row(
            *(
                str(row[k])
                for k in ("collection", "version", "generation", "documents", "chunks", "model", "created_at")
            )
        )
    Console().print(table)


@app.command()
def stats(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Documents, chunks, generation, model, sizes and creation time of one collection."""
    settings = _settings(config)
    try:
        row = collection_stats(settings, name, sizes=True)
    except IndexerError as error:
        _fail(str(error), error.exit_code)
    if as_json:
        _emit_json(row)
        return
    table = Table("field", "value")
    for key, value in row.items():
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def verify(
    name: Annotated[str, typer.Argument(help="Collection name.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the published generation: manifest consistent, Tantivy and vector ID sets identical."""
    settings = _settings(config)
    try:
        report = verify_collection(settings, name)
    except IndexerError as error:
        _fail(str(error), error.exit_code)
    if as_json:
        _emit_json(report.model_dump())
    if not report.ok:
        _fail(f"{name} generation {report.generation} is inconsistent: {'; '.join(report.problems)}", 4)
    if not as_json:
        stderr.print(f"{name}: generation {report.generation} ok ({report.chunks} chunks)")


@app.command()
def drop(name: Annotated[str, typer.Argument(help="Collection name.")], config: ConfigOption = None) -> None:
    """Unpublish and delete a collection and all its generations."""
    settings = _settings(config)
    try:
        gens.drop_collection(settings.collections_dir, name)
    except IndexerError as error:
        _fail(str(error), error.exit_code)
    stderr.print(f"{name}: dropped")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
