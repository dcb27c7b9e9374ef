"""Grounded answers: retrieve → select context → write → check → answer or abstain.

    retrieve      the same hybrid retrieval as `search`, `answer.depth` candidates
    context       whole chunks in rank order within `answer.context_tokens` (`context.py`)
    write         extractive (offline, `extractive.py`) or a remote/sampling model (PII redacted
                  first); any provider failure falls back to extractive (`writing.py`)
    check         `grounding.verdict.check` on every answer, whoever wrote it; below the thresholds, with an
                  invalid citation, a fabricated identifier or number, or a model saying the sources
                  are insufficient, the answer is replaced by the fixed abstention text and sources
    answer        the result shaped to fit `max_tokens` (`shaping.py`); tokens counted per request
                  and priced from the provider table

Results are cached per tenant, scope and index generation (`cache.py`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import anyio.to_thread
import httpx
import numpy as np
import numpy.typing as npt

from indexer.embedding import Embedder
from indexer.models import ChunkFilter
from server.answering.cache import CacheScope, SemanticCache
from server.answering.context import Retrieved, select_context
from server.answering.grounding.evidence import Evidence
from server.answering.grounding.verdict import check
from server.answering.memo import memo_embed
from server.answering.products import undocumented_products
from server.answering.providers import make_backend
from server.answering.replies import AnswerBackend
from server.answering.results import (
    ABSTENTION,
    AnswerCitation,
    AnswerResult,
    AnswerTrace,
    AnswerUsage,
    ClaimReport,
    GroundingSummary,
)
from server.answering.sampling import SampledReply, SampleFn
from server.answering.shaping import Shaper, abstention_reasons
from server.answering.writing import write_answer
from server.observability.stages import StageTimer
from server.retrieval.catalog import CatalogView
from server.retrieval.service import Access, DocService
from server.security import guards
from server.settings import GroundingSettings, ServerSettings

__all__ = [
    "ABSTENTION",
    "AnswerCitation",
    "AnswerResult",
    "AnswerTrace",
    "Answerer",
    "ClaimReport",
    "GroundingSummary",
    "Retrieved",
    "SampleFn",
    "SampledReply",
    "validate_question",
]


@dataclass
class _Prepared:
    question: str
    scope: CacheScope
    vector: npt.NDArray[np.float32]
    view: CatalogView
    names: tuple[str, ...]
    generations: dict[str, int]
    question_tokens: int


class Answerer:
    """Answers questions for one server: shared embedder, catalog, HTTP client and cache."""

    def __init__(
        self,
        settings: ServerSettings,
        service: DocService,
        embedder: Embedder,
        *,
        client: httpx.AsyncClient | None = None,
        cache: SemanticCache[AnswerResult] | None = None,
    ) -> None:
        self.settings = settings
        self.answer_settings = settings.answer
        self.service = service
        self.embedder = embedder
        self.cache = cache
        self.shaper = Shaper(service.tokens, embedder.truncate_to_tokens)
        self.remote: AnswerBackend | None = None
        provider = settings.answer.provider
        if settings.answer.backend in ("openai", "anthropic") and provider is not None:
            if client is None:
                raise ValueError("the openai and anthropic answer backends need a shared httpx.AsyncClient")
            self.remote = make_backend(provider, client, guards.redact)

    @property
    def grounding(self) -> GroundingSettings:
        return self.answer_settings.grounding

    async def answer(
        self,
        access: Access,
        question: str,
        *,
        collections: Sequence[str] | None = None,
        version: str | None = None,
        max_tokens: int = 1500,
        trace_id: str = "",
        sample: SampleFn | None = None,
    ) -> tuple[AnswerResult, AnswerTrace]:
        started = time.monotonic()
        trace = AnswerTrace()
        prepared = await anyio.to_thread.run_sync(
            self._prepare, access, question, collections, version, max_tokens
        )
        trace.generations = prepared.generations
        trace.tokens_in = prepared.question_tokens
        if self.cache is not None:
            hit = self.cache.get(prepared.scope, prepared.question, prepared.vector)
            if hit is not None:
                result = hit.value.model_copy(
                    update={
                        "cached": True,
                        "trace_id": trace_id,
                        "usage": AnswerUsage(input_tokens=0, output_tokens=0, estimated_cost_usd=0.0),
                    }
                )
                trace.chunk_ids = [c.chunk_id for c in result.citations]
                trace.trace = {"cached": True, "cache_similarity": round(hit.similarity, 4)}
                return result, trace

        retrieved = await anyio.to_thread.run_sync(self._retrieve, access, prepared)
        embed = memo_embed(self.embedder.embed)
        timer = StageTimer(retrieved.timings_ms)
        with timer.stage("generate"):
            written = await write_answer(
                prepared.question,
                retrieved,
                max_tokens,
                embed,
                sample,
                settings=self.answer_settings,
                remote=self.remote,
                embedder=self.embedder,
            )
        with timer.stage("ground"):
            report = await anyio.to_thread.run_sync(
                lambda: check(prepared.question, written.answer, retrieved.evidence, embed, self.grounding)
            )
        reasons = abstention_reasons(written, report, retrieved.evidence)
        reasons += await anyio.to_thread.run_sync(self._undocumented, prepared, retrieved.evidence)
        abstained = report.abstain or bool(reasons)
        result = self.shaper.shape(
            prepared.question, retrieved, written, report, reasons, abstained, trace_id, max_tokens
        )

        trace.chunk_ids = [e.chunk_id for e in retrieved.evidence]
        trace.tokens_in = prepared.question_tokens + (written.usage.input_tokens if written.model else 0)
        trace.trace = {
            "cached": False,
            "backend": result.backend,
            "fallback_reason": written.fallback_reason,
            "model": written.model,
            "repaired": written.repaired,
            "abstained": abstained,
            "grounding_score": report.score,
            "relevance": report.relevance,
            "grounding_reasons": result.grounding.reasons,
            "context_ids": [e.chunk_id for e in retrieved.evidence],
            "context_tokens": retrieved.context_tokens,
            "flagged_ids": retrieved.flagged,
            "model_input_tokens": written.usage.input_tokens,
            "model_output_tokens": written.usage.output_tokens,
            "estimated_cost_usd": written.cost,
            "spans_ms": {**timer.spans, "answer_total": round((time.monotonic() - started) * 1000, 3)},
        }
        # Abstentions are cached too: within one generation the same question retrieves the same
        # sources and would abstain again, and repeated unanswerable questions are the costly kind.
        # Fallback answers are not: the model's failure may be transient.
        if self.cache is not None and written.fallback_reason is None:
            self.cache.put(prepared.scope, prepared.question, prepared.vector, result)
        return result, trace

    # --- steps --------------------------------------------------------------------------------

    def _prepare(
        self,
        access: Access,
        question: str,
        collections: Sequence[str] | None,
        version: str | None,
        max_tokens: int,
    ) -> _Prepared:
        view = self.service.catalog.view()
        names = self.service.scope(access, collections, version, view)
        generations = {name: view.snapshots[name].generation for name in names}
        scope = CacheScope.of(
            access.tenant, names, version, generations, self.answer_settings.backend, max_tokens
        )
        vector = self.embedder.embed([question])[0]
        return _Prepared(
            question=question,
            scope=scope,
            vector=vector,
            view=view,
            names=names,
            generations=generations,
            question_tokens=self.embedder.count_tokens(question),
        )

    def _retrieve(self, access: Access, prepared: _Prepared) -> Retrieved:
        return self.retrieve_context(
            access,
            prepared.question,
            collections=prepared.names,
            version=prepared.scope.version,
            view=prepared.view,
        )

    def retrieve_context(
        self,
        access: Access,
        question: str,
        *,
        collections: Sequence[str] | None = None,
        version: str | None = None,
        view: CatalogView | None = None,
    ) -> Retrieved:
        """Retrieve and select the numbered context (also used by the evaluation scripts)."""
        result, _ = self.service.retrieve(
            access,
            question,
            collections=collections,
            version=version,
            depth=self.answer_settings.depth,
            view=view,
            exact_vectors=True,
        )
        evidence, used, flagged = select_context(
            result.candidates,
            self.answer_settings.context_tokens,
            self.embedder.count_tokens,
            self.embedder.truncate_to_tokens,
        )
        return Retrieved(result.candidates, evidence, used, flagged, result.timings_ms)

    def _undocumented(self, prepared: _Prepared, evidence: list[Evidence]) -> list[str]:
        """An abstention reason when the question names a product these collections do not document."""
        rare = self.grounding.undocumented_product_chunks
        if rare < 0:
            return []
        # Every version of the collections counts: a product one version documents is documented
        # (OAuth in later MCP revisions), and a question scoped to an older version deserves that
        # version's answer ("not part of the core specification"), not "the docs do not cover it".
        flt = ChunkFilter(collections=prepared.names)

        def chunks_mentioning(name: str) -> int:
            snapshots = [prepared.view.snapshots[n] for n in prepared.names]
            return sum(len(s.lexical.search(name, flt, rare + 1)) for s in snapshots)

        passages = [e.context_text() for e in evidence]
        missing = undocumented_products(prepared.question, passages, chunks_mentioning, rare)
        return ["the documentation does not cover " + ", ".join(missing)] if missing else []


def validate_question(question: object) -> str:
    """`guards.validate_query` with messages that name this tool's argument."""
    try:
        return guards.validate_query(question)
    except guards.InvalidArgument as error:
        raise guards.InvalidArgument(
            str(error).replace("query", "question", 1), argument="question"
        ) from None
