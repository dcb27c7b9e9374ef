"""The fetch core: one chunk (and its neighbours) from a collection the tenant may read."""

from __future__ import annotations

from indexer.models import Chunk
from server.errors import UnknownChunk
from server.retrieval.budget import ResponseBudget
from server.retrieval.catalog import CatalogView, Snapshot
from server.retrieval.results import FetchResult, chunk_view
from server.retrieval.scope import Access


def locate(access: Access, chunk_id: str, view: CatalogView) -> tuple[Chunk, Snapshot]:
    """The chunk in a collection this tenant may read; otherwise exactly the unknown-ID error."""
    for name in sorted(view.snapshots):
        if not access.allowed(name):
            continue
        snapshot = view.snapshots[name]
        chunk = snapshot.lexical.get(chunk_id)
        if chunk is not None:
            return chunk, snapshot
    raise UnknownChunk(
        f"unknown chunk_id {chunk_id!r}: it is not in any collection available to you "
        "(IDs can change when a document is edited; search again to get current IDs)"
    )


def fetch(
    access: Access,
    view: CatalogView,
    budget: ResponseBudget,
    chunk_id: str,
    *,
    neighbors: int = 0,
    max_tokens: int = 4000,
) -> tuple[FetchResult, int]:
    """The chunk (and neighbours) within `max_tokens`, and the response's size in tokens."""
    chunk, snapshot = locate(access, chunk_id, view)
    around = snapshot.lexical.neighbors(chunk, neighbors, neighbors) if neighbors else [chunk]
    before = [chunk_view(c, snapshot) for c in around if c.position < chunk.position]
    after = [chunk_view(c, snapshot) for c in around if c.position > chunk.position]
    result = FetchResult(chunk=chunk_view(chunk, snapshot), before=before, after=after, truncated=False)
    return budget.fit_fetch(result, max_tokens)
