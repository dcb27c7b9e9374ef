"""Embeddings from an OpenAI-compatible `/v1/embeddings` API over HTTP.

OpenAI, Azure OpenAI, Ollama, vLLM, LM Studio and Hugging Face TEI all answer
`POST {url}/embeddings {"model", "input": [...]}` with `{"data": [{"index", "embedding"}], "usage"}`.

A build sends batches of `batch_size` texts, `concurrency` at a time, each retried on 429/5xx and
transport errors (`indexer.retrying`). A search query gets one overall `query_timeout_s`, retries
included, so a slow provider costs a search a bounded delay and the caller falls back to BM25.
Every reply's vectors must have the configured dimension: a different model behind the same URL
would otherwise write vectors the index cannot compare.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import httpx
import numpy as np
import structlog
from tokenizers import Tokenizer

from indexer.embedding.base import Embedder, InputKind, Vectors
from indexer.embedding.offline import bundled_tokenizer_path
from indexer.embedding.profiles import profile_for
from indexer.errors import EmbeddingServiceFailed
from indexer.retrying import backoff_delay, parse_retry_after, retryable_status
from indexer.settings import EmbeddingSettings

log = structlog.get_logger()


class RemoteEmbedder(Embedder):
    """One shared `httpx.Client` (thread-safe, pooled) for every request of this embedder.

    `close()` releases the pool; the embedder is shared per process (`shared_embedder`), so a later
    call after a server runtime closed it opens a new pool instead of failing.
    """

    def __init__(self, settings: EmbeddingSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        remote = settings.remote
        if remote.dimension is None:  # the settings validator requires it; kept for type narrowing
            raise EmbeddingServiceFailed("embedding.remote.dimension is required for a remote provider")
        self.settings = settings
        self.remote = remote
        self.model_id = settings.model
        self.dimension = remote.dimension
        self.endpoint = remote.url.rstrip("/") + "/embeddings"
        headers = {"content-type": "application/json"}
        if remote.api_key_env:
            key = os.environ.get(remote.api_key_env)
            if not key:
                raise EmbeddingServiceFailed(
                    f"embedding.remote.api_key_env names {remote.api_key_env}, which is not set"
                )
            headers["authorization"] = f"Bearer {key}"
            headers["api-key"] = key  # Azure OpenAI reads this header instead
        params = {"api-version": remote.api_version} if remote.api_version else None
        self._client_options: dict[str, Any] = {
            "headers": headers,
            "params": params,
            "timeout": httpx.Timeout(remote.timeout_s, connect=min(remote.timeout_s, 10.0)),
            "limits": httpx.Limits(max_connections=remote.concurrency + 2),
            "transport": transport,
            "follow_redirects": False,
        }
        self._client_lock = threading.Lock()
        self._client = httpx.Client(**self._client_options)
        profile = profile_for(settings.model)
        # Chunks are sized in the bundled tokenizer's tokens: an estimate of the remote model's own
        # count, close for English WordPiece/BPE models and never sent anywhere.
        super().__init__(
            Tokenizer.from_file(str(bundled_tokenizer_path())),
            query_prefix=profile.query_prefix if settings.query_prefix is None else settings.query_prefix,
            passage_prefix=profile.passage_prefix
            if settings.passage_prefix is None
            else settings.passage_prefix,
        )

    @property
    def backend(self) -> Literal["fastembed", "openai"]:
        return "openai"

    def close(self) -> None:
        with self._client_lock:
            self._client.close()

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    def _open_client(self) -> httpx.Client:
        with self._client_lock:
            if self._client.is_closed:
                self._client = httpx.Client(**self._client_options)
            return self._client

    def _embed_texts(self, texts: Sequence[str], kind: InputKind) -> Vectors:
        if kind != "passage":  # a remote model has one precision: both query kinds are the same call
            deadline = time.monotonic() + self.remote.query_timeout_s
            return self._request(list(texts), deadline)
        size = self.remote.batch_size
        batches = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
        if len(batches) == 1:
            return self._request(batches[0], None)
        with ThreadPoolExecutor(max_workers=self.remote.concurrency, thread_name_prefix="embed") as pool:
            parts = list(pool.map(lambda batch: self._request(batch, None), batches))
        return np.concatenate(parts, axis=0)

    def _request(self, batch: list[str], deadline: float | None) -> Vectors:
        """One batch, retried per the policy; `deadline` (monotonic) bounds the whole call."""
        body = {"model": self.model_id, "input": batch}
        attempt = 0
        while True:
            timeout: httpx.Timeout | None = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._failed(f"no answer within {self.remote.query_timeout_s:g}s")
                timeout = httpx.Timeout(left)
            retry_after: float | None = None
            try:
                response = (
                    self._open_client().post(self.endpoint, json=body, timeout=timeout)
                    if timeout is not None
                    else self._open_client().post(self.endpoint, json=body)
                )
            except httpx.TimeoutException:
                reason = "timed out"
            except httpx.TransportError as error:
                reason = f"{type(error).__name__}"
            else:
                if response.status_code == 200:
                    return self._parse(response, len(batch))
                reason = f"HTTP {response.status_code}"
                if not retryable_status(response.status_code):
                    raise self._failed(f"{reason}: {_error_text(response)}; check the key, URL and model")
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            delay = backoff_delay(self.remote, attempt, retry_after)
            if delay is None:
                raise self._failed(f"{reason} after {attempt + 1} attempts")
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise self._failed(f"{reason}; no time left to retry within {self.remote.query_timeout_s:g}s")
            log.info(
                "embedding_retry",
                url=self.endpoint,
                reason=reason,
                attempt=attempt + 1,
                delay_s=round(delay, 3),
            )
            time.sleep(delay)
            attempt += 1

    def _parse(self, response: httpx.Response, expected: int) -> Vectors:
        try:
            payload: Any = response.json()
            items = sorted(payload["data"], key=lambda item: int(item["index"]))
            rows = np.asarray([item["embedding"] for item in items], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as error:
            raise self._failed(f"the reply is not an embeddings response ({type(error).__name__})") from None
        if rows.ndim != 2 or rows.shape[0] != expected:
            raise self._failed(f"the reply holds {len(items)} vectors for {expected} inputs")
        if rows.shape[1] != self.dimension:
            raise self._failed(
                f"the reply's vectors have {rows.shape[1]} dimensions but embedding.remote.dimension is "
                f"{self.dimension}; is {self.model_id!r} the model behind that URL?"
            )
        usage = payload.get("usage") if isinstance(payload, dict) else None
        tokens = (
            int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
            if isinstance(usage, dict)
            else 0
        )
        self._bill(tokens, tokens * self.remote.price_per_mtok / 1_000_000)
        return rows

    def _failed(self, reason: str) -> EmbeddingServiceFailed:
        return EmbeddingServiceFailed(f"embedding service {self.endpoint} failed: {reason}")


def _error_text(response: httpx.Response) -> str:
    """The provider's own one-line message, if it sent one (never the whole body)."""
    try:
        payload = response.json()
        message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
    except ValueError:
        message = None
    text = str(message or response.reason_phrase or "error")
    return " ".join(text.split())[:200]
