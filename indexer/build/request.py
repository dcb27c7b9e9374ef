"""What a build is asked to do and what it reports: the request, the summary, progress callbacks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field, field_validator, model_validator

from indexer.chunking import CHUNK_LABELS_VERSION
from indexer.crawl import CrawlOptions, CrawlReport
from indexer.settings import IndexerSettings
from indexer.sources import SkippedFile


class Progress(Protocol):
    """What a build reports while it runs (the CLI draws it; tests and `--json` ignore it)."""

    def stage(self, name: str, total: int | None) -> None: ...
    def advance(self, amount: int = 1) -> None: ...


class Silent:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass


class BuildRequest(BaseModel):
    """One build: exactly one of `source` (a folder or file) and `site` (a website to crawl)."""

    collection: str
    source: Path | None = None
    site: CrawlOptions | None = Field(default=None, description="Start URL, filters and limits of a crawl.")
    version: str = "latest"
    version_from_path: str | None = Field(
        default=None,
        description="Regex whose first group, matched against a document path, is that document's version "
        "label (e.g. '^specification/([^/]+)/'); documents that do not match get `version`.",
    )
    include: list[str] = Field(default_factory=list, description="Folder globs; a site has its own.")
    exclude: list[str] = Field(default_factory=list, description="Folder globs; a site has its own.")
    incremental: bool = False
    base_url: str | None = Field(
        default=None,
        description="Public URL of a folder's root on the web; pages link to base_url + their path.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, url: str | None) -> str | None:
        if url is not None:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"--base-url {url!r} must be an http:// or https:// URL")
            url = url if url.endswith("/") else url + "/"
        return url

    @model_validator(mode="after")
    def _exactly_one_source(self) -> BuildRequest:
        if (self.source is None) == (self.site is None):
            raise ValueError("give exactly one source: a folder path or a site URL")
        return self

    @field_validator("version_from_path")
    @classmethod
    def _one_group(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except re.error as error:
                raise ValueError(f"--version-from-path {pattern!r} is not a valid regex: {error}") from error
            if compiled.groups < 1:
                raise ValueError(
                    f"--version-from-path {pattern!r} needs a capture group for the version label"
                )
        return pattern

    def version_for(self, path: str) -> str:
        """The version label of one document: from its path when configured, else `version`."""
        if self.version_from_path is not None:
            match = re.search(self.version_from_path, path)
            if match and match.group(1):
                return match.group(1)
        return self.version

    @property
    def source_kind(self) -> Literal["folder", "site"]:
        return "site" if self.site is not None else "folder"

    @property
    def source_label(self) -> str:
        """What the manifest records as the source: the folder path or the start URL."""
        return self.site.start_url if self.site is not None else str(self.source)


class BuildSummary(BaseModel):
    collection: str
    status: Literal["published", "unchanged"]
    generation: int
    previous_generation: int | None
    version: str
    documents: int
    chunks: int
    documents_parsed: int
    documents_reused: int
    documents_removed: int
    documents_skipped: int
    skipped_files: list[SkippedFile] = Field(
        default_factory=list, description="Every file seen but not indexed, with the reason."
    )
    chunks_embedded: int
    chunks_reused: int
    seconds: float
    embed_seconds: float
    chunks_per_second: float
    embeddings_per_second: float
    embedding_backend: Literal["fastembed", "openai"] = "fastembed"
    embedding_tokens: int = Field(default=0, description="Input tokens a metered embedding API reported.")
    embedding_cost_usd: float = Field(
        default=0.0, description="Their price (embedding.remote.price_per_mtok)."
    )
    source_kind: Literal["folder", "site"] = "folder"
    crawl: CrawlReport | None = Field(default=None, description="What the crawl did (site sources only).")
    partial: bool = Field(
        default=False, description="The crawl failed on some pages: what stays published is incomplete."
    )


def chunking_fingerprint(settings: IndexerSettings) -> dict[str, int]:
    # `labels`: what chunks record besides their text (2: per-section parts, overlap, code); an
    # index from before re-chunks its documents on update, reusing every vector whose text is unchanged.
    return {**settings.chunking.model_dump(), "labels": CHUNK_LABELS_VERSION}
