"""The search core: one page of hits for a resolved scope, within the response budget.

A page is a slice of one result list: `retrieve` is asked for `offset + k + 1` candidates (the
extra one says whether a next page exists), and the cursor carries the next offset, signed with
a digest of everything that shaped the list, so it can neither be forged nor replayed elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from indexer.embedding import Embedder
from server.retrieval import cursors, links
from server.retrieval.budget import ResponseBudget
from server.retrieval.hybrid import Candidate, Mode, RetrievalQuery, RetrievalResult, retrieve
from server.retrieval.results import SearchHit, SearchOutcome, provenance
from server.retrieval.scope import Scope
from server.security.guards import neutralize, screen
from server.settings import RetrievalSettings

MAX_RESULTS = 100  # deepest result a cursor can page to


def retrieve_in(
    scope: Scope,
    query: str,
    embedder: Embedder,
    settings: RetrievalSettings,
    *,
    depth: int,
    mode: Mode = "hybrid",
    rewrites: bool | None = None,
    exact_vectors: bool = False,
) -> RetrievalResult:
    """Hybrid retrieval over a resolved scope (its collections, version labels, path and code filters)."""
    return retrieve(
        scope.view,
        RetrievalQuery(
            text=query,
            collections=scope.collections,
            version=scope.version,
            path_prefix=scope.path_prefix,
            versions=scope.versions,
            code_only=scope.code_only,
            exact_vectors=exact_vectors,
        ),
        embedder,
        settings,
        depth=depth,
        mode=mode,
        rewrites=rewrites,
    )


def search_page(
    scope: Scope,
    query: str,
    embedder: Embedder,
    budget: ResponseBudget,
    settings: RetrievalSettings,
    cursor_secret: bytes,
    *,
    k: int,
    max_tokens: int,
    cursor: str | None,
) -> SearchOutcome:
    view = scope.view
    context = cursors.digest(
        scope.tenant,
        query,
        scope.collections,
        scope.version,
        scope.path_prefix,
        k,
        view.generations,
        scope.versions,
        scope.code_only,
    )
    offset = cursors.decode(cursor_secret, cursor, context) if cursor is not None else 0
    depth = min(offset + k + 1, MAX_RESULTS)
    result = retrieve_in(scope, query, embedder, settings, depth=depth)
    page = result.candidates[offset : offset + k]
    has_more = len(result.candidates) > offset + len(page) and offset + len(page) < MAX_RESULTS
    started = time.perf_counter()
    snippets = _snippets(scope, query, page, settings.snippet_chars)
    hits = [_hit(c, scope, snippets.get(c.chunk.chunk_id), embedder, settings) for c in page]
    shaped_at = time.perf_counter()
    shaped, bound = budget.fit_search(query, result.variants[1:], hits, max_tokens, result.degraded)
    # Stages after retrieval, beside its own spans: a slower trace then names the stage that grew.
    result.timings_ms["snippets"] = round((shaped_at - started) * 1000, 3)
    result.timings_ms["budget"] = round((time.perf_counter() - shaped_at) * 1000, 3)
    shown = len(shaped.hits)
    # With nothing shown, a cursor would point at the same page again: the caller must raise max_tokens.
    if shown > 0 and (shown < len(hits) or has_more):
        shaped.next_cursor = cursors.encode(cursor_secret, offset + shown, context)
        # `null` (one token) becomes a quoted string: two quote tokens plus the cursor's own.
        bound += embedder.count_tokens(shaped.next_cursor) + 1
    if bound <= max_tokens:
        # The bound is the page's exact size give or take the separators (see `fit_search`), so the
        # page is within budget without tokenizing it a second time.
        return SearchOutcome(shaped, result, bound)
    while True:  # rare: the cursor did not fit in the room `fit_search` kept for it
        size = budget.tokens(shaped)
        if not shaped.hits or size <= max_tokens:
            return SearchOutcome(shaped, result, size)
        shaped.hits.pop()  # give the cursor's room back
        shaped.truncated = True
        shown = len(shaped.hits)
        shaped.next_cursor = cursors.encode(cursor_secret, offset + shown, context) if shown > 0 else None


def _snippets(scope: Scope, query: str, page: Sequence[Candidate], max_chars: int) -> dict[str, str]:
    by_collection: dict[str, list[str]] = {}
    for candidate in page:
        by_collection.setdefault(candidate.chunk.collection, []).append(candidate.chunk.chunk_id)
    out: dict[str, str] = {}
    for name, ids in by_collection.items():
        out.update(scope.view.snapshots[name].lexical.snippets(query, ids, max_chars))
    return out


def _hit(
    candidate: Candidate, scope: Scope, snippet: str | None, embedder: Embedder, settings: RetrievalSettings
) -> SearchHit:
    chunk = candidate.chunk
    snapshot = scope.view.snapshots[chunk.collection]
    flags = screen(chunk.text)
    if snippet is None:
        # Dense-only hits have no matching terms: show the chunk's opening instead.
        snippet = embedder.truncate_to_tokens(chunk.text, settings.snippet_chars // 4)
        if len(snippet) < len(chunk.text):
            snippet += " …"
    return SearchHit(
        **provenance(chunk, snapshot, links.shown_part(chunk, snippet)),
        snippet=neutralize(snippet) if flags else snippet,
        score=round(candidate.score, 6),
        bm25_rank=candidate.bm25_rank,
        dense_rank=candidate.dense_rank,
        rerank_score=None if candidate.rerank_score is None else round(candidate.rerank_score, 6),
        flags=flags,
    )
