"""The shared resources of one server process, opened once and closed once: the `Runtime`.

`build_runtime` opens everything a tool call needs (catalog, embedder, tenant registry, audit log,
limits, the one HTTP client of the answer backends) so that configuration problems surface before
any transport starts. `Runtime.lifespan` is handed to `MCPServer(lifespan=...)`: the SDK enters it
once per process for stdio and streamable HTTP alike (the HTTP session manager enters the server's
lifespan once and shares it across sessions) and leaves it at shutdown, which is when the usage
store is closed, the audit chain's final head gets its signed checkpoint and the HTTP client is
closed. Commands that use a runtime without serving (`docgate search`, `docgate eval`) close it
with `aclose()`; closing twice is harmless.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio.to_thread
import httpx
import structlog

from indexer.embedding import Embedder, shared_embedder
from server.answering.cache import SemanticCache
from server.answering.pipeline import Answerer, AnswerResult
from server.retrieval.catalog import Catalog
from server.retrieval.cursors import load_secret
from server.retrieval.rerank import shared_reranker
from server.retrieval.service import DocService
from server.security.audit import AuditLog, open_audit_log
from server.security.limits import RateLimiter, TokenBudget
from server.security.registry import TenantRegistry
from server.security.usage_store import UsageStore
from server.settings import ServerSettings

log = structlog.get_logger()


@dataclass
class Runtime:
    settings: ServerSettings
    embedder: Embedder
    catalog: Catalog
    service: DocService
    registry: TenantRegistry
    audit: AuditLog
    limiter: RateLimiter
    budget: TokenBudget
    http_client: httpx.AsyncClient
    answerer: Answerer
    closed: bool = field(default=False, init=False)

    @asynccontextmanager
    async def lifespan(self, _server: object) -> AsyncIterator[Runtime]:
        """The MCP server's lifespan: the runtime is the lifespan state; leaving it closes the runtime."""
        log.info("runtime_started")
        try:
            yield self
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the usage store (every charge is already committed when its call returns), sign a
        checkpoint of the audit chain's final head, then close the answer backends' HTTP client and
        the embedder's connections (a remote embedding provider's pool)."""
        if self.closed:
            return
        self.closed = True
        try:
            self.budget.close()
            await anyio.to_thread.run_sync(self.audit.close)  # a signed checkpoint of the final head
        finally:
            await self.http_client.aclose()
            self.embedder.close()
        log.info(
            "runtime_closed",
            usage_store_closed=True,
            audit_checkpointed=True,
            http_client_closed=self.http_client.is_closed,
        )


def build_runtime(settings: ServerSettings) -> Runtime:
    embedder = shared_embedder(settings.embedding, settings.models_dir)
    embedder.warm_queries()
    if settings.retrieval.rerank.enabled:  # a local cross-encoder loads now, or the server says why not
        shared_reranker(settings.retrieval.rerank, settings.models_dir).warm()
    catalog = Catalog(settings, embedder.config, interval=settings.serve.reload_interval_s)
    secret = load_secret(settings.data_dir / "server" / "cursor.key")
    service = DocService(settings, catalog, embedder, secret)
    registry = TenantRegistry(
        settings.auth.tenants_file,
        secret_file=settings.auth.key_secret_file,
        auth_failures_per_minute=settings.auth.auth_failures_per_minute,
    )
    # One client for every remote model call: connection reuse; timeouts are set per request.
    http_client = httpx.AsyncClient(follow_redirects=False)
    # Budgets and rate limits of every server process on this data dir: one SQLite file.
    usage = UsageStore(settings.data_dir / "server" / "usage.sqlite3")
    answerer = Answerer(
        settings,
        service,
        embedder,
        client=http_client,
        cache=SemanticCache[AnswerResult](settings.cache),
    )
    _log_what_is_served(settings, catalog)
    return Runtime(
        settings=settings,
        embedder=embedder,
        catalog=catalog,
        service=service,
        registry=registry,
        audit=open_audit_log(settings),
        limiter=RateLimiter(usage),
        budget=TokenBudget(usage, legacy_file=settings.data_dir / "server" / "token-usage.json"),
        http_client=http_client,
        answerer=answerer,
    )


def _log_what_is_served(settings: ServerSettings, catalog: Catalog) -> None:
    """Say which data dir this server reads, and warn loudly when it holds nothing to serve
    (the usual cause: the indexer and the server were given different data dirs)."""
    names = sorted(catalog.view().snapshots)
    log.info("serving_data_dir", data_dir=str(settings.data_dir), collections=names)
    if not names:
        log.warning(
            "catalog_empty",
            data_dir=str(settings.data_dir),
            hint="build a collection with docgate-index build",
        )
