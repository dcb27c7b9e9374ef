"""From fused rankings to a result list: drop duplicate texts, spread hits over pages, fill `depth`.

Fusion hands over *tiers*: tier 0 ranks every chunk found in the top `candidates` of each ranked
list; each later tier ranks only the chunks that appear once the lists are searched deeper, and is
searched only when the tiers before it could not fill the list. The walk over the tiers is:

1. Within a tier, in fused order, skip a chunk whose normalised text was already taken (the same
   note included on several pages), and hold back a chunk whose page already has
   `max_chunks_per_document` hits in the list.
2. When the tier is used up before the list holds `depth` hits, the held-back chunks of that tier
   follow, in fused order: the per-page cap is a preference that gives way rather than return
   fewer hits than asked for while the scope still holds chunks that are not duplicates.
3. Then the next tier, with the same rules (pages keep the counts they reached).

Nothing in the walk depends on `depth` except where it stops, so the list for a smaller depth is
always a prefix of the list for a larger one: that is what lets a cursor page through the results
without repeating or skipping a hit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from indexer.models import Chunk

# Payloads are read from the chunk store in batches of this many ids (at least), lazily: a full
# list usually needs only the head of tier 0.
RESOLVE_BATCH = 24


@dataclass(frozen=True)
class Fused:
    """One chunk's place in a fused ranking, with where it stood in each retriever's main list."""

    chunk_id: str
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    dense_score: float | None = None


@dataclass
class Candidate:
    chunk: Chunk
    score: float
    bm25_rank: int | None = None
    dense_rank: int | None = None
    bm25_score: float | None = None
    dense_score: float | None = None
    rerank_score: float | None = None  # set on the head the rerank stage reordered


Resolver = Callable[[Sequence[str]], dict[str, Chunk]]


@lru_cache(maxsize=16384)
def fingerprint(text: str) -> str:
    """Text identity for deduplication: case and whitespace do not make a passage different.

    Cached: the chunk store hands out the same text objects search after search (their hashes are
    computed once), and normalising a long chunk is most of a page walk's own work."""
    return " ".join(text.lower().split())


class _Walk:
    def __init__(self, resolve: Resolver, depth: int, cap: int) -> None:
        self.resolve = resolve
        self.depth = depth
        self.cap = cap
        self.out: list[Candidate] = []
        self.seen_text: set[str] = set()
        self.per_document: dict[tuple[str, str], int] = defaultdict(int)

    @property
    def full(self) -> bool:
        return len(self.out) >= self.depth

    def take(self, entry: Fused, chunk: Chunk) -> None:
        self.seen_text.add(fingerprint(chunk.text))
        self.per_document[(chunk.collection, chunk.path)] += 1
        self.out.append(
            Candidate(
                chunk=chunk,
                score=entry.score,
                bm25_rank=entry.bm25_rank,
                dense_rank=entry.dense_rank,
                bm25_score=entry.bm25_score,
                dense_score=entry.dense_score,
            )
        )

    def tier(self, ranking: Sequence[Fused]) -> None:
        held: list[tuple[Fused, Chunk]] = []
        start = 0
        while start < len(ranking):
            # Enough ids to fill the list if none is skipped; the batch size never changes the outcome.
            size = max(RESOLVE_BATCH, 2 * (self.depth - len(self.out)))
            batch = ranking[start : start + size]
            start += size
            chunks = self.resolve([entry.chunk_id for entry in batch])
            for entry in batch:
                chunk = chunks.get(entry.chunk_id)
                if chunk is None or fingerprint(chunk.text) in self.seen_text:
                    continue
                if self.per_document[(chunk.collection, chunk.path)] >= self.cap:
                    held.append((entry, chunk))
                    continue
                self.take(entry, chunk)
                if self.full:
                    return
        for entry, chunk in held:  # the tier ran dry under the cap: the cap gives way, in fused order
            if fingerprint(chunk.text) in self.seen_text:
                continue
            self.take(entry, chunk)
            if self.full:
                return


def select(tiers: Iterable[Sequence[Fused]], resolve: Resolver, *, depth: int, cap: int) -> list[Candidate]:
    """Up to `depth` candidates, best first; `tiers` is consumed only as far as needed."""
    walk = _Walk(resolve, depth, cap)
    if depth <= 0:
        return walk.out
    for ranking in tiers:
        walk.tier(ranking)
        if walk.full:
            break
    return walk.out
