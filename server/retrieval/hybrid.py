"""Hybrid retrieval: rewrite → BM25 + dense per phrasing → weighted reciprocal rank fusion.

No MCP here: the tools call `retrieve` with collections that authorization has already
resolved, and every filter (collections, version, path prefix) is applied inside each engine's
query, so a tenant's k results are never starved or counted from collections it cannot see.

The lists are searched `candidates` deep first. When those chunks cannot fill the requested depth
(after deduplication; see `selection`), the same phrasings and query vectors are searched again,
four times deeper each time, and the chunks that only the deeper lists found are ranked after the
ones already seen: page n of a result list stays a prefix of page n+1's, however deep a cursor goes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from indexer.embedding import Embedder, Vectors
from indexer.errors import EmbeddingServiceFailed
from indexer.lexical import LexicalHit
from indexer.models import Chunk, ChunkFilter
from indexer.vectors import VectorHit
from server.errors import IndexUnavailable
from server.observability.stages import StageTimer
from server.retrieval.catalog import CatalogView, Snapshot
from server.retrieval.fusion import Ranked as Ranked  # re-exported beside `retrieve`
from server.retrieval.fusion import rrf_fuse
from server.retrieval.rerank import shared_reranker
from server.retrieval.rewriting import rewrite
from server.retrieval.selection import Candidate, Fused, select
from server.settings import RetrievalSettings

__all__ = ["FEEDBACK_DEPTH", "Candidate", "Mode", "RetrievalQuery", "RetrievalResult", "retrieve"]

log = structlog.get_logger()

Mode = Literal["hybrid", "bm25", "dense"]
FEEDBACK_DEPTH = 5
# Each deeper search of the lists goes this many times deeper than the one before, up to the ceiling.
DEEPEN_FACTOR = 4
MAX_LIST_DEPTH = 4096


@dataclass(frozen=True)
class RetrievalQuery:
    text: str
    collections: tuple[str, ...]
    version: str | None = None
    path_prefix: str | None = None
    # Labels each collection reads (resolved by `versions.resolve_scope`); replaces `version` when set.
    versions: Mapping[str, tuple[str, ...]] | None = None
    code_only: bool = False
    # The model as published for the query vector (`Embedder.embed_queries(exact=True)`): for
    # answers, whose page choice hangs on small cosine differences; searches take the fast copy.
    exact_vectors: bool = False

    def filter_for(self, collection: str) -> ChunkFilter:
        """The engine filter of one collection: each collection may read different version labels."""
        if self.versions is None:
            return ChunkFilter(
                collections=(collection,),
                version=self.version,
                path_prefix=self.path_prefix,
                code_only=self.code_only,
            )
        return ChunkFilter(
            collections=(collection,),
            versions=self.versions.get(collection, ()),
            path_prefix=self.path_prefix,
            code_only=self.code_only,
        )


def engine_filter(flt: ChunkFilter, snapshot: Snapshot) -> ChunkFilter:
    """`flt` without the conditions every chunk of this generation meets.

    A generation holds one collection, and often one version: asking the engines to check those on
    every candidate changes nothing but costs (half of a vector search over 2,000 chunks). A
    condition that excludes something (another collection, a version among several) stays.
    """
    held = set(snapshot.manifest.versions)  # empty in manifests that predate the list: keep all
    update: dict[str, object] = {}
    if flt.collections and snapshot.collection in flt.collections:
        update["collections"] = ()
    if flt.version is not None and held and held == {flt.version}:
        update["version"] = None
    if flt.versions and held and held <= set(flt.versions):
        update["versions"] = ()
    return flt.model_copy(update=update) if update else flt


@dataclass
class RetrievalResult:
    candidates: list[Candidate]
    variants: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    bm25_ids: list[list[str]] = field(default_factory=list)
    dense_ids: list[list[str]] = field(default_factory=list)
    # Stages that failed and were skipped, each with why; the candidates are still valid.
    degraded: list[str] = field(default_factory=list)


def _merge_by_score(
    per_collection: Sequence[Sequence[LexicalHit | VectorHit]], limit: int
) -> list[tuple[str, float]]:
    merged = [(h.chunk_id, h.score) for hits in per_collection for h in hits]
    merged.sort(key=lambda pair: pair[1], reverse=True)
    return merged[:limit]


@dataclass
class _Lists:
    """Everything needed to search the ranked lists again at any depth: phrasings, vectors, filters."""

    snapshots: list[Snapshot]
    filters: Mapping[str, ChunkFilter]  # one per collection: each may read different version labels
    bm25_variants: list[tuple[int, str, bool]]  # (variant index, text, primary)
    vectors: Vectors | None
    owner: dict[str, Snapshot] = field(default_factory=dict)
    resolved: dict[str, Chunk] = field(default_factory=dict)

    def bm25(self, variant: int, text: str, primary: bool, limit: int) -> Ranked:
        per_collection = []
        for snapshot in self.snapshots:
            hits = snapshot.lexical.search(text, self.filters[snapshot.collection], limit)
            for hit in hits:
                self.owner.setdefault(hit.chunk_id, snapshot)
            per_collection.append(hits)
        return Ranked("bm25", variant, _merge_by_score(per_collection, limit), primary=primary)

    def dense(self, limit: int) -> list[Ranked]:
        if self.vectors is None:
            return []
        per_variant: list[list[list[VectorHit]]] = [[] for _ in range(len(self.vectors))]
        for snapshot in self.snapshots:
            found = snapshot.vectors.search_batch(self.vectors, self.filters[snapshot.collection], limit)
            for index, hits in enumerate(found):
                for hit in hits:
                    self.owner.setdefault(hit.chunk_id, snapshot)
                per_variant[index].append(hits)
        return [
            Ranked("dense", index, _merge_by_score(per_collection, limit), primary=index == 0)
            for index, per_collection in enumerate(per_variant)
        ]

    def search(self, limit: int) -> list[Ranked]:
        ranked = [self.bm25(index, text, primary, limit) for index, text, primary in self.bm25_variants]
        return ranked + self.dense(limit)

    def resolve(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """Payloads of chunks the lists returned, one chunk-store lookup per collection.

        Feedback, page evidence and selection each ask for overlapping heads of the same lists;
        a snapshot's chunks never change, so each payload is read from the store once per call."""
        by_snapshot: dict[int, tuple[Snapshot, list[str]]] = {}
        for chunk_id in chunk_ids:
            snapshot = self.owner[chunk_id]
            by_snapshot.setdefault(id(snapshot), (snapshot, []))[1].append(chunk_id)
        chunks: dict[str, Chunk] = {}
        for snapshot, ids in by_snapshot.values():
            fetched = snapshot.lexical.get_many([cid for cid in ids if cid not in self.resolved])
            self.resolved.update(fetched)
            chunks.update(fetched)  # in the store's order, as before any were remembered
            chunks.update(
                (cid, self.resolved[cid]) for cid in ids if cid in self.resolved and cid not in chunks
            )
        return chunks


def retrieve(
    view: CatalogView,
    query: RetrievalQuery,
    embedder: Embedder,
    settings: RetrievalSettings,
    *,
    depth: int,
    mode: Mode = "hybrid",
    rewrites: bool | None = None,
) -> RetrievalResult:
    """The fused, deduplicated, page-spread candidates, best first: `depth` of them whenever the
    scope holds that many chunks with distinct texts (see `selection` for the per-page cap)."""
    use_rewrites = settings.rewrites if rewrites is None else rewrites
    snapshots = [view.snapshots[c] for c in query.collections if c in view.snapshots]
    lists = _Lists(
        snapshots=snapshots,
        filters={s.collection: engine_filter(query.filter_for(s.collection), s) for s in snapshots},
        bm25_variants=[],
        vectors=None,
    )
    # Independent of `depth`, so page n of a result list is a prefix-consistent slice of page n+1's list.
    limit = settings.candidates
    timer = StageTimer()

    t0 = time.perf_counter()
    variants = [query.text]
    if use_rewrites and mode != "dense":
        variants.extend(rewrite(query.text)[:1])
    timer.span("rewrite", t0)

    ranked: list[Ranked] = []
    degraded: list[str] = []
    if mode in ("hybrid", "bm25"):
        t0 = time.perf_counter()
        # BM25 reads the question as asked (its main list) and, when there is one, the keyword form
        # as a second, discounted list. Measured on five eval sets (docs/evals.md): the keyword form
        # *instead of* the question lost MRR on four of them; beside it, the pipeline beats every
        # plain method on all five.
        for index, text in enumerate(variants):
            lists.bm25_variants.append((index, text, index == 0))
            ranked.append(lists.bm25(index, text, index == 0, limit))
        timer.span("bm25", t0)
        if use_rewrites and settings.rewrite_feedback:
            t0 = time.perf_counter()
            top = [chunk_id for chunk_id, _ in ranked[-1].hits[:FEEDBACK_DEPTH]]
            feedback = [[c.title, *c.heading_path] for c in lists.resolve(top).values()]
            extra = [v for v in rewrite(query.text, feedback) if v not in variants]
            timer.span("rewrite", t0)
            if extra:
                t0 = time.perf_counter()
                variants.append(extra[-1])
                lists.bm25_variants.append((len(variants) - 1, extra[-1], False))
                ranked.append(lists.bm25(len(variants) - 1, extra[-1], False, limit))
                timer.span("bm25", t0)

    if mode in ("hybrid", "dense"):
        # Rewrites are keyword lists shaped for BM25 and tend to embed worse than the question, so by
        # default only the original is embedded; `dense_rewrites` embeds every phrasing in one batch.
        dense_texts = variants if settings.dense_rewrites else variants[:1]
        t0 = time.perf_counter()
        lists.vectors = _embed_queries(embedder, dense_texts, mode, degraded, query.exact_vectors)
        timer.span("embed", t0)
        t0 = time.perf_counter()
        ranked.extend(lists.dense(limit))
        timer.span("dense", t0)

    rerank = settings.rerank
    t0 = time.perf_counter()
    # Reranked or not, the head that goes to the reranker is fixed, so pages stay prefix-consistent.
    candidates = select(
        _tiers(lists, ranked, limit, settings, timer),
        lists.resolve,
        depth=max(depth, rerank.top_n) if rerank.enabled else depth,
        cap=settings.max_chunks_per_document,
    )
    timer.span("fuse", t0)
    if "deepen" in timer.spans:  # the deeper searches ran inside the walk: report them apart
        timer.spans["fuse"] = round(timer.spans["fuse"] - timer.spans["deepen"], 3)
    if rerank.enabled:
        t0 = time.perf_counter()
        outcome = shared_reranker(rerank).rerank(query.text, candidates)
        timer.span("rerank", t0)
        if outcome.failure is not None:
            degraded.append(f"rerank skipped, fused order kept: {outcome.failure}")
        candidates = outcome.candidates[:depth]
    return RetrievalResult(
        candidates=candidates,
        variants=variants,
        timings_ms=timer.spans,
        bm25_ids=[[cid for cid, _ in r.hits[:20]] for r in ranked if r.retriever == "bm25"],
        dense_ids=[[cid for cid, _ in r.hits[:20]] for r in ranked if r.retriever == "dense"],
        degraded=degraded,
    )


def _embed_queries(
    embedder: Embedder, texts: list[str], mode: Mode, degraded: list[str], exact: bool
) -> Vectors | None:
    """Query vectors, or None when a remote embedding service failed and keyword results must do."""
    try:
        return embedder.embed_queries(texts, exact=exact)
    except EmbeddingServiceFailed as error:
        if mode == "dense":
            raise IndexUnavailable(f"semantic search is unavailable: {error}") from None
        log.warning("dense_search_skipped", reason=str(error))
        degraded.append(f"semantic search skipped, keyword (BM25) results only: {error}")
        return None


def _tiers(
    lists: _Lists, first: list[Ranked], limit: int, settings: RetrievalSettings, timer: StageTimer
) -> Iterator[list[Fused]]:
    """The fused ranking of the first lists, then of what each deeper search adds (lazily)."""
    ranked = first
    seen: set[str] = set()
    while True:
        ranking = [entry for entry in rrf_fuse(ranked, settings, lists.resolve) if entry.chunk_id not in seen]
        seen.update(entry.chunk_id for entry in ranking)
        yield ranking
        # A list shorter than its limit holds every match in scope: deeper search finds nothing new.
        if limit >= MAX_LIST_DEPTH or all(len(r.hits) < limit for r in ranked):
            return
        limit = min(limit * DEEPEN_FACTOR, MAX_LIST_DEPTH)
        t0 = time.perf_counter()
        ranked = lists.search(limit)
        timer.span("deepen", t0)
