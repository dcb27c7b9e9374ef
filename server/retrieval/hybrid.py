"""Hybrid retrieval: rewrite → BM25 + dense per phrasing → weighted reciprocal rank fusion.

No MCP here: the tools call `retrieve` with collections that authorization has already
resolved, and every filter (collections, version, path prefix) is applied inside each engine's
query, so a tenant's k results are never starved or counted from collections it cannot see.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from indexer.embedding import Embedder
from indexer.lexical import LexicalHit
from indexer.models import Chunk, ChunkFilter
from indexer.vectors import VectorHit
from server.retrieval.catalog import CatalogView, Snapshot
from server.retrieval.rewriting import rewrite
from server.settings import RetrievalSettings

Mode = Literal["hybrid", "bm25", "dense"]
FEEDBACK_DEPTH = 5


@dataclass(frozen=True)
class RetrievalQuery:
    text: str
    collections: tuple[str, ...]
    version: str | None = None
    path_prefix: str | None = None
    # Labels each collection reads (resolved by `versions.resolve_scope`); replaces `version` when set.
    versions: Mapping[str, tuple[str, ...]] | None = None
    code_only: bool = False

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


@dataclass
class Candidate:
    chunk: Chunk
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    dense_score: float | None = None


@dataclass
class RetrievalResult:
    candidates: list[Candidate]
    variants: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    bm25_ids: list[list[str]] = field(default_factory=list)
    dense_ids: list[list[str]] = field(default_factory=list)


@dataclass
class _Ranked:
    """One ranked list from one retriever for one phrasing, merged across collections."""

    retriever: Literal["bm25", "dense"]
    variant: int
    hits: list[tuple[str, float]]
    # The retriever's main list (full weight); other phrasings are discounted by `rewrite_weight`.
    primary: bool


def _merge_by_score(
    per_collection: Sequence[Sequence[LexicalHit | VectorHit]], limit: int
) -> list[tuple[str, float]]:
    merged = [(h.chunk_id, h.score) for hits in per_collection for h in hits]
    merged.sort(key=lambda pair: pair[1], reverse=True)
    return merged[:limit]


class _Timer:
    def __init__(self) -> None:
        self.spans: dict[str, float] = {}

    def span(self, name: str, started: float) -> None:
        self.spans[name] = round(self.spans.get(name, 0.0) + (time.perf_counter() - started) * 1000, 3)


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
    """The fused, deduplicated, diversity-capped candidates, best first (at most `depth`)."""
    use_rewrites = settings.rewrites if rewrites is None else rewrites
    snapshots = [view.snapshots[c] for c in query.collections if c in view.snapshots]
    filters = {s.collection: query.filter_for(s.collection) for s in snapshots}
    # Independent of `depth`, so page n of a result list is a prefix-consistent slice of page n+1's list.
    limit = settings.candidates
    timer = _Timer()
    owner: dict[str, Snapshot] = {}

    t0 = time.perf_counter()
    variants = [query.text]
    if use_rewrites and mode != "dense":
        variants.extend(rewrite(query.text)[:1])
    timer.span("rewrite", t0)

    ranked: list[_Ranked] = []
    if mode in ("hybrid", "bm25"):
        t0 = time.perf_counter()
        # BM25 takes the keyword form *instead of* the raw question when there is one: question words
        # and stopwords only add noise to term matching (measured: better recall and MRR on both evals).
        index = len(variants) - 1
        ranked.append(
            _Ranked("bm25", index, _bm25(snapshots, variants[index], filters, limit, owner), primary=True)
        )
        timer.span("bm25", t0)
        if use_rewrites and settings.rewrite_feedback:
            t0 = time.perf_counter()
            feedback = _feedback_headings(ranked[-1].hits[:FEEDBACK_DEPTH], owner)
            extra = [v for v in rewrite(query.text, feedback) if v not in variants]
            timer.span("rewrite", t0)
            if extra:
                t0 = time.perf_counter()
                variants.append(extra[-1])
                ranked.append(
                    _Ranked(
                        "bm25",
                        len(variants) - 1,
                        _bm25(snapshots, extra[-1], filters, limit, owner),
                        primary=False,
                    )
                )
                timer.span("bm25", t0)

    if mode in ("hybrid", "dense"):
        # Rewrites are keyword lists shaped for BM25 and tend to embed worse than the question, so by
        # default only the original is embedded; `dense_rewrites` embeds every phrasing in one batch.
        dense_texts = variants if settings.dense_rewrites else variants[:1]
        t0 = time.perf_counter()
        vectors = embedder.embed(dense_texts)
        timer.span("embed", t0)
        t0 = time.perf_counter()
        per_variant: list[list[list[VectorHit]]] = [[] for _ in dense_texts]
        for snapshot in snapshots:
            for index, hits in enumerate(
                snapshot.vectors.search_batch(vectors, filters[snapshot.collection], limit)
            ):
                for hit in hits:
                    owner.setdefault(hit.chunk_id, snapshot)
                per_variant[index].append(hits)
        for index, per_collection in enumerate(per_variant):
            ranked.append(_Ranked("dense", index, _merge_by_score(per_collection, limit), primary=index == 0))
        timer.span("dense", t0)

    t0 = time.perf_counter()
    candidates = _fuse(ranked, settings, owner, depth)
    timer.span("fuse", t0)
    return RetrievalResult(
        candidates=candidates,
        variants=variants,
        timings_ms=timer.spans,
        bm25_ids=[[cid for cid, _ in r.hits[:20]] for r in ranked if r.retriever == "bm25"],
        dense_ids=[[cid for cid, _ in r.hits[:20]] for r in ranked if r.retriever == "dense"],
    )


def _bm25(
    snapshots: Sequence[Snapshot],
    text: str,
    filters: Mapping[str, ChunkFilter],
    limit: int,
    owner: dict[str, Snapshot],
) -> list[tuple[str, float]]:
    per_collection = []
    for snapshot in snapshots:
        hits = snapshot.lexical.search(text, filters[snapshot.collection], limit)
        for hit in hits:
            owner.setdefault(hit.chunk_id, snapshot)
        per_collection.append(hits)
    return _merge_by_score(per_collection, limit)


def _feedback_headings(hits: Sequence[tuple[str, float]], owner: dict[str, Snapshot]) -> list[list[str]]:
    by_snapshot: dict[int, tuple[Snapshot, list[str]]] = {}
    for chunk_id, _ in hits:
        snapshot = owner[chunk_id]
        by_snapshot.setdefault(id(snapshot), (snapshot, []))[1].append(chunk_id)
    headings = []
    for snapshot, ids in by_snapshot.values():
        for chunk in snapshot.lexical.get_many(ids).values():
            headings.append([chunk.title, *chunk.heading_path])
    return headings


def _fuse(
    ranked: Sequence[_Ranked], settings: RetrievalSettings, owner: dict[str, Snapshot], depth: int
) -> list[Candidate]:
    scores: dict[str, float] = defaultdict(float)
    bm25_rank: dict[str, int] = {}
    dense_rank: dict[str, int] = {}
    bm25_score: dict[str, float] = {}
    dense_score: dict[str, float] = {}
    for lst in ranked:
        weight = settings.bm25_weight if lst.retriever == "bm25" else settings.dense_weight
        if not lst.primary:
            weight *= settings.rewrite_weight
        ranks, values = (bm25_rank, bm25_score) if lst.retriever == "bm25" else (dense_rank, dense_score)
        for rank, (chunk_id, value) in enumerate(lst.hits, start=1):
            scores[chunk_id] += weight / (settings.rrf_k + rank)
            if lst.primary or chunk_id not in ranks:
                ranks[chunk_id] = min(rank, ranks.get(chunk_id, rank))
                values[chunk_id] = max(value, values.get(chunk_id, value))
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))

    # Resolve payloads for the head of the list only: enough to fill `depth` after deduplication.
    head = order[: max(depth * 3, 30)]
    chunks: dict[str, Chunk] = {}
    by_snapshot: dict[int, tuple[Snapshot, list[str]]] = {}
    for chunk_id in head:
        snapshot = owner[chunk_id]
        by_snapshot.setdefault(id(snapshot), (snapshot, []))[1].append(chunk_id)
    for snapshot, ids in by_snapshot.values():
        chunks.update(snapshot.lexical.get_many(ids))

    out: list[Candidate] = []
    seen_text: set[str] = set()
    per_document: dict[tuple[str, str], int] = defaultdict(int)
    for chunk_id in head:
        chunk = chunks.get(chunk_id)
        if chunk is None:
            continue
        fingerprint = " ".join(chunk.text.lower().split())
        if fingerprint in seen_text:
            continue  # the same text on several pages (includes, copied notes): keep the best one
        document = (chunk.collection, chunk.path)
        if per_document[document] >= settings.max_chunks_per_document:
            continue
        seen_text.add(fingerprint)
        per_document[document] += 1
        out.append(
            Candidate(
                chunk=chunk,
                score=scores[chunk_id],
                bm25_rank=bm25_rank.get(chunk_id),
                dense_rank=dense_rank.get(chunk_id),
                bm25_score=bm25_score.get(chunk_id),
                dense_score=dense_score.get(chunk_id),
            )
        )
        if len(out) >= depth:
            break
    return out
