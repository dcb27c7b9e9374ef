"""Answer runs: every case through the answering core with the configured backend, reduced to outcomes."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from server.answering.pipeline import Answerer
from server.errors import ServiceError
from server.evals.dataset import EvalCase, case_version
from server.evals.metrics import AnswerOutcome, answer_metrics, distinct_pages
from server.evals.report import AnswerFailure, AnswerReport, CacheStats
from server.retrieval.service import Access, DocService


async def answer_case(
    answerer: Answerer,
    service: DocService,
    access: Access,
    case: EvalCase,
    collection: str,
    version: str | None,
) -> AnswerOutcome:
    started = time.perf_counter()
    try:
        result, _ = await answerer.answer(
            access,
            case.question,
            collections=[collection],
            version=case_version(case, version),
            trace_id=f"eval-{case.id}",
        )
    except ServiceError as exc:
        return AnswerOutcome(
            case=case,
            answer="",
            abstained=False,
            cited_pages=[],
            grounding_score=0.0,
            latency_ms=(time.perf_counter() - started) * 1000,
            error=str(exc),
        )
    latency = (time.perf_counter() - started) * 1000
    view = service.catalog.view()
    cited: list[str] = []
    for citation in result.citations:
        try:
            chunk, _ = service.locate(access, citation.chunk_id, view)
        except ServiceError:
            continue  # published over between answer and lookup: the citation cannot be judged
        cited.append(chunk.path)
    return AnswerOutcome(
        case=case,
        answer=result.answer,
        abstained=result.abstained,
        cited_pages=distinct_pages(cited),
        grounding_score=result.grounding.score,
        latency_ms=latency,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        cost_usd=result.usage.estimated_cost_usd,
        cached=result.cached,
    )


def answer_failures(outcomes: Sequence[AnswerOutcome]) -> list[AnswerFailure]:
    failures: list[AnswerFailure] = []
    for o in outcomes:
        judged = o.answered and o.case.answerable
        missing = o.missing_terms() if judged else []
        wrong = o.case.answerable != o.answered if o.error is None else True
        # An answer that cites none of the expected pages fails however well it reads.
        off_page = (
            judged and bool(o.case.expected_pages) and not o.case.expected_pages.intersection(o.cited_pages)
        )
        if not (wrong or missing or off_page):
            continue
        failures.append(
            AnswerFailure(
                id=o.case.id,
                question=o.case.question,
                answerable=o.case.answerable,
                abstained=o.abstained,
                expected=sorted(o.case.expected_pages),
                cited=o.cited_pages,
                missing_terms=missing,
                grounding_score=o.grounding_score,
                answer=o.answer[:400],
                error=o.error,
            )
        )
    return failures


def run_answers(
    answerer: Answerer,
    service: DocService,
    access: Access,
    cases: Sequence[EvalCase],
    collection: str,
    version: str | None,
    backend: str,
) -> AnswerReport:
    async def all_cases() -> list[AnswerOutcome]:
        return [await answer_case(answerer, service, access, c, collection, version) for c in cases]

    outcomes = anyio.run(all_cases)
    cache = answerer.cache
    stats = CacheStats(hits=cache.hits, misses=cache.misses, entries=len(cache)) if cache else None
    return AnswerReport(
        metrics=answer_metrics(outcomes, backend), cache=stats, failures=answer_failures(outcomes)
    )
