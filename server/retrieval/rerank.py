"""The optional rerank stage: a cross-encoder reorders the head of the fused list.

Off by default (`[retrieval.rerank] enabled`). Two backends (`backend`):

- `http`: the rerank APIs that hosted and self-hosted rerankers share: Cohere, Jina and vLLM
  (`{"query", "documents"}` → `{"results": [{"index", "relevance_score"}]}`) and Hugging Face TEI
  (`{"query", "texts"}` → `[{"index", "score"}]`).
- `fastembed`: a `TextCrossEncoder` in process (any model fastembed supports). No package ships
  cross-encoder files, so the model is read from `model_dir` or the models cache, and downloaded
  there at server start when `download` is on and a network exists; otherwise the server refuses
  to start with what to do (a search never waits for a download).

A failure never fails the search: past `timeout_s` (retries included) or on any bad reply the
fused order stands and the result says the stage was skipped.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import structlog

from indexer.errors import RerankModelUnavailable
from indexer.retrying import backoff_delay, parse_retry_after, retryable_status
from server.settings import RerankSettings

if TYPE_CHECKING:
    from server.retrieval.selection import Candidate

log = structlog.get_logger()
DEFAULT_CROSS_ENCODER = "Xenova/ms-marco-MiniLM-L-6-v2"


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

    def warm(self) -> None:
        """Nothing to load: the API is asked per search."""

    def rerank(self, query: str, candidates: Sequence[Candidate]) -> RerankOutcome:
        """The first `top_n` candidates in the reranker's order, then the rest in fused order."""
        return reorder(self.settings, query, candidates, self._scores)

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


def reorder(
    settings: RerankSettings,
    query: str,
    candidates: Sequence[Candidate],
    scores_of: Callable[[str, list[str]], list[float]],
) -> RerankOutcome:
    """The first `top_n` candidates by `scores_of(query, texts)`, then the rest in fused order."""
    head, tail = list(candidates[: settings.top_n]), list(candidates[settings.top_n :])
    if len(head) < 2:
        return RerankOutcome(list(candidates))
    try:
        scores = scores_of(query, [c.chunk.embedding_text()[: settings.max_chars] for c in head])
    except RerankFailed as error:
        log.warning("rerank_skipped", reason=str(error))
        return RerankOutcome(list(candidates), failure=str(error))
    order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
    return RerankOutcome([replace(head[i], rerank_score=scores[i]) for i in order] + tail)


class LocalReranker:
    """A fastembed `TextCrossEncoder`, run on one worker thread so a search can stop waiting.

    A cross-encoder cannot be interrupted mid-batch: past `timeout_s` the search goes on in fused
    order and the batch finishes on its own, behind which the next search's batch queues.
    """

    def __init__(self, settings: RerankSettings, models_dir: Path | None) -> None:
        self.settings = settings
        self.model_name = settings.model or DEFAULT_CROSS_ENCODER
        self.cache_dir = (models_dir / "fastembed") if models_dir is not None else None
        self._model: Any = None
        self._unavailable: str | None = None
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerank")

    def warm(self, *, allow_download: bool = True) -> None:
        """Load the model now (server start); `RerankModelUnavailable` says what to do if it cannot.

        `allow_download=False` reads only local files, whatever `download` says."""
        with self._lock:
            if self._model is None:
                self._model = self._load(self.settings.download and allow_download)

    def _load(self, download: bool) -> Any:
        from fastembed.rerank.cross_encoder import TextCrossEncoder  # heavy: only when configured

        s = self.settings
        options: dict[str, Any] = {"model_name": self.model_name}
        if self.cache_dir is not None:
            options["cache_dir"] = str(self.cache_dir)
        if s.model_dir is not None:
            options["specific_model_path"] = str(s.model_dir)
        attempts = [True, False] if download and s.model_dir is None else [True]
        for local_only in attempts:
            try:
                return TextCrossEncoder(**options, local_files_only=local_only)
            except Exception as error:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        where = (
            f"retrieval.rerank.model_dir {s.model_dir}"
            if s.model_dir
            else f"the models cache {self.cache_dir}"
        )
        advice = (
            "check the folder holds the model's ONNX and tokenizer files"
            if s.model_dir
            else "start once where the network reaches Hugging Face (the files are cached), "
            "or put the files in a folder and set retrieval.rerank.model_dir"
            + ("" if download else "; no download was tried")
        )
        raise RerankModelUnavailable(
            f"the cross-encoder {self.model_name} is not in {where} and could not be loaded ({reason}); {advice}"
        )

    def rerank(self, query: str, candidates: Sequence[Candidate]) -> RerankOutcome:
        return reorder(self.settings, query, candidates, self._scores)

    def _scores(self, query: str, documents: list[str]) -> list[float]:
        if self._model is None:
            if self._unavailable is not None:
                raise RerankFailed(self._unavailable)
            try:  # a service without a runtime (scripts, evals): load on first use, never downloading
                self.warm(allow_download=False)
            except RerankModelUnavailable as error:
                self._unavailable = str(error)
                raise RerankFailed(self._unavailable) from None
        model = self._model
        future = self._worker.submit(lambda: [float(x) for x in model.rerank(query, documents)])
        try:
            scores = future.result(timeout=self.settings.timeout_s)
        except FutureTimeout:
            raise RerankFailed(f"local reranker took longer than {self.settings.timeout_s:g}s") from None
        except Exception as error:
            raise RerankFailed(f"local reranker failed ({type(error).__name__})") from None
        if len(scores) != len(documents):
            raise RerankFailed(f"local reranker scored {len(scores)} of {len(documents)} documents")
        return scores

    def close(self) -> None:
        self._worker.shutdown(wait=False)


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


_shared: dict[str, Reranker | LocalReranker] = {}
_shared_lock = threading.Lock()


def shared_reranker(settings: RerankSettings, models_dir: Path | None = None) -> Reranker | LocalReranker:
    """One reranker per configuration and process. The server creates it at start with its models
    dir (so a local model loads before the first search); later calls get that same one."""
    key = settings.model_dump_json()
    with _shared_lock:
        reranker = _shared.get(key)
        if reranker is None:
            reranker = _shared[key] = (
                LocalReranker(settings, models_dir) if settings.backend == "fastembed" else Reranker(settings)
            )
        return reranker
