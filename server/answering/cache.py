"""Semantic answer cache: repeated and near-duplicate questions reuse an earlier answer.

A hit needs the same `CacheScope` — tenant, collection set, version filter, index generation of
every collection in scope, answer backend and size limit — so an answer never crosses tenants
and a newly published generation invalidates everything answered from the old one (its key
simply stops matching; stale entries age out of the LRU).

Within a scope a question matches an entry when its normalised text is identical, or when the
cosine of the two question embeddings reaches `similarity` AND both questions name the same code
identifiers and numbers. The second condition matters in documentation: "select_related" and
"prefetch_related", or "Django 3.2" and "Django 4.0", embed almost identically but have different
answers.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from indexer.text import identifiers, numbers
from server.settings import CacheSettings

V = TypeVar("V")


@dataclass(frozen=True)
class CacheScope:
    """Everything besides the question that decides an answer."""

    tenant: str
    collections: tuple[str, ...]
    version: str | None
    generations: tuple[tuple[str, int], ...]
    backend: str
    max_tokens: int

    @classmethod
    def of(
        cls,
        tenant: str,
        collections: Sequence[str],
        version: str | None,
        generations: Mapping[str, int],
        backend: str,
        max_tokens: int,
    ) -> CacheScope:
        return cls(
            tenant=tenant,
            collections=tuple(sorted(set(collections))),
            version=version,
            generations=tuple(sorted(generations.items())),
            backend=backend,
            max_tokens=max_tokens,
        )


def normalise(question: str) -> str:
    """Case- and whitespace-insensitive form used for exact matches."""
    return " ".join(question.lower().split()).rstrip("?.! ")


def signature(question: str) -> frozenset[str]:
    """Identifiers and numbers a near-duplicate must share (case-sensitive for identifiers)."""
    return frozenset(identifiers(question)) | frozenset(numbers(question))


@dataclass
class _Entry(Generic[V]):
    scope: CacheScope
    text: str
    signature: frozenset[str]
    vector: npt.NDArray[np.float32]
    value: V
    stored_at: float


@dataclass(frozen=True)
class CacheHit(Generic[V]):
    value: V
    similarity: float
    exact: bool


class SemanticCache(Generic[V]):
    """Thread-safe LRU of answers keyed by scope and question (text or embedding)."""

    def __init__(self, settings: CacheSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[CacheScope, str], _Entry[V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, scope: CacheScope, question: str, vector: npt.NDArray[Any]) -> CacheHit[V] | None:
        """The cached answer for `question` in `scope`, or None."""
        if not self.settings.enabled:
            return None
        text = normalise(question)
        unit = _unit(vector)
        wanted = signature(question)
        with self._lock:
            self._expire()
            entry = self._entries.get((scope, text))
            if entry is not None:
                self._entries.move_to_end((scope, text))
                self.hits += 1
                return CacheHit(entry.value, 1.0, exact=True)
            best: _Entry[V] | None = None
            best_similarity = -1.0
            # A linear scan: max_entries is small and the dot products are cheap next to an answer.
            for candidate in self._entries.values():
                if candidate.scope != scope or candidate.signature != wanted:
                    continue
                similarity = float(candidate.vector @ unit)
                if similarity > best_similarity:
                    best, best_similarity = candidate, similarity
            if best is None or best_similarity < self.settings.similarity:
                self.misses += 1
                return None
            self._entries.move_to_end((best.scope, best.text))
            self.hits += 1
            return CacheHit(best.value, best_similarity, exact=False)

    def put(self, scope: CacheScope, question: str, vector: npt.NDArray[Any], value: V) -> None:
        if not self.settings.enabled:
            return
        text = normalise(question)
        entry = _Entry(scope, text, signature(question), _unit(vector), value, self._clock())
        with self._lock:
            self._entries[(scope, text)] = entry
            self._entries.move_to_end((scope, text))
            while len(self._entries) > self.settings.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def _expire(self) -> None:
        ttl = self.settings.ttl_s
        if ttl is None:
            return
        cutoff = self._clock() - ttl
        stale = [key for key, entry in self._entries.items() if entry.stored_at < cutoff]
        for key in stale:
            del self._entries[key]


def _unit(vector: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    result: npt.NDArray[np.float32] = v / max(float(np.linalg.norm(v)), 1e-12)
    return result
