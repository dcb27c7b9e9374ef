"""Retrieval configurations and their runs: every answerable case retrieved one way, scored per page.

Five configurations run in one eval, so the value of each stage shows: `bm25`, `dense`, `rrf60`
(the textbook baseline: equal-weight reciprocal rank fusion with k = 60 over the same two
retrievers, no rewrites), `hybrid_no_rewrite` and `full` (hybrid with rewrites, what `search`
serves without reranking). With `[retrieval.rerank] enabled` a sixth, `reranked`, is `full` plus
the rerank stage, and the other five run without it, so the stage's own gain shows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from server.errors import ServiceError
from server.evals.dataset import EvalCase, case_version
from server.evals.metrics import distinct_pages, first_relevant_rank, retrieval_metrics
from server.evals.report import TOP_SHOWN, CaseMiss, ConfigReport
from server.retrieval.hybrid import Mode, RetrievalQuery, RetrievalResult, retrieve
from server.retrieval.service import Access, DocService
from server.settings import RetrievalSettings

DEFAULT_DEPTH = 30  # chunks; with at most 2 chunks per page this nearly always yields 10 pages


@dataclass(frozen=True)
class RetrievalConfig:
    name: str
    mode: Mode
    rewrites: bool
    # Settings replaced for this configuration only (a baseline method, not what `search` serves).
    overrides: tuple[tuple[str, object], ...] = ()


# Plain reciprocal rank fusion as published (Cormack et al.): equal weights, k = 60, nothing adaptive.
PLAIN_RRF: tuple[tuple[str, object], ...] = (
    ("bm25_weight", 1.0),
    ("dense_weight", 1.0),
    ("rrf_k", 60),
    ("fusion", "plain"),
)

CONFIGS = (
    RetrievalConfig("bm25", "bm25", rewrites=False),
    RetrievalConfig("dense", "dense", rewrites=False),
    RetrievalConfig("rrf60", "hybrid", rewrites=False, overrides=PLAIN_RRF),
    RetrievalConfig("hybrid_no_rewrite", "hybrid", rewrites=False),
    RetrievalConfig("full", "hybrid", rewrites=True),
)


def configs_for(retrieval: RetrievalSettings) -> tuple[RetrievalConfig, ...]:
    """The configurations an eval runs with these settings (see the module docstring)."""
    if not retrieval.rerank.enabled:
        return CONFIGS
    without = ("rerank", {**retrieval.rerank.model_dump(mode="json"), "enabled": False})
    return (
        *(RetrievalConfig(c.name, c.mode, c.rewrites, (*c.overrides, without)) for c in CONFIGS),
        RetrievalConfig("reranked", "hybrid", rewrites=True),
    )


def retrieve_for(
    service: DocService,
    access: Access,
    question: str,
    collection: str,
    version: str | None,
    config: RetrievalConfig,
    depth: int,
) -> RetrievalResult:
    if not config.overrides:
        result, _ = service.retrieve(
            access,
            question,
            collections=[collection],
            version=version,
            depth=depth,
            mode=config.mode,
            rewrites=config.rewrites,
        )
        return result
    # A baseline with other settings runs the same retrieval core over the same view and scope.
    view = service.catalog.view()
    scope = service.scope(access, [collection], version, view)
    settings = RetrievalSettings.model_validate(
        {**service.settings.retrieval.model_dump(), **dict(config.overrides)}
    )
    return retrieve(
        view,
        RetrievalQuery(text=question, collections=scope, version=version),
        service.embedder,
        settings,
        depth=depth,
        mode=config.mode,
        rewrites=config.rewrites,
    )


def run_retrieval(
    service: DocService,
    access: Access,
    cases: Sequence[EvalCase],
    collection: str,
    version: str | None,
    config: RetrievalConfig,
    depth: int = DEFAULT_DEPTH,
) -> ConfigReport:
    rankings: list[tuple[Sequence[str], set[str]]] = []
    latencies: list[float] = []
    ranks: dict[str, int | None] = {}
    failures: list[CaseMiss] = []
    for case in cases:
        if not case.answerable:
            continue
        error: str | None = None
        started = time.perf_counter()
        try:
            result = retrieve_for(
                service, access, case.question, collection, case_version(case, version), config, depth
            )
            pages = distinct_pages(c.chunk.path for c in result.candidates)
        except ServiceError as exc:  # e.g. a case's version that the index does not have
            pages, error = [], str(exc)
        latencies.append((time.perf_counter() - started) * 1000)
        relevant = case.expected_pages
        rankings.append((pages, relevant))
        rank = first_relevant_rank(pages, relevant)
        ranks[case.id] = rank
        if rank is None:
            failures.append(
                CaseMiss(
                    id=case.id,
                    question=case.question,
                    expected=sorted(relevant),
                    got=pages[:TOP_SHOWN],
                    first_relevant_rank=None,
                    error=error,
                )
            )
    return ConfigReport(
        mode=config.mode,
        rewrites=config.rewrites,
        overrides=dict(config.overrides),
        metrics=retrieval_metrics(rankings, latencies),
        ranks=ranks,
        failures=failures,
    )
