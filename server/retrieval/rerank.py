"""The optional rerank stage: a remote cross-encoder reorders the head of the fused list.

Off by default (`[retrieval.rerank] enabled`). A local cross-encoder would need model files that no
package ships, so the stage speaks the rerank APIs that hosted and self-hosted rerankers share:
Cohere, Jina and vLLM (`{"query", "documents"}` → `{"results": [{"index", "relevance_score"}]}`) and
Hugging Face TEI (`{"query", "texts"}` → `[{"index", "score"}]`).

A failure never fails the search: past `timeout_s` (retries included) or on any bad reply the
fused order stands and the result says the stage was skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from indexer.retrying import backoff_delay, parse_retry_after, retryable_status
from server.settings import RerankSettings

if TYPE_CHECKING:
    from server.retrieval.selection import Candidate

log = structlog.get_logger()


class RerankFailed(Exception):
    """The reranker gave no usable order; `str()` says why in one line."""


@dataclass
class RerankOutcome:
    candidates: list[Candidate]
    failure: str | None = None  # set when the fused order was kept


class Reranker:
    """One pooled `httpx.Client` per configuration, shared by every search thread."""

    def __init__(self, settings: RerankSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        headers = {"content-type": "application/json"}
        if settings.api_key_env and os.environ.get(settings.api_key_env):
            headers["authorization"] = f"Bearer {os.environ[settings.api_key_env]}"
        self._client = httpx.Client(headers=headers, transport=transport, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def rerank(self, query: str, candidates: Sequence[Candidate]) -> RerankOutcome:
        """The first `top_n` candidates in the reranker's order, then the rest in fused order."""
        head, tail = list(candidates[: self.settings.top_n]), list(candidates[self.settings.top_n :])
        if len(head) < 2:
            return RerankOutcome(list(candidates))
        try:
            scores = self._scores(query, [c.chunk.embedding_text()[: self.settings.max_chars] for c in head])
        except RerankFailed as error:
            log.warning("rerank_skipped", reason=str(error))
            return RerankOutcome(list(candidates), failure=str(error))
        order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
        return RerankOutcome([head[i] for i in order] + tail)

    def _scores(self, query: str, documents: list[str]) -> list[float]:
        s = self.settings
        body: dict[str, Any] = (
            {"query": query, "texts": documents, "raw_scores": False}
            if s.api == "tei"
            else {"query": query, "documents": documents, "top_n": len(documents)}
        )
        if s.model and s.api == "cohere":
            body["model"] = s.model
        deadline = time.monotonic() + s.timeout_s
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RerankFailed(f"reranker gave no answer within {s.timeout_s:g}s")
            retry_after: float | None = None
            try:
                response = self._client.post(s.url, json=body, timeout=httpx.Timeout(left))
            except httpx.TimeoutException:
                raise RerankFailed(f"reranker gave no answer within {s.timeout_s:g}s") from None
            except httpx.TransportError as error:
                reason = f"reranker unreachable ({type(error).__name__})"
            else:
                if response.status_code == 200:
                    return _parse(response, len(documents))
                reason = f"reranker answered HTTP {response.status_code}"
                if not retryable_status(response.status_code):
                    raise RerankFailed(reason)
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            delay = backoff_delay(s, attempt, retry_after)
            if delay is None or time.monotonic() + delay >= deadline:
                raise RerankFailed(reason)
            time.sleep(delay)
            attempt += 1


def _parse(response: httpx.Response, expected: int) -> list[float]:
    try:
        payload: Any = response.json()
        items = payload if isinstance(payload, list) else payload["results"]
        scores: dict[int, float] = {}
        for item in items:
            value = item["relevance_score"] if "relevance_score" in item else item["score"]
            scores[int(item["index"])] = float(value)
    except (ValueError, KeyError, TypeError):
        raise RerankFailed("reranker reply is not a rerank response") from None
    if sorted(scores) != list(range(expected)):
        raise RerankFailed(f"reranker scored {len(scores)} of {expected} documents")
    return [scores[i] for i in range(expected)]


_shared: dict[str, Reranker] = {}
_shared_lock = threading.Lock()


def shared_reranker(settings: RerankSettings) -> Reranker:
    key = settings.model_dump_json()
    with _shared_lock:
        reranker = _shared.get(key)
        if reranker is None:
            reranker = _shared[key] = Reranker(settings)
        return reranker
