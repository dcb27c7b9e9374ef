"""`k` means k: a search fills its page whenever the scope holds enough distinct chunks, even when a
few large pages hold them all, and cursors walk the whole result list once, without repeats or gaps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from indexer.models import Chunk
from server.retrieval.budget import to_json
from server.retrieval.selection import Fused, select
from server.retrieval.service import Access, DocService
from tests.conftest import open_service, settings_for

ACCESS = Access(tenant="default", allowed=lambda name: True)
PAGES = ("Caching", "Routing", "Templates")
SECTIONS = 30
WORDS = [
    "alpha",
    "bravo",
    "cobalt",
    "delta",
    "ember",
    "falcon",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lagoon",
    "meadow",
    "nimbus",
    "onyx",
    "prairie",
    "quartz",
    "raven",
    "sierra",
    "tundra",
    "umber",
    "violet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]


def _section(page: int, number: int) -> str:
    """About 90 tokens of prose unique to one section (its own words), on the page's topic."""
    own = [WORDS[(number * 7 + page * 3 + i) % len(WORDS)] for i in range(6)]
    return (
        f"This part of the {PAGES[page].lower()} guide covers configuration step {number}. "
        f"It explains how the server handles the {own[0]} setting together with the {own[1]} option, "
        f"why the {own[2]} backend reads the {own[3]} value at startup, and what happens when the "
        f"{own[4]} flag is missing. Step {number} of {PAGES[page].lower()} setup also lists the "
        f"defaults, the environment variable {PAGES[page].upper()}_STEP_{number}_{own[5].upper()}, "
        f"and a short example that shows the setting in a configuration file for step {number}."
    )


@pytest.fixture(scope="module")
def big_pages(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> Path:
    """3 pages × 30 sections, each section its own chunk; built once for the module."""
    source = tmp_path_factory.mktemp("big-pages")
    for page, title in enumerate(PAGES):
        body = [f"# {title} guide\n"]
        for number in range(1, SECTIONS + 1):
            body.append(f"## {title} step {number}\n\n{_section(page, number)}\n")
        (source / f"{title.lower()}.md").write_text("\n".join(body), encoding="utf-8")
    data_dir = tmp_path_factory.mktemp("big-pages-data")
    request = BuildRequest(collection="big", source=source, version="1.0")
    build_collection(settings_for(data_dir, model_dir), request, embedder=embedder)
    return data_dir


@pytest.fixture(scope="module")
def service(big_pages: Path, model_dir: Path, embedder: Embedder) -> DocService:
    return open_service(big_pages, model_dir, embedder)


def _all_chunk_ids(service: DocService) -> set[str]:
    return service.catalog.view().snapshots["big"].lexical.chunk_ids()


def test_fixture_puts_every_section_in_its_own_chunk(service: DocService) -> None:
    assert len(_all_chunk_ids(service)) == len(PAGES) * SECTIONS


@pytest.mark.parametrize("query", ["configuration step setting", "how do I set the default option?"])
def test_search_k10_on_three_large_pages_returns_ten_hits(service: DocService, query: str) -> None:
    outcome = service.search(ACCESS, query, k=10, max_tokens=20_000)
    hits = outcome.result.hits
    assert len(hits) == 10
    assert len({hit.chunk_id for hit in hits}) == 10
    assert outcome.result.next_cursor is not None, "80 more chunks exist: the page must say so"
    assert outcome.result.truncated is False
    # The per-page cap still shapes the head: two hits from each page before any page gets a third.
    head_pages = [hit.source.split("#")[0] for hit in hits[: 2 * len(PAGES)]]
    assert sorted(head_pages.count(page) for page in set(head_pages)) == [2, 2, 2]


@pytest.mark.parametrize("k", [7, 10, 50])
def test_cursor_walk_visits_every_chunk_exactly_once(service: DocService, k: int) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        outcome = service.search(ACCESS, "configuration step setting", k=k, max_tokens=20_000, cursor=cursor)
        page = [hit.chunk_id for hit in outcome.result.hits]
        assert page, "a cursor never leads to an empty page"
        if outcome.result.next_cursor is not None:
            assert len(page) == k, "every page but the last is full"
        seen += page
        cursor = outcome.result.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "no chunk twice"
    assert set(seen) == _all_chunk_ids(service), "no chunk left out"


def test_result_list_for_a_smaller_depth_is_a_prefix_of_a_deeper_one(service: DocService) -> None:
    def ids(depth: int) -> list[str]:
        result, _ = service.retrieve(ACCESS, "which flag is missing at startup", depth=depth)
        return [c.chunk.chunk_id for c in result.candidates]

    deepest = ids(91)
    assert len(deepest) == len(PAGES) * SECTIONS
    for depth in (1, 5, 10, 24, 49, 60, 90):
        assert ids(depth) == deepest[:depth]


def test_path_prefix_scope_with_fewer_chunks_than_k_returns_them_all(service: DocService) -> None:
    outcome = service.search(ACCESS, "configuration step", path_prefix="routing.md", k=50, max_tokens=20_000)
    assert len(outcome.result.hits) == 30
    assert {hit.source.split("#")[0] for hit in outcome.result.hits} == {"routing.md"}
    first = service.search(ACCESS, "configuration step", path_prefix="routing.md", k=25, max_tokens=20_000)
    remaining = service.search(
        ACCESS,
        "configuration step",
        path_prefix="routing.md",
        k=25,
        max_tokens=20_000,
        cursor=first.result.next_cursor,
    )
    assert len(remaining.result.hits) == 5
    assert remaining.result.next_cursor is None


# ---------------------------------------------------------------- the selection walk in isolation


def _chunk(number: int, path: str, text: str | None = None) -> Chunk:
    return Chunk(
        chunk_id=f"{number:032x}",
        collection="c",
        version="1",
        path=path,
        title=path,
        heading_path=[],
        text=text if text is not None else f"passage number {number}",
        ordinal=0,
        position=number,
        doc_hash="d",
        text_hash=str(number),
    )


def _walk(chunks: list[Chunk], depth: int, cap: int = 2, tiers: int = 1) -> list[int]:
    store = {c.chunk_id: c for c in chunks}
    ranking = [Fused(chunk_id=c.chunk_id, score=1.0 / (i + 1)) for i, c in enumerate(chunks)]
    split = len(ranking) // tiers
    parts = [ranking[i * split : (i + 1) * split] for i in range(tiers)]
    chosen = select(parts, lambda ids: {i: store[i] for i in ids}, depth=depth, cap=cap)
    return [c.chunk.position for c in chosen]


def test_cap_holds_while_other_pages_can_fill_the_list() -> None:
    chunks = [_chunk(0, "a"), _chunk(1, "a"), _chunk(2, "a"), _chunk(3, "b"), _chunk(4, "b"), _chunk(5, "c")]
    assert _walk(chunks, depth=5) == [0, 1, 3, 4, 5]


def test_cap_gives_way_in_fused_order_when_the_pages_run_dry() -> None:
    chunks = [_chunk(0, "a"), _chunk(1, "a"), _chunk(2, "a"), _chunk(3, "b"), _chunk(4, "a"), _chunk(5, "b")]
    assert _walk(chunks, depth=6) == [0, 1, 3, 5, 2, 4]


def test_duplicate_texts_never_fill_a_list() -> None:
    chunks = [
        _chunk(0, "a", "Same  note"),
        _chunk(1, "b", "same note"),
        _chunk(2, "c", "SAME NOTE"),
        _chunk(3, "d"),
    ]
    assert _walk(chunks, depth=4) == [0, 3]


def test_deeper_tiers_are_read_only_when_needed() -> None:
    consumed: list[int] = []
    store = {c.chunk_id: c for c in [_chunk(n, f"p{n}") for n in range(6)]}

    def tiers() -> Iterator[list[Fused]]:
        for number, ids in enumerate([[0, 1, 2], [3, 4, 5]]):
            consumed.append(number)
            yield [Fused(chunk_id=f"{i:032x}", score=1.0) for i in ids]

    resolve = lambda ids: {i: store[i] for i in ids}  # noqa: E731
    assert len(select(tiers(), resolve, depth=3, cap=2)) == 3
    assert consumed == [0]
    consumed.clear()
    assert len(select(tiers(), resolve, depth=4, cap=2)) == 4
    assert consumed == [0, 1]


def test_a_held_back_chunk_comes_before_the_next_tier() -> None:
    chunks = [_chunk(0, "a"), _chunk(1, "a"), _chunk(2, "a"), _chunk(3, "b"), _chunk(4, "c"), _chunk(5, "d")]
    assert _walk(chunks, depth=5, tiers=2) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- query vectors


def test_query_vectors_equal_document_vectors_and_come_from_the_cache(embedder: Embedder) -> None:
    marker = uuid.uuid4().hex[:8]  # texts no other test embedded: the first call cannot hit the cache
    texts = [f"How do I cache page {marker}?", f"select_related_{marker}", f"How do I cache page {marker}?"]
    expected = embedder.embed(texts)
    hits_before = embedder.query_cache_hits
    first = embedder.embed_queries(texts)
    np.testing.assert_allclose(first, expected, atol=1e-5)
    assert embedder.query_cache_hits == hits_before
    first[:] = 0.0  # the caller owns its copy: the cache must not change
    again = embedder.embed_queries(texts[:2])
    np.testing.assert_allclose(again, expected[:2], atol=1e-5)
    assert embedder.query_cache_hits - hits_before >= 2
    # By default searches run the published model, so an exact query is the same cached vector.
    hits_before = embedder.query_cache_hits
    exact = embedder.embed_queries(texts[:2], exact=True)
    np.testing.assert_allclose(exact, expected[:2], atol=1e-5)
    assert embedder.query_cache_hits - hits_before == 2


# ---------------------------------------------------------------- response budget


def test_cached_hit_costs_equal_a_full_count(service: DocService, embedder: Embedder) -> None:
    outcome = service.search(ACCESS, "which flag is missing at startup", k=10, max_tokens=20_000)
    tricky = outcome.result.hits[0].model_copy(
        update={"title": 'Quotes, "snippet": and\\ escapes — déjà vu', "heading_path": ['a "b"', "ß"]}
    )
    texts = [to_json(hit) for hit in [*outcome.result.hits, tricky]]
    exact = [embedder.count_tokens(text) for text in texts]
    assert service.budget.hit_costs(texts) == exact  # cold: prefixes counted and kept
    assert service.budget.hit_costs(texts) == exact  # warm: prefixes from the cache


@pytest.mark.parametrize("max_tokens", [1, 5, 24, 60, 61, 200])
def test_truncating_the_head_of_a_long_text_cuts_where_the_whole_text_would(
    embedder: Embedder, max_tokens: int
) -> None:
    texts = [
        _section(0, 3) * 4,
        "x" * 3000,  # one very long word: the head alone cannot decide
        ("internationalization " * 300).strip(),
        "déjà-vu, naïve café; " * 200,
    ]
    for text in texts:
        encoding = embedder._counter.encode(text, add_special_tokens=False)
        expected = text[: encoding.offsets[max_tokens - 1][1]] if len(encoding.ids) > max_tokens else text
        assert embedder.truncate_to_tokens(text, max_tokens) == expected


def test_deeper_search_shows_as_its_own_span(service: DocService) -> None:
    shallow, _ = service.retrieve(ACCESS, "configuration step setting", depth=5)
    deep, _ = service.retrieve(ACCESS, "configuration step setting", depth=91)
    assert "deepen" not in shallow.timings_ms
    assert deep.timings_ms["deepen"] > 0 and deep.timings_ms["fuse"] >= 0


def test_engine_filters_keep_only_conditions_that_exclude_something() -> None:
    from types import SimpleNamespace

    from indexer.models import ChunkFilter
    from server.retrieval.hybrid import engine_filter

    def snapshot(*versions: str) -> Any:
        return SimpleNamespace(collection="docs", manifest=SimpleNamespace(versions=list(versions)))

    one = snapshot("3.2")
    assert engine_filter(ChunkFilter(collections=("docs",), version="3.2"), one) == ChunkFilter()
    assert engine_filter(ChunkFilter(collections=("docs",), versions=("3.2", "4.0")), one) == ChunkFilter()
    # Another collection, a version the generation lacks, one version among several: kept.
    assert engine_filter(ChunkFilter(collections=("other",)), one).collections == ("other",)
    assert engine_filter(ChunkFilter(version="4.0"), one).version == "4.0"
    several = snapshot("3.2", "4.0")
    assert engine_filter(ChunkFilter(version="3.2"), several).version == "3.2"
    assert engine_filter(ChunkFilter(versions=("3.2",)), several).versions == ("3.2",)
    # A manifest without its version list says nothing about what the chunks carry.
    assert engine_filter(ChunkFilter(version="3.2"), snapshot()).version == "3.2"
    # Path and code conditions always stay.
    kept = engine_filter(ChunkFilter(collections=("docs",), path_prefix="ref", code_only=True), one)
    assert kept == ChunkFilter(path_prefix="ref", code_only=True)
