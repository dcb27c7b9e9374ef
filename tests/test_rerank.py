"""The optional rerank stage against a real HTTP rerank server on 127.0.0.1 (`tests/fake_services.py`)."""

from __future__ import annotations

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
