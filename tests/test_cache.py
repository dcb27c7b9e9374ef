"""Semantic answer cache: reuse within one tenant, scope and generation; never across them."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest

from indexer.embedding import Embedder
from server.answering.cache import CacheScope, SemanticCache
from server.settings import CacheSettings

QUESTION = "How do I make a model field optional in forms?"
PARAPHRASE = "How can I make a model field optional in forms?"


def scope(**changes: object) -> CacheScope:
    values: dict[str, object] = {
        "tenant": "acme",
        "collections": ["django"],
        "version": "3.2",
        "generations": {"django": 4},
        "backend": "extractive",
        "max_tokens": 1500,
    }
    values.update(changes)
    return CacheScope.of(**values)  # type: ignore[arg-type]


def unit(*values: float) -> npt.NDArray[np.float32]:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def cache() -> SemanticCache[str]:
    return SemanticCache[str](CacheSettings(similarity=0.97, max_entries=8, ttl_s=None))


def test_same_question_hits_exactly_even_with_different_case_and_spacing(cache: SemanticCache[str]) -> None:
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    hit = cache.get(scope(), "  how do I make a model FIELD optional in forms ", unit(0, 1, 0))
    assert hit is not None
    assert (hit.value, hit.exact) == ("answer", True)


def test_near_duplicate_question_hits_with_real_embeddings(embedder: Embedder) -> None:
    cache = SemanticCache[str](CacheSettings())
    vectors = embedder.embed([QUESTION, PARAPHRASE, "How do I send email with attachments?"])
    cache.put(scope(), QUESTION, vectors[0], "answer")
    hit = cache.get(scope(), PARAPHRASE, vectors[1])
    assert hit is not None
    assert hit.value == "answer"
    assert not hit.exact
    assert hit.similarity >= 0.97
    assert cache.get(scope(), "How do I send email with attachments?", vectors[2]) is None


def test_similar_vector_below_threshold_misses(cache: SemanticCache[str]) -> None:
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    assert cache.get(scope(), "Another question", unit(1, 0.3, 0)) is None  # cosine ≈ 0.96
    assert cache.get(scope(), "Another question", unit(1, 0.1, 0)) is not None  # cosine ≈ 0.995


def test_near_duplicate_naming_another_identifier_misses(cache: SemanticCache[str]) -> None:
    cache.put(scope(), "When should I use select_related?", unit(1, 0, 0), "select")
    assert cache.get(scope(), "When should I use prefetch_related?", unit(1, 0, 0)) is None
    assert cache.get(scope(), "When should I use select_related in views?", unit(1, 0.01, 0)) is not None


def test_near_duplicate_with_another_number_misses(cache: SemanticCache[str]) -> None:
    cache.put(scope(), "What changed in Django 3.2?", unit(1, 0, 0), "3.2")
    assert cache.get(scope(), "What changed in Django 4.0?", unit(1, 0, 0)) is None


def test_other_tenant_never_gets_the_answer(cache: SemanticCache[str]) -> None:
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    assert cache.get(scope(tenant="globex"), QUESTION, unit(1, 0, 0)) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"collections": ["django", "drf"], "generations": {"django": 4, "drf": 1}},
        {"version": "4.2"},
        {"version": None},
        {"backend": "openai"},
        {"max_tokens": 400},
    ],
)
def test_other_collections_version_or_shape_misses(
    cache: SemanticCache[str], changes: dict[str, object]
) -> None:
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    assert cache.get(scope(**changes), QUESTION, unit(1, 0, 0)) is None


def test_collection_order_does_not_matter(cache: SemanticCache[str]) -> None:
    both = {"django": 4, "drf": 1}
    cache.put(scope(collections=["drf", "django"], generations=both), QUESTION, unit(1, 0, 0), "answer")
    assert (
        cache.get(scope(collections=["django", "drf"], generations=both), QUESTION, unit(1, 0, 0)) is not None
    )


def test_new_generation_invalidates(cache: SemanticCache[str]) -> None:
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    assert cache.get(scope(generations={"django": 5}), QUESTION, unit(1, 0, 0)) is None


def test_least_recently_used_entry_is_evicted_at_the_bound() -> None:
    cache = SemanticCache[str](CacheSettings(max_entries=2, ttl_s=None))
    cache.put(scope(), "first question here", unit(1, 0, 0), "1")
    cache.put(scope(), "second question here", unit(0, 1, 0), "2")
    assert cache.get(scope(), "first question here", unit(1, 0, 0)) is not None  # now most recent
    cache.put(scope(), "third question here", unit(0, 0, 1), "3")
    assert len(cache) == 2
    assert cache.get(scope(), "second question here", unit(0, 1, 0)) is None
    assert cache.get(scope(), "first question here", unit(1, 0, 0)) is not None


def test_entries_expire_after_the_ttl() -> None:
    now = [100.0]
    cache = SemanticCache[str](CacheSettings(ttl_s=60), clock=lambda: now[0])
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    now[0] += 59
    assert cache.get(scope(), QUESTION, unit(1, 0, 0)) is not None
    now[0] += 2
    assert cache.get(scope(), QUESTION, unit(1, 0, 0)) is None


def test_disabled_cache_stores_nothing() -> None:
    cache = SemanticCache[str](CacheSettings(enabled=False))
    cache.put(scope(), QUESTION, unit(1, 0, 0), "answer")
    assert cache.get(scope(), QUESTION, unit(1, 0, 0)) is None


def test_concurrent_use_keeps_the_bound() -> None:
    cache = SemanticCache[int](CacheSettings(max_entries=50, ttl_s=None))
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(400, 16)).astype(np.float32)

    def work(offset: int) -> None:
        for i in range(offset, offset + 100):
            cache.put(scope(), f"question {i}", vectors[i], i)
            cache.get(scope(), f"question {i - 1}", vectors[i - 1])

    threads = [threading.Thread(target=work, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 50
