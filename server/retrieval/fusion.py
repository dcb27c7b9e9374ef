"""Fusion: several ranked lists (BM25 and dense, per phrasing) → one fused ranking of chunk IDs.

Weighted reciprocal rank fusion: each list adds `weight / (rrf_k + rank)` to every chunk it ranks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from server.retrieval.selection import Fused
from server.settings import RetrievalSettings


@dataclass
class Ranked:
    """One ranked list from one retriever for one phrasing, merged across collections."""

    retriever: Literal["bm25", "dense"]
    variant: int
    hits: list[tuple[str, float]]
    # The retriever's main list (full weight); other phrasings are discounted by `rewrite_weight`.
    primary: bool


def rrf_fuse(ranked: Sequence[Ranked], settings: RetrievalSettings) -> list[Fused]:
    """Weighted reciprocal rank fusion of the ranked lists, best first (ties by chunk id)."""
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
