"""Fusion: several ranked lists (BM25 and dense, per phrasing) → one deduplicated, page-capped list.

Weighted reciprocal rank fusion: each list adds `weight / (rrf_k + rank)` to every chunk it ranks.
With `fusion = "adaptive"` two measured refinements apply (docs/evals.md has the numbers):

- **Agreement.** The weight of the keyword lists follows how much they agree with the dense list
  on this query: when BM25's top chunks are the dense list's top chunks too, keyword evidence is
  about the same thing and counts more; when the two share nothing, BM25 has usually matched the
  question's words in the wrong place (a page title that contains "branch" or "switch") and counts
  less. No labelled data is fitted: the weight is a fixed function of the overlap.
- **Page evidence.** Several good chunks of one page are evidence for that page: within the fused
  head, a page's best chunk scores itself plus a decaying share of the page's next chunks. The
  other chunks keep their own score, so the page cap and deduplication work as before and a page's
  extra chunks never push another page down.

`selection.select` then walks the fused tiers into a result list (duplicates dropped, pages spread).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from indexer.models import Chunk
from server.retrieval.selection import Fused
from server.settings import RetrievalSettings

# How many chunks from the top of the BM25 and the dense list are compared for agreement.
AGREEMENT_DEPTH = 10
# Page evidence is gathered over this many chunks at the head of a fused tier (their payloads are
# needed for the page): enough for the pages a result list shows, and one chunk-store lookup.
PAGE_EVIDENCE_HEAD = 60

Resolve = Callable[[Sequence[str]], dict[str, Chunk]]


@dataclass
class Ranked:
    """One ranked list from one retriever for one phrasing, merged across collections."""

    retriever: Literal["bm25", "dense"]
    variant: int
    hits: list[tuple[str, float]]
    # The retriever's main list (full weight); other phrasings are discounted by `rewrite_weight`.
    primary: bool


def agreement(ranked: Sequence[Ranked], depth: int = AGREEMENT_DEPTH) -> float | None:
    """Share of the primary BM25 list's top chunks that are among the primary dense list's top chunks.

    None when the query has no list of one kind (bm25-only or dense-only retrieval).
    """
    bm25 = next((r for r in ranked if r.retriever == "bm25" and r.primary), None)
    dense = next((r for r in ranked if r.retriever == "dense" and r.primary), None)
    if bm25 is None or dense is None:
        return None
    top_bm25 = {chunk_id for chunk_id, _ in bm25.hits[:depth]}
    top_dense = {chunk_id for chunk_id, _ in dense.hits[:depth]}
    return len(top_bm25 & top_dense) / depth


def list_weights(ranked: Sequence[Ranked], settings: RetrievalSettings) -> list[float]:
    """The fusion weight of each list, in the order given."""
    bm25_weight = settings.bm25_weight
    shared = agreement(ranked) if settings.fusion == "adaptive" else None
    if shared is not None:
        # 0 shared chunks: the floor share of the configured weight; all shared: floor + span.
        bm25_weight *= settings.agreement_floor + settings.agreement_span * shared
    weights = []
    for lst in ranked:
        weight = bm25_weight if lst.retriever == "bm25" else settings.dense_weight
        if not lst.primary:
            weight *= settings.rewrite_weight
        weights.append(weight)
    return weights


def chunk_scores(ranked: Sequence[Ranked], weights: Sequence[float], rrf_k: int) -> dict[str, float]:
    """Weighted reciprocal rank fusion of the lists' chunk IDs."""
    scores: dict[str, float] = defaultdict(float)
    for lst, weight in zip(ranked, weights, strict=True):
        for rank, (chunk_id, _) in enumerate(lst.hits, start=1):
            scores[chunk_id] += weight / (rrf_k + rank)
    return scores


def by_page_evidence(
    order: Sequence[str], scores: Mapping[str, float], page_of: Mapping[str, str], decay: float
) -> tuple[list[str], dict[str, float]]:
    """`order` re-ranked by page evidence, and each chunk's new score.

    A page's evidence is its chunks' scores, best first, weighted 1, decay, decay², …; the page's
    best chunk carries that score. Its other chunks keep their own, so they rise no higher than
    before and never push another page's best chunk down. Chunks of unknown pages keep theirs.
    """
    per_page: dict[str, list[float]] = defaultdict(list)
    leader: dict[str, str] = {}
    for chunk_id in order:
        page = page_of.get(chunk_id)
        if page is not None:
            per_page[page].append(scores[chunk_id])  # `order` is best first, so these are sorted
            leader.setdefault(page, chunk_id)
    new = {chunk_id: scores[chunk_id] for chunk_id in order}
    for page, chunk_id in leader.items():
        values = per_page[page]
        new[chunk_id] = values[0] + sum(value * decay**i for i, value in enumerate(values[1:], start=1))
    return sorted(order, key=lambda cid: (-new[cid], cid)), new


def rrf_fuse(
    ranked: Sequence[Ranked], settings: RetrievalSettings, resolve: Resolve | None = None
) -> list[Fused]:
    """Weighted reciprocal rank fusion of the ranked lists, best first (ties by chunk id).

    With adaptive fusion the BM25 weight follows agreement, and, given `resolve` to read pages,
    the head of the ranking is re-ranked by page evidence.
    """
    bm25_rank: dict[str, int] = {}
    dense_rank: dict[str, int] = {}
    bm25_score: dict[str, float] = {}
    dense_score: dict[str, float] = {}
    for lst in ranked:
        ranks, values = (bm25_rank, bm25_score) if lst.retriever == "bm25" else (dense_rank, dense_score)
        for rank, (chunk_id, value) in enumerate(lst.hits, start=1):
            if lst.primary or chunk_id not in ranks:
                ranks[chunk_id] = min(rank, ranks.get(chunk_id, rank))
                values[chunk_id] = max(value, values.get(chunk_id, value))
    scores = chunk_scores(ranked, list_weights(ranked, settings), settings.rrf_k)
    order = sorted(scores, key=lambda cid: (-scores[cid], cid))
    if settings.fusion == "adaptive" and settings.page_evidence > 0 and resolve is not None and order:
        head = order[:PAGE_EVIDENCE_HEAD]
        page_of = {cid: f"{c.collection}\x00{c.path}" for cid, c in resolve(head).items()}
        reranked, head_scores = by_page_evidence(head, scores, page_of, settings.page_evidence)
        scores = {**scores, **head_scores}  # chunks below the head keep their own scores
        order = reranked + order[PAGE_EVIDENCE_HEAD:]
    return [
        Fused(
            chunk_id=chunk_id,
            score=scores[chunk_id],
            bm25_rank=bm25_rank.get(chunk_id),
            dense_rank=dense_rank.get(chunk_id),
            bm25_score=bm25_score.get(chunk_id),
            dense_score=dense_score.get(chunk_id),
        )
        for chunk_id in order
    ]
