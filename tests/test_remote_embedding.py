"""The OpenAI-compatible embedding backend against a real HTTP server on 127.0.0.1 (`tests/fake_services.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder, load_embedder
from indexer.embedding.remote import RemoteEmbedder
from indexer.errors import EmbeddingServiceFailed
from indexer.settings import EmbeddingSettings, RemoteEmbeddingSettings
from server.retrieval.catalog import Catalog
from server.retrieval.service import Access, DocService
from server.runtime import build_runtime
from server.settings import ServerSettings
from tests.conftest import FIXTURE_CORPUS, settings_for
from tests.fake_services import FakeServices, Reply
from tests.mcp_harness import call, call_error, stdio_session

ACCESS = Access(tenant="default", allowed=lambda name: True)
TEXTS = [f"How do I configure feature number {i} of the cache?" for i in range(10)]


@pytest.fixture
def fake(embedder: Embedder) -> Iterator[FakeServices]:
    with FakeServices(embedder) as running:
        yield running


@pytest.fixture
def make_remote() -> Iterator[Callable[[EmbeddingSettings], RemoteEmbedder]]:
    """RemoteEmbedders closed after the test (each holds a connection pool)."""
    made: list[RemoteEmbedder] = []

    def make(settings: EmbeddingSettings) -> RemoteEmbedder:
        made.append(RemoteEmbedder(settings))
        return made[-1]

    yield make
    for remote in made:
        remote.close()


def remote_settings(url: str, **remote: object) -> EmbeddingSettings:
    values: dict[str, object] = {
        "url": url,
        "dimension": 384,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 5.0,
        "query_timeout_s": 1.0,
    }
    values.update(remote)
    return EmbeddingSettings(
        provider="openai", model="fake-minilm", remote=RemoteEmbeddingSettings.model_validate(values)
    )


def test_remote_vectors_match_the_model_behind_the_api_in_order_and_in_batches(
    fake, embedder, monkeypatch, make_remote
):
    monkeypatch.setenv("FAKE_EMBED_KEY", "sk-test-123")
    remote = make_remote(
        remote_settings(fake.url + "/v1", batch_size=3, api_key_env="FAKE_EMBED_KEY", price_per_mtok=0.02)
    )
    vectors = remote.embed_passages(TEXTS)
    assert np.allclose(vectors, embedder.embed_passages(TEXTS), atol=1e-5)
    assert fake.paths() == ["/v1/embeddings"] * 4  # 10 texts in batches of 3
    assert sorted(len(r.body["input"]) for r in fake.requests) == [1, 3, 3, 3]
    assert {r.body["model"] for r in fake.requests} == {"fake-minilm"}
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer sk-test-123"}
    expected_tokens = sum(embedder.count_tokens(t) for t in TEXTS)
    assert remote.tokens_billed == expected_tokens
    assert remote.cost_usd == pytest.approx(expected_tokens * 0.02 / 1_000_000)


@pytest.mark.parametrize("concurrency", [2, 4])
def test_batches_run_concurrently_up_to_the_limit(fake, make_remote, concurrency):
    delay = 1.0
    fake.default = Reply(delay_s=delay)
    remote = make_remote(remote_settings(fake.url + "/v1", batch_size=2, concurrency=concurrency))
    remote.embed_passages(TEXTS[:8])  # 4 batches, each answered after `delay`
    arrivals = sorted(r.received_at for r in fake.requests)
    first = arrivals[0]
    # Requests that arrived before any reply could have been sent were in flight together.
    together = sum(1 for t in arrivals if t - first < delay)
    assert together == concurrency, arrivals


def test_429_with_retry_after_is_honoured_then_succeeds(fake, embedder, make_remote):
    fake.script(Reply(status=429, retry_after="0.3"))
    remote = make_remote(remote_settings(fake.url + "/v1"))
    vectors = remote.embed_passages(TEXTS[:2])
    remote.close()
    assert np.allclose(vectors, embedder.embed_passages(TEXTS[:2]), atol=1e-5)
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.3


def test_retry_after_beyond_the_cap_gives_up_at_once(fake, make_remote):
    fake.script(Reply(status=429, retry_after="120"))
    remote = make_remote(remote_settings(fake.url + "/v1", retry_after_cap_s=5))
    with pytest.raises(EmbeddingServiceFailed, match="HTTP 429 after 1 attempts"):
        remote.embed_passages(TEXTS[:2])
    assert len(fake.requests) == 1


def test_500_is_retried_and_a_persistent_500_fails_with_one_line(fake, make_remote):
    fake.script(Reply(status=500), Reply(status=503))
    remote = make_remote(remote_settings(fake.url + "/v1", max_retries=2))
    assert remote.embed_passages(TEXTS[:1]).shape == (1, 384)
    assert len(fake.requests) == 3

    fake.default = Reply(status=500)
    with pytest.raises(EmbeddingServiceFailed) as raised:
        remote.embed_passages(TEXTS[:1])
    message = str(raised.value)
    assert "HTTP 500 after 3 attempts" in message and "\n" not in message
    assert len(fake.requests) == 6


def test_a_client_error_is_not_retried(fake, make_remote):
    fake.script(Reply(status=401, raw_body=json.dumps({"error": {"message": "Incorrect API key"}})))
    remote = make_remote(remote_settings(fake.url + "/v1"))
    with pytest.raises(EmbeddingServiceFailed, match="HTTP 401: Incorrect API key"):
        remote.embed_passages(TEXTS[:1])
    assert len(fake.requests) == 1


def test_vectors_of_the_wrong_dimension_are_refused(fake, make_remote):
    fake.script(Reply(dimension=512))
    remote = make_remote(remote_settings(fake.url + "/v1"))
    with pytest.raises(
        EmbeddingServiceFailed, match=r"512 dimensions but embedding\.remote\.dimension is 384"
    ):
        remote.embed_passages(TEXTS[:2])


def test_a_query_that_hangs_past_the_timeout_fails_within_the_budget(fake, make_remote):
    fake.default = Reply(delay_s=20)
    remote = make_remote(remote_settings(fake.url + "/v1", query_timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(EmbeddingServiceFailed, match=r"0\.5s"):
        remote.embed_query("configure the cache")
    assert time.monotonic() - started < 5  # the budget, not the 20 s hang


def test_a_missing_api_key_variable_is_a_clear_error(fake, monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(EmbeddingServiceFailed, match="NO_SUCH_KEY, which is not set"):
        load_embedder(remote_settings(fake.url + "/v1", api_key_env="NO_SUCH_KEY"), Path("unused"))


def test_remote_provider_requires_a_dimension():
    with pytest.raises(ValueError, match=r"embedding.remote.dimension is required"):
        EmbeddingSettings(provider="openai", model="x")


def _build_remote(data_dir: Path, model_dir: Path, url: str):
    remote = RemoteEmbedder(remote_settings(url, price_per_mtok=0.1))
    settings = settings_for(data_dir, model_dir)
    try:
        summary = build_collection(
            settings, BuildRequest(collection="lumen", source=FIXTURE_CORPUS, version="1.0"), embedder=remote
        )
    finally:
        remote.close()
    return summary


def test_a_build_through_the_api_reports_usage_and_searches_like_the_local_model(
    fake, tmp_path, model_dir, embedder, lumen_data_dir, make_remote
):
    data_dir = tmp_path / "remote-data"
    summary = _build_remote(data_dir, model_dir, fake.url + "/v1")
    assert summary.embedding_backend == "openai"
    assert summary.embedding_tokens > 0
    assert summary.embedding_cost_usd == pytest.approx(summary.embedding_tokens * 0.1 / 1_000_000, abs=1e-6)
    manifest = gens.read_manifest(gens.generation_dir(data_dir / "collections", "lumen", 1))
    assert (manifest.embedding_backend, manifest.embedding_model, manifest.embedding_dimension) == (
        "openai",
        "fake-minilm",
        384,
    )

    remote = make_remote(remote_settings(fake.url + "/v1"))
    settings = settings_for(data_dir, model_dir)
    service = DocService(settings, Catalog(settings, remote.config, interval=3600), remote, b"k" * 32)
    local = DocService(
        settings_for(lumen_data_dir, model_dir),
        Catalog(settings_for(lumen_data_dir, model_dir), embedder.config, interval=3600),
        embedder,
        b"k" * 32,
    )
    question = "how do I make responses faster with caching"
    via_api = service.search(ACCESS, question, k=5).result
    in_process = local.search(ACCESS, question, k=5).result
    assert [h.chunk_id for h in via_api.hits] == [h.chunk_id for h in in_process.hits]
    assert not via_api.degraded

    fake.default = Reply(delay_s=20)  # the API hangs: keyword results, flagged
    started = time.monotonic()
    # A new question: the one above is in the query-vector cache and would not reach the API.
    degraded = service.search(ACCESS, "where are cached responses stored", k=5).result
    assert time.monotonic() - started < 8  # the 1 s query budget, not the 20 s hang
    assert degraded.degraded and degraded.hits
    assert "semantic search skipped" in degraded.degraded_reasons[0]
    assert all(h.dense_rank is None and h.bm25_rank is not None for h in degraded.hits)
    remote.close()


def test_closing_the_runtime_releases_the_remote_embedders_pool_and_a_later_runtime_reopens_it(
    fake, tmp_path, model_dir
):
    data_dir = tmp_path / "remote-data"
    _build_remote(data_dir, model_dir, fake.url + "/v1")
    embedding = remote_settings(fake.url + "/v1").model_copy(update={"model_dir": model_dir})
    settings = ServerSettings.load(None, data_dir=data_dir, embedding=embedding)

    async def search_then_close(query: str) -> tuple[RemoteEmbedder, bool]:
        runtime = build_runtime(settings)
        try:
            result = runtime.service.search(ACCESS, query, k=3).result
        finally:
            await runtime.aclose()
        assert isinstance(runtime.embedder, RemoteEmbedder) and result.hits
        return runtime.embedder, result.degraded

    first, degraded = anyio.run(search_then_close, "configure the cache")
    assert first.is_closed and not degraded
    # The embedder is shared per process: a second runtime gets it back and opens a new pool
    # (a closed pool would fail the query embedding and leave keyword-only, degraded results).
    second, degraded = anyio.run(search_then_close, "where are cached responses stored")
    assert second is first and second.is_closed and not degraded


def test_the_server_searches_through_the_api_and_flags_keyword_only_results_when_it_is_down(
    fake, tmp_path, model_dir
):
    data_dir = tmp_path / "remote-data"
    _build_remote(data_dir, model_dir, fake.url + "/v1")
    env = {
        "DOCGATE_EMBEDDING__PROVIDER": "openai",
        "DOCGATE_EMBEDDING__MODEL": "fake-minilm",
        "DOCGATE_EMBEDDING__REMOTE__URL": fake.url + "/v1",
        "DOCGATE_EMBEDDING__REMOTE__DIMENSION": "384",
        "DOCGATE_EMBEDDING__REMOTE__QUERY_TIMEOUT_S": "0.5",
    }

    async def main() -> tuple[dict[str, Any], dict[str, Any], str]:
        async with stdio_session(data_dir, **env) as session:
            healthy = await call(session, "search", query="configure the cache")
            fake.default = Reply(status=503)
            down = await call(session, "search", query="cache settings")  # not in the query-vector cache
            # An answer needs the question's vector (cache, grounding): a clear tool error, not "internal".
            answer_error = await call_error(
                session, "grounded_answer", question="How do I configure the cache?"
            )
            return healthy, down, answer_error

    healthy, down, answer_error = anyio.run(main)
    assert "embedding service" in answer_error and "HTTP 503" in answer_error
    assert healthy["hits"] and healthy["degraded"] is False
    assert any(h["dense_rank"] is not None for h in healthy["hits"])
    assert down["hits"] and down["degraded"] is True
    reasons = down["degraded_reasons"]
    assert isinstance(reasons, list) and "HTTP 503" in reasons[0]
    assert "/v1/embeddings" in fake.paths()[-1]


def test_a_build_whose_api_is_down_exits_with_one_line_and_publishes_nothing(tmp_path, isolated_env):
    env = {
        **os.environ,
        "DOCGATE_EMBEDDING__PROVIDER": "openai",
        "DOCGATE_EMBEDDING__MODEL": "fake-minilm",
        "DOCGATE_EMBEDDING__REMOTE__URL": "http://127.0.0.1:9/v1",  # nothing listens there
        "DOCGATE_EMBEDDING__REMOTE__DIMENSION": "384",
        "DOCGATE_EMBEDDING__REMOTE__MAX_RETRIES": "1",
        "DOCGATE_EMBEDDING__REMOTE__BACKOFF_BASE_S": "0.01",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "indexer.cli",
            "build",
            "--collection",
            "lumen",
            "--source",
            str(FIXTURE_CORPUS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 10
    lines = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "embedding service http://127.0.0.1:9/v1/embeddings failed" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (isolated_env / "collections" / "lumen" / "CURRENT").exists()
