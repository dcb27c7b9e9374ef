"""`docgate-index build` and `update`: a folder or a website into a new published generation.

Exit code 9 when a site build or update kept going past pages it could not fetch: what it got
is published (the `--json` summary lists the failures under `crawl.failed`), but the collection
is incomplete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.cli.build_display import RateColumn, RichProgress, partial_message, print_summary
from indexer.cli.common import (
    ConfigOption,
    JsonOption,
    emit_json,
    fail,
    indexer_command,
    load_settings,
    stderr,
)
from indexer.crawl import CrawlOptions
from indexer.errors import IndexerError

PARTIAL_CRAWL_EXIT_CODE = 9

CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
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
        fail("give exactly one source: --source PATH (a folder) or --url URL (a website)", 2)
    site: CrawlOptions | None = None
    if url is not None:
        site = _crawl_options(url, include or [], exclude or [], crawl_limits)
        include = exclude = None  # the site's patterns live in its crawl options
    elif crawl_limits:
        flags = ", ".join("--" + name.replace("_", "-") for name in sorted(crawl_limits))
        fail(f"{flags} apply to --url only", 2)
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
        fail(str(error.errors()[0]["msg"]).removeprefix("Value error, "), 2)


def _crawl_options(url: str, include: list[str], exclude: list[str], limits: dict[str, Any]) -> CrawlOptions:
    try:
        return CrawlOptions.model_validate(
            {"start_url": url, "include": include, "exclude": exclude, **limits}
        )
    except ValidationError as error:
        first = error.errors()[0]
        fail(str(first["msg"]).removeprefix("Value error, "), 2)


def _crawl_limits(max_pages: int | None, max_depth: int | None, allow_private: bool) -> dict[str, Any]:
    """The crawl options actually given on the command line (the others keep `CrawlOptions` defaults)."""
    given = {"max_pages": max_pages, "max_depth": max_depth, "allow_private": allow_private or None}
    return {name: value for name, value in given.items() if value is not None}


def _run_build(request: BuildRequest, config: Path | None, as_json: bool) -> None:
    with indexer_command(config) as settings:
        if as_json or not stderr.is_terminal:
            summary = build_collection(settings, request)
        else:
            columns = (
                TextColumn("{task.description:<20}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=stderr) as progress:
                summary = build_collection(settings, request, progress=RichProgress(progress))
    if as_json:
        emit_json(summary.model_dump())
    else:
        print_summary(summary)
    if summary.partial and summary.crawl is not None:
        fail(partial_message(summary, summary.crawl), PARTIAL_CRAWL_EXIT_CODE)


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
            fail(
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
    settings = load_settings(config)
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
