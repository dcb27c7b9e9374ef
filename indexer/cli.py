"""`docgate-index`: build | update | list | stats | verify | drop.

Exit codes: 0 success; non-zero with one actionable line on stderr (see `indexer.errors`), and
9 when a site build or update kept going past pages it could not fetch: what it got is published
(the `--json` summary lists the failures under `crawl.failed`), but the collection is incomplete.
`--json` prints one JSON document on stdout for scripts and monitoring.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
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
from indexer.commands import command_app, version_option
from indexer.crawl import CrawlOptions, CrawlReport
from indexer.errors import IndexerError
from indexer.logs import configure_logging
from indexer.settings import IndexerSettings
from indexer.status import collection_stats, verify_collection

app = command_app("docgate-index", "Index documentation into immutable, searchable generations.")
# soft_wrap: an error or summary stays one line however narrow the terminal (or pipe) is.
stderr = Console(stderr=True, soft_wrap=True)

PARTIAL_CRAWL_EXIT_CODE = 9

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (default: DOCGATE_CONFIG or built-in defaults)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document instead of tables/progress.")]


VersionFlag = Annotated[bool, version_option("docgate-index")]


@app.callback()
def _root(version: VersionFlag = False) -> None:
    """Index documentation into immutable, searchable generations."""


def _settings(config: Path | None) -> IndexerSettings:
    try:
        settings = IndexerSettings.load(config)
    except (FileNotFoundError, ValueError) as error:
        _fail(str(error).splitlines()[0], 2)
    configure_logging(settings.log_level)
    return settings


def _fail(message: str, code: int) -> NoReturn:
    stderr.print(f"error: {message}", highlight=False, markup=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def _indexer_command(config: Path | None) -> Iterator[IndexerSettings]:
    """The settings of one command; an `IndexerError` in the block ends it with one line and its code."""
    settings = _settings(config)
    try:
        yield settings
    except IndexerError as error:
        _fail(str(error), error.exit_code)


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


def _request(
    collection: str,
    source: Path | None,
    url: str | None,
    version: str,
    version_from_path: str | None,
    include: list[str] | None,
    exclude: list[str] | None,
    crawl_limits: dict[str, Any],
    incremental: bool,
    base_url: str | None = None,
) -> BuildRequest:
    if (source is None) == (url is None):
        _fail("give exactly one source: --source PATH (a folder) or --url URL (a website)", 2)
    site: CrawlOptions | None = None
    if url is not None:
        site = _crawl_options(url, include or [], exclude or [], crawl_limits)
        include = exclude = None  # the site's patterns live in its crawl options
    elif crawl_limits:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(crawl_limits))
        _fail(f"{flags} apply to --url only", 2)
    try:
        return BuildRequest(
            collection=collection,
            source=source.expanduser() if source is not None else None,
            site=site,
            version=version,
            version_from_path=version_from_path,
            include=include or [],
            exclude=exclude or [],
            incremental=incremental,
            base_url=base_url,
        )
    except ValidationError as error:
        _fail(str(error.errors()[0]["msg"]).removeprefix("Value error, "), 2)


def _crawl_options(url: str, include: list[str], exclude: list[str], limits: dict[str, Any]) -> CrawlOptions:
    try:
        return CrawlOptions.model_validate(
            {"start_url": url, "include": include, "exclude": exclude, **limits}
        )
    except ValidationError as error:
        first = error.errors()[0]
        _fail(str(first["msg"]).removeprefix("Value error, "), 2)


def _crawl_limits(max_pages: int | None, max_depth: int | None, allow_private: bool) -> dict[str, Any]:
    """The crawl options actually given on the command line (the others keep `CrawlOptions` defaults)."""
    given = {"max_pages": max_pages, "max_depth": max_depth, "allow_private": allow_private or None}
    return {name: value for name, value in given.items() if value is not None}


def _run_build(request: BuildRequest, config: Path | None, as_json: bool) -> None:
    with _indexer_command(config) as settings:
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
    if as_json:
        _emit_json(summary.model_dump())
    else:
        _print_summary(summary)
    if summary.partial and summary.crawl is not None:
        _fail(_partial_message(summary, summary.crawl), PARTIAL_CRAWL_EXIT_CODE)


def _partial_message(summary: BuildSummary, report: CrawlReport) -> str:
    first = report.failed[0] if report.failed else None
    detail = f" (first: {first.url}: {first.reason})" if first is not None else ""
    outcome = (
        f"published generation {summary.generation} without them"
        if summary.status == "published"
        else f"generation {summary.generation} stays published"
    )
    return (
        f"crawl incomplete: {len(report.failed)} pages failed{detail}; {outcome}; "
        "run `docgate-index update` again to retry them"
    )


def _print_summary(summary: BuildSummary) -> None:
    if summary.crawl is not None:
        _print_crawl(summary.crawl)
    if summary.status == "unchanged":
        stderr.print(f"{summary.collection}: no changes; generation {summary.generation} stays published")
        _print_skipped(summary)
        return
    stderr.print(
        f"{summary.collection}: published generation {summary.generation} — {summary.documents} documents, "
        f"{summary.chunks} chunks ({summary.chunks_embedded} embedded, {summary.chunks_reused} reused, "
        f"{summary.documents_removed} documents removed, {summary.documents_skipped} files skipped) "
        f"in {summary.seconds:.1f}s, {summary.embeddings_per_second:.0f} embeddings/s"
        + (
            f"; {summary.embedding_tokens} embedding tokens, ${summary.embedding_cost_usd:.4f}"
            if summary.embedding_backend == "openai"
            else ""
        )
    )
    _print_skipped(summary)


def _print_skipped(summary: BuildSummary) -> None:
    for skipped in summary.skipped_files:  # every one: a silently missing page is worse than a long list
        stderr.print(f"  skipped {skipped.path}: {skipped.reason}", markup=False, highlight=False)


def _print_crawl(report: CrawlReport) -> None:
    stderr.print(
        f"crawl of {report.scope}: {report.pages_fetched} pages fetched, {report.not_modified} not modified, "
        f"{len(report.skipped)} skipped, {len(report.failed)} failed, {len(report.removed)} removed, "
        f"{report.bytes / 1000:.1f} kB in {report.seconds:.1f}s"
        + (" (limit reached: some pages were not discovered)" if report.truncated else ""),
        highlight=False,
        markup=False,
    )
    for outcome in report.failed:
        stderr.print(f"  failed: {outcome.url}: {outcome.reason}", highlight=False, markup=False)


CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
NameArgument = Annotated[str, typer.Argument(help="Collection name.")]
SourceOption = Annotated[
    Path | None, typer.Option("--source", "-s", help="Folder (or file) of documentation.")
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Website to crawl instead: pages under this URL's directory are indexed."),
]
VersionOption = Annotated[str, typer.Option("--version", help="Version label of these docs, e.g. 3.2.")]
VersionFromPathOption = Annotated[
    str | None,
    typer.Option(
        "--version-from-path",
        help="Regex whose first group in a document's path is its version label, for several versions "
        "side by side, e.g. '^specification/([^/]+)/'; other documents get --version.",
    ),
]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Where a folder's pages live on the web, e.g. https://docs.djangoproject.com/en/3.2/; "
        "hits and pages then link to the live page.",
    ),
]
IncludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include", help="Glob of paths to index (repeatable); with --url, of URL paths ('re:' for a regex)."
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", help="Glob of paths to skip (repeatable); with --url, of URL paths ('re:' for a regex)."
    ),
]
MaxPagesOption = Annotated[
    int | None, typer.Option("--max-pages", min=1, help="With --url: fetch at most this many pages.")
]
MaxDepthOption = Annotated[
    int | None, typer.Option("--max-depth", min=0, help="With --url: follow links at most this many hops.")
]
AllowPrivateOption = Annotated[
    bool,
    typer.Option(
        "--allow-private",
        help="With --url: allow private, loopback and link-local addresses (trusted sites only).",
    ),
]


@app.command()
def build(
    collection: CollectionOption,
    source: SourceOption = None,
    url: UrlOption = None,
    version: VersionOption = "latest",
    version_from_path: VersionFromPathOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    max_pages: MaxPagesOption = None,
    max_depth: MaxDepthOption = None,
    allow_private: AllowPrivateOption = False,
    base_url: BaseUrlOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Parse, chunk and embed every document under SOURCE (or crawled from URL) into a new generation, then publish it."""
    limits = _crawl_limits(max_pages, max_depth, allow_private)
    request = _request(
        collection, source, url, version, version_from_path, include, exclude, limits, False, base_url
    )
    _run_build(request, config, as_json)


@app.command()
def update(
    collection: CollectionOption,
    source: SourceOption = None,
    url: UrlOption = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Version label; default: the one the build recorded.")
    ] = None,
    version_from_path: VersionFromPathOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    max_pages: MaxPagesOption = None,
    max_depth: MaxDepthOption = None,
    allow_private: AllowPrivateOption = False,
    base_url: BaseUrlOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Allow a source other than the one the collection was built from.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Like build, but re-embed only documents whose content changed; publish nothing if none did.

    Source, version label, --version-from-path, include/exclude globs and --base-url default to what the
    published build recorded; a different source is refused unless --force.
    A site is refreshed with conditional requests: pages the server reports unchanged are reused as they are.
    """
    recorded = _published_manifest(config, collection)
    if recorded is not None:
        given = url if url is not None else (str(source) if source is not None else None)
        if given is None:
            if recorded.source_kind == "site":
                url = recorded.source
            else:
                source = Path(recorded.source)
        elif not force and not _same_source(given, recorded.source, is_url=url is not None):
            _fail(
                f"collection {collection!r} was built from {recorded.source}, not {given}; "
                "pass --force to index the new source into it, or use another --collection",
                2,
            )
        version = version if version is not None else recorded.version
        version_from_path = version_from_path if version_from_path is not None else recorded.version_from_path
        if recorded.source_kind == "folder" and url is None:
            include = include if include is not None else recorded.include
            exclude = exclude if exclude is not None else recorded.exclude
            base_url = base_url if base_url is not None else recorded.base_url
    limits = _crawl_limits(max_pages, max_depth, allow_private)
    request = _request(
        collection,
        source,
        url,
        version or "latest",
        version_from_path,
        include,
        exclude,
        limits,
        True,
        base_url,
    )
    _run_build(request, config, as_json)


def _published_manifest(config: Path | None, collection: str) -> gens.Manifest | None:
    settings = _settings(config)
    try:
        generation = gens.current_generation(settings.collections_dir, collection)
        if generation is None:
            return None
        return gens.read_manifest(gens.generation_dir(settings.collections_dir, collection, generation))
    except IndexerError:
        return None  # the build itself reports a damaged collection


def _same_source(given: str, recorded: str, *, is_url: bool) -> bool:
    if is_url:
        return given.rstrip("/") == recorded.rstrip("/")
    return Path(given).expanduser().resolve() == Path(recorded).expanduser().resolve()


@app.command("list")
def list_(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List published collections."""
    rows = []
    with _indexer_command(config) as settings:
        for name in gens.list_collections(settings.collections_dir):
            rows.append(collection_stats(settings, name, sizes=False))
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
    name: NameArgument,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Documents, chunks, generation, model, sizes and creation time of one collection."""
    with _indexer_command(config) as settings:
        row = collection_stats(settings, name, sizes=True)
    if as_json:
        _emit_json(row)
        return
    table = Table("field", "value")
    for key, value in row.items():
        table.add_row(key, _cell(value))
    Console().print(table)


def _cell(value: Any) -> str:
    # A mapping (the per-version dates) reads as `label: value` lines rather than a Python dict.
    if isinstance(value, dict):
        return "\n".join(f"{key}: {item if item is not None else '-'}" for key, item in value.items())
    return str(value)


@app.command()
def verify(
    name: NameArgument,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the published generation: manifest consistent, Tantivy and vector ID sets identical."""
    with _indexer_command(config) as settings:
        report = verify_collection(settings, name)
    if as_json:
        _emit_json(report.model_dump())
    if not report.ok:
        _fail(f"{name} generation {report.generation} is inconsistent: {'; '.join(report.problems)}", 4)
    if not as_json:
        stderr.print(f"{name}: generation {report.generation} ok ({report.chunks} chunks)")


@app.command()
def drop(name: NameArgument, config: ConfigOption = None) -> None:
    """Unpublish and delete a collection and all its generations."""
    with _indexer_command(config) as settings:
        gens.drop_collection(settings.collections_dir, name)
    stderr.print(f"{name}: dropped")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
