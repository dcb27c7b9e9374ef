"""Response sizes over the fixture corpus. The size a search or fetch reports is what the token
budget charges and the audit records: never below the response's real size, for search never
above it by more than the separators, and the response itself never exceeds `max_tokens`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.embedding import Embedder
from server.retrieval.service import Access, DocService
from server.security.guards import InvalidArgument
from tests.conftest import open_service

ACCESS = Access(tenant="default", allowed=lambda name: True)
QUERIES = [
    "How do I switch to the ink theme?",
    "LUMEN_CACHE_DIR",
    "build_site templates themes cache configuration",
    "Can page names contain accents?",
    "publish a page on a future date",
]


@pytest.fixture(scope="module")
def service(lumen_data_dir: Path, model_dir: Path, embedder: Embedder) -> DocService:
    return open_service(lumen_data_dir, model_dir, embedder)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(("k", "max_tokens"), [(3, 2000), (8, 2000), (20, 700), (20, 300), (8, 140)])
def test_reported_size_bounds_the_real_page_tightly(
    service: DocService, embedder: Embedder, query: str, k: int, max_tokens: int
) -> None:
    outcome = service.search(ACCESS, query, k=k, max_tokens=max_tokens)
    page = json.dumps(outcome.result.model_dump(mode="json"), ensure_ascii=False)
    exact = embedder.count_tokens(page)
    assert exact <= max_tokens
    assert exact <= outcome.tokens <= exact + 2 * len(outcome.result.hits) + 3
    if outcome.result.next_cursor is not None:
        assert outcome.result.hits, "a cursor only follows a page that shows something"


def test_every_page_of_a_cursor_walk_stays_within_budget(service: DocService, embedder: Embedder) -> None:
    cursor: str | None = None
    seen: list[str] = []
    # 420: a hit with its live URL and code labels costs up to ~360 tokens on this corpus.
    for _ in range(10):
        outcome = service.search(ACCESS, "site build templates themes", k=4, max_tokens=420, cursor=cursor)
        page = json.dumps(outcome.result.model_dump(mode="json"), ensure_ascii=False)
        assert embedder.count_tokens(page) <= outcome.tokens <= 420
        seen += [hit.chunk_id for hit in outcome.result.hits]
        cursor = outcome.result.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) > 4


@pytest.mark.parametrize(("neighbors", "max_tokens"), [(0, 4000), (3, 4000), (3, 600), (5, 300), (0, 260)])
def test_fetch_reports_its_exact_size_within_budget(
    service: DocService, embedder: Embedder, neighbors: int, max_tokens: int
) -> None:
    hit = service.search(ACCESS, "site build templates themes", k=1, max_tokens=2000).result.hits[0]
    result, size = service.fetch(ACCESS, hit.chunk_id, neighbors=neighbors, max_tokens=max_tokens)
    exact = embedder.count_tokens(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
    assert size == exact <= max_tokens
    assert result.chunk.chunk_id == hit.chunk_id


def test_fetch_too_small_for_the_metadata_names_the_minimum(service: DocService) -> None:
    hit = service.search(ACCESS, "themes", k=1, max_tokens=2000).result.hits[0]
    with pytest.raises(InvalidArgument, match=r"use at least \d+"):
        service.fetch(ACCESS, hit.chunk_id, max_tokens=40)
