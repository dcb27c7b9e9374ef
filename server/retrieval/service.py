"""The tool cores behind one object: scope, search, fetch and list over the catalog. No MCP here.

The MCP layer validates arguments, authenticates, rate-limits and audits; this layer only ever
sees collections the tenant may read (`Access`), and answers for an ungranted collection or chunk
exactly as for one that does not exist. Each job lives in its own module — `scope` (grants →
collections, resolved once per request and passed down), `search`, `fetch`, `budget` (the response
size), `results` (the returned models) — and `DocService` only ties them to one catalog, model and
cursor key.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from indexer.embedding import Embedder
from indexer.models import Chunk
from server.retrieval import scope as scopes
from server.retrieval import versions
from server.retrieval.budget import ResponseBudget
from server.retrieval.catalog import Catalog, CatalogView, Snapshot
from server.retrieval.fetch import fetch, locate
from server.retrieval.hybrid import Mode, RetrievalResult
from server.retrieval.results import (
    EMPTY_CATALOG_WARNING,
    ChunkView,
    CollectionInfo,
    CollectionList,
    FetchResult,
    SearchHit,
    SearchOutcome,
    SearchResult,
)
from server.retrieval.scope import Access, Scope
from server.retrieval.search import MAX_RESULTS, retrieve_in, search_page
from server.settings import ServerSettings

__all__ = [
    "EMPTY_CATALOG_WARNING",
    "MAX_RESULTS",
    "Access",
    "ChunkView",
    "CollectionInfo",
    "CollectionList",
    "DocService",
    "FetchResult",
    "Scope",
    "SearchHit",
    "SearchOutcome",
    "SearchResult",
]


def _site_root(snapshot: Snapshot) -> str | None:
    """A crawled collection's start URL (its pages carry their own URLs)."""
    return snapshot.manifest.source if snapshot.manifest.source_kind == "site" else None


class DocService:
    def __init__(
        self, settings: ServerSettings, catalog: Catalog, embedder: Embedder, cursor_secret: bytes
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.embedder = embedder
        self.budget = ResponseBudget(embedder)
        self._cursor_secret = cursor_secret

    # ------------------------------------------------------------------ scope

    def resolve(
        self,
        access: Access,
        collections: Sequence[str] | None,
        version: str | None,
        *,
        path_prefix: str | None = None,
        view: CatalogView | None = None,
        code_only: bool = False,
    ) -> Scope:
        """The request's scope on the current generations; unknown and ungranted names fail alike.

        Without `version`, each collection reads its configured default (`latest` unless set).
        """
        return scopes.resolve_scope(
            access,
            collections,
            version,
            view or self.catalog.view(),
            path_prefix,
            default_version=self.settings.default_version,
            code_only=code_only,
        )

    def scope(
        self, access: Access, requested: Sequence[str] | None, version: str | None, view: CatalogView
    ) -> tuple[str, ...]:
        """Collections this request searches; unknown and ungranted names fail identically."""
        return self.resolve(access, requested, version, view=view).collections

    def denial_reason(
        self, access: Access, *, collections: Sequence[str] | None = None, chunk_id: str | None = None
    ) -> str | None:
        """For the audit log only (see `scope.denial_reason`)."""
        return scopes.denial_reason(access, self.catalog.view(), collections=collections, chunk_id=chunk_id)

    def collections(self, access: Access) -> CollectionList:
        view = self.catalog.view()
        return CollectionList(
            collections=[
                CollectionInfo(
                    name=name,
                    version=snap.version,
                    versions=snap.versions,
                    latest=versions.newest_release(snap.versions),
                    default_version=self.settings.default_version(name),
                    version_details=versions.describe(
                        snap.versions, self.settings.default_version(name), snap.manifest.version_dates
                    ),
                    base_url=snap.manifest.base_url or _site_root(snap),
                    documents=snap.manifest.document_count,
                    chunks=snap.manifest.chunk_count,
                    generation=snap.generation,
                    indexed_at=snap.indexed_at,
                )
                for name, snap in sorted(view.snapshots.items())
                if access.allowed(name)
            ],
            warning=None if view.snapshots else EMPTY_CATALOG_WARNING,
        )

    # ------------------------------------------------------------------ search

    def retrieve(
        self,
        access: Access,
        query: str,
        *,
        collections: Sequence[str] | None = None,
        version: str | None = None,
        path_prefix: str | None = None,
        depth: int,
        mode: Mode = "hybrid",
        rewrites: bool | None = None,
        view: CatalogView | None = None,
        scope: Scope | None = None,
        code_only: bool = False,
        exact_vectors: bool = False,
    ) -> tuple[RetrievalResult, CatalogView]:
        """Candidates for `query`; pass an already resolved `scope` to skip resolving it again.

        `exact_vectors`: embed the query with the model as published (see `RetrievalQuery`)."""
        if scope is None:
            scope = self.resolve(
                access, collections, version, path_prefix=path_prefix, view=view, code_only=code_only
            )
        result = retrieve_in(
            scope,
            query,
            self.embedder,
            self.settings.retrieval,
            depth=depth,
            mode=mode,
            rewrites=rewrites,
            exact_vectors=exact_vectors,
        )
        return result, scope.view

    def search(
        self,
        access: Access,
        query: str,
        *,
        collections: Sequence[str] | None = None,
        version: str | None = None,
        path_prefix: str | None = None,
        k: int = 8,
        max_tokens: int = 2000,
        cursor: str | None = None,
        code_only: bool = False,
    ) -> SearchOutcome:
        scope = self.resolve(access, collections, version, path_prefix=path_prefix, code_only=code_only)
        return search_page(
            scope,
            query,
            self.embedder,
            self.budget,
            self.settings.retrieval,
            self._cursor_secret,
            k=k,
            max_tokens=max_tokens,
            cursor=cursor,
        )

    def tokens(self, model: BaseModel) -> int:
        """Size of a result as the client receives it (its JSON), in model tokens."""
        return self.budget.tokens(model)

    # ------------------------------------------------------------------ fetch

    def locate(self, access: Access, chunk_id: str, view: CatalogView) -> tuple[Chunk, Snapshot]:
        """The chunk in a collection this tenant may read; otherwise exactly the unknown-ID error."""
        return locate(access, chunk_id, view)

    def fetch(
        self, access: Access, chunk_id: str, *, neighbors: int = 0, max_tokens: int = 4000
    ) -> tuple[FetchResult, int]:
        """The chunk (and neighbours) within `max_tokens`, and the response's size in tokens."""
        return fetch(
            access, self.catalog.view(), self.budget, chunk_id, neighbors=neighbors, max_tokens=max_tokens
        )
