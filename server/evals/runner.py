"""`docgate eval`: every retrieval configuration, the agent strategies and the answers over one dataset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from server.answering.pipeline import Answerer
from server.evals.agent import run_agent
from server.evals.answers import run_answers
from server.evals.configs import DEFAULT_DEPTH, RetrievalConfig, configs_for, run_retrieval
from server.evals.dataset import dataset_sha256, load_cases
from server.evals.report import ConfigReport, EvalReport
from server.retrieval.service import Access, DocService
from server.settings import ServerSettings


def run_eval(
    settings: ServerSettings,
    service: DocService,
    answerer: Answerer | None,
    dataset: Path,
    *,
    collection: str,
    version: str | None = None,
    depth: int = DEFAULT_DEPTH,
    configs: Sequence[RetrievalConfig] | None = None,
    progress: Callable[[str], None] | None = None,
    agent: bool = True,
) -> EvalReport:
    """Every retrieval configuration (and the answers, when an answerer is given) over a dataset."""
    cases = load_cases(dataset)
    # An operator's tool reading the local index: every collection is in reach.
    access = Access(tenant="eval", allowed=lambda _name: True)
    service.scope(access, [collection], version, service.catalog.view())  # fail early, with the message
    reports: dict[str, ConfigReport] = {}
    for config in configs if configs is not None else configs_for(settings.retrieval):
        if progress:
            progress(f"retrieval: {config.name}")
        reports[config.name] = run_retrieval(service, access, cases, collection, version, config, depth)
    agent_report = None
    if agent:
        if progress:
            progress("agent: search, search + fetch_chunk, search + read_page")
        agent_report = run_agent(service, access, cases, collection, version)
    answers = None
    if answerer is not None:
        if progress:
            progress(f"answers: {settings.answer.backend}")
        answers = run_answers(answerer, service, access, cases, collection, version, settings.answer.backend)
    return EvalReport(
        dataset=dataset.name,
        dataset_sha256=dataset_sha256(dataset),
        cases=len(cases),
        answerable=sum(1 for c in cases if c.answerable),
        collection=collection,
        version=version,
        depth=depth,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        settings={
            "retrieval": settings.retrieval.model_dump(mode="json"),
            "answer_backend": settings.answer.backend,
            "answer_depth": settings.answer.depth,
            "embedding_model": settings.embedding.model,
        },
        configs=reports,
        answers=answers,
        agent=agent_report,
    )
