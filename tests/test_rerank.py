"""The optional rerank stage against a real HTTP rerank server on 127.0.0.1 (`tests/fake_services.py`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.embedding import Embedder
from server.retrieval.catalog import Catalog
from server.retrieval.rerank import Reranker
from server.retrieval.service import Access, DocService, SearchResult
from server.settings import RerankSettings, RetrievalSettings
from tests.conftest import settings_for
from tests.fake_services import FakeServices, Reply
from tests.mcp_harness import server_env

ACCESS = Access(tenant="default", allowed=lambda name: True)
QUESTION = "how do I configure the cache"


@pytest.fixture
def fake(embedder: Embedder) -> Iterator[FakeServices]:
    with FakeServices(embedder) as running:
        yield running


def service(data_dir: Path, model_dir: Path, embedder: Embedder, **rerank: object) -> DocService:
    retrieval = (
        RetrievalSettings(rerank=RerankSettings.model_validate(rerank)) if rerank else RetrievalSettings()
    )
    settings = settings_for(data_dir, model_dir, retrieval=retrieval)
    return DocService(settings, Catalog(settings, embedder.config, interval=3600), embedder, b"k" * 32)


def search(svc: DocService, k: int = 8) -> SearchResult:
    return svc.search(ACCESS, QUESTION, k=k, max_tokens=20000).result


def test_rerank_is_off_by_default(lumen_data_dir, model_dir, embedder, fake):
    result = search(service(lumen_data_dir, model_dir, embedder))
    assert result.hits and not result.degraded
    assert fake.requests == []


@pytest.mark.parametrize("api", ["cohere", "tei"])
def test_the_head_of_the_fused_list_takes_the_rerankers_order(lumen_data_dir, model_dir, embedder, fake, api):
    fused = search(service(lumen_data_dir, model_dir, embedder), k=10)
    reranked = search(
        service(
            lumen_data_dir, model_dir, embedder, enabled=True, url=fake.url + "/rerank", api=api, top_n=6
        ),
        k=10,
    )
    (request,) = fake.requests
    sent = request.body["documents" if api == "cohere" else "texts"]
    assert request.body["query"] == QUESTION and len(sent) == 6
    # The fake prefers shorter documents: the first six hits come back shortest first, the rest as fused.
    lengths = {h.chunk_id: len(d) for h, d in zip(fused.hits[:6], sent, strict=True)}
    head = [h.chunk_id for h in reranked.hits[:6]]
    assert sorted(head) == sorted(lengths)
    assert [lengths[c] for c in head] == sorted(lengths.values())
    assert head != [h.chunk_id for h in fused.hits[:6]], "the fake's order should differ from fusion's here"
    assert [h.chunk_id for h in reranked.hits[6:]] == [h.chunk_id for h in fused.hits[6:]]
    assert not reranked.degraded
    # The stage is timed in the retrieval's spans (what traces report).
    traced = service(
        lumen_data_dir, model_dir, embedder, enabled=True, url=fake.url + "/rerank", api=api, top_n=6
    ).search(ACCESS, QUESTION, k=10, max_tokens=20000)
    assert traced.retrieval.timings_ms["rerank"] > 0
    assert (
        "rerank"
        not in service(lumen_data_dir, model_dir, embedder)
        .search(ACCESS, QUESTION, k=10, max_tokens=20000)
        .retrieval.timings_ms
    )
    # Each reordered hit carries the reranker's score beside its retriever ranks; the rest none.
    assert [h.rerank_score for h in reranked.hits[:6]] == [-float(lengths[c]) for c in head]
    assert all(h.rerank_score is None for h in reranked.hits[6:] + fused.hits)
    assert all(h.bm25_rank is not None or h.dense_rank is not None for h in reranked.hits)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(delay_s=20), "no answer within 0.5s"),
        (Reply(status=500), "HTTP 500"),
        (Reply(status=400), "HTTP 400"),
        (Reply(raw_body='{"unexpected": true}'), "not a rerank response"),
    ],
)
def test_a_failing_reranker_keeps_the_fused_order_and_says_so(
    lumen_data_dir, model_dir, embedder, fake, reply, reason
):
    fused = search(service(lumen_data_dir, model_dir, embedder))
    fake.default = reply
    svc = service(
        lumen_data_dir,
        model_dir,
        embedder,
        enabled=True,
        url=fake.url + "/rerank",
        timeout_s=0.5,
        backoff_base_s=0.01,
    )
    started = time.monotonic()
    result = search(svc)
    assert time.monotonic() - started < 8  # the 0.5 s budget, not a 20 s hang
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in fused.hits]
    assert result.degraded
    assert reason in result.degraded_reasons[0] and "fused order kept" in result.degraded_reasons[0]


def test_pages_stay_consistent_with_reranking(lumen_data_dir, model_dir, embedder, fake):
    svc = service(lumen_data_dir, model_dir, embedder, enabled=True, url=fake.url + "/rerank", top_n=10)
    whole = svc.search(ACCESS, QUESTION, k=8, max_tokens=20000).result
    first = svc.search(ACCESS, QUESTION, k=4, max_tokens=20000).result
    assert first.next_cursor is not None
    second = svc.search(ACCESS, QUESTION, k=4, max_tokens=20000, cursor=first.next_cursor).result
    assert [h.chunk_id for h in first.hits + second.hits] == [h.chunk_id for h in whole.hits]


def test_a_reply_that_scores_only_some_documents_is_refused(fake, embedder, lumen_data_dir, model_dir):
    fake.default = Reply(raw_body='{"results": [{"index": 0, "relevance_score": 1.0}]}')
    reranker = Reranker(RerankSettings(enabled=True, url=fake.url + "/rerank"))
    svc = service(lumen_data_dir, model_dir, embedder)
    candidates = svc.retrieve(ACCESS, QUESTION, collections=None, version=None, depth=5)[0].candidates
    outcome = reranker.rerank(QUESTION, candidates)
    reranker.close()
    assert outcome.failure == "reranker scored 1 of 5 documents"
    assert outcome.candidates == candidates


# ----------------------------------------------------------------------------- local cross-encoder


def test_a_local_cross_encoder_that_is_not_cached_stops_the_server_with_what_to_do(lumen_data_dir, tmp_path):
    """Offline and not cached: `docgate serve` exits 6 with one line naming the model and the fix,
    before any client connects (no search ever waits for a download)."""
    data_dir = tmp_path / "data"
    shutil.copytree(lumen_data_dir, data_dir)
    env = server_env(
        data_dir,
        DOCGATE_RETRIEVAL__RERANK__ENABLED="true",
        DOCGATE_RETRIEVAL__RERANK__BACKEND="fastembed",
        DOCGATE_RETRIEVAL__RERANK__DOWNLOAD="false",
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--stdio"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 6, done.stderr
    assert time.monotonic() - started < 60
    assert "Xenova/ms-marco-MiniLM-L-6-v2" in done.stderr
    assert "retrieval.rerank.model_dir" in done.stderr and "no download was tried" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_search_without_a_loadable_cross_encoder_keeps_the_fused_order_and_says_why(
    lumen_data_dir, model_dir, embedder
):
    fused = search(service(lumen_data_dir, model_dir, embedder))
    # `download` left on: a search still never waits for one (offline, fastembed's retries take 40 s).
    svc = service(
        lumen_data_dir,
        model_dir,
        embedder,
        enabled=True,
        backend="fastembed",
        model="Xenova/ms-marco-MiniLM-L-12-v2",
    )
    for _ in range(2):  # the second search does not try to load again
        started = time.monotonic()
        result = search(svc)
        assert time.monotonic() - started < 15
        assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in fused.hits]
        assert result.degraded and "ms-marco-MiniLM-L-12-v2" in result.degraded_reasons[0]


class _SlowCrossEncoder:
    """Stands in for a loaded `TextCrossEncoder` (no cross-encoder files ship to run offline)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def rerank(self, query: str, documents: list[str]) -> list[float]:
        time.sleep(self.delay_s)
        return [-float(len(d)) for d in documents]


def test_the_local_cross_encoder_orders_the_head_and_a_slow_one_is_abandoned_at_the_budget(
    lumen_data_dir, model_dir, embedder
):
    from server.retrieval.rerank import LocalReranker, shared_reranker

    settings = RerankSettings(
        enabled=True, backend="fastembed", model="local/test-order", timeout_s=0.5, top_n=5
    )
    local = shared_reranker(settings)
    assert isinstance(local, LocalReranker)
    local._model = _SlowCrossEncoder(0.0)
    fused = search(service(lumen_data_dir, model_dir, embedder), k=8)
    svc = service(lumen_data_dir, model_dir, embedder, **settings.model_dump(exclude={"model_dir"}))
    ranked = search(svc, k=8)
    assert {h.chunk_id for h in ranked.hits[:5]} == {h.chunk_id for h in fused.hits[:5]}
    chunks = svc.catalog.view().snapshots["lumen"].lexical.get_many([h.chunk_id for h in ranked.hits[:5]])
    lengths = [len(chunks[h.chunk_id].embedding_text()[: settings.max_chars]) for h in ranked.hits[:5]]
    assert lengths == sorted(lengths)  # the stand-in scores shorter passages higher
    assert [h.chunk_id for h in ranked.hits[5:]] == [h.chunk_id for h in fused.hits[5:]]
    assert not ranked.degraded

    slow = RerankSettings(enabled=True, backend="fastembed", model="local/test-slow", timeout_s=0.3, top_n=5)
    shared = shared_reranker(slow)
    assert isinstance(shared, LocalReranker)
    shared._model = _SlowCrossEncoder(2.0)
    started = time.monotonic()
    late = search(service(lumen_data_dir, model_dir, embedder, **slow.model_dump(exclude={"model_dir"})), k=8)
    assert time.monotonic() - started < 1.8
    assert [h.chunk_id for h in late.hits] == [h.chunk_id for h in fused.hits]
    assert late.degraded and "longer than 0.3s" in late.degraded_reasons[0]
