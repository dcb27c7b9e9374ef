"""Retrieval and answer quality over a labelled question set (`docgate eval`).

Relevance is judged per page: a ranked list of chunks becomes a ranked list of distinct document
paths (first occurrence wins), and a page is relevant when it is one of the case's
`expected_sources` (compared without `#anchor`). Binary relevance, cut at 10 pages:

    hit@k       1 when a relevant page is in the top k
    recall@10   share of the expected pages in the top 10
    MRR@10      1 / rank of the first relevant page (0 beyond 10)
    nDCG@10     DCG of the top 10 over the DCG of a perfect ranking of the expected pages

Retrieval metrics use answerable cases only (an unanswerable case has no relevant page). They
are computed for five retrieval configurations in one run, so the value of each stage shows:
`bm25`, `dense`, `rrf60` (the textbook baseline: equal-weight reciprocal rank fusion with k = 60
over the same two retrievers, no rewrites), `hybrid_no_rewrite` and `full` (hybrid with rewrites,
what `search` serves).

Answer metrics run every case through the answering core with the configured backend:
answer rate (answerable, not abstained), abstention rate (unanswerable, abstained), citation
precision (cited pages that are expected pages, on answered answerable cases), must-mention
rate (terms found in the answer over terms asked for, same cases), and per answer: answers that
contain every must-mention term, answers that cite an expected page; grounding score, latency,
tokens and cost.

A report compared with a baseline report lists every headline metric that dropped by more than
the tolerance; improvements never fail.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.table import Table

from server.answering.pipeline import Answerer
from server.errors import ServiceError
from server.evals.agent import AgentReport, run_agent
from server.observability.traces import percentile
from server.retrieval.hybrid import Mode, RetrievalQuery, RetrievalResult, retrieve
from server.retrieval.service import Access, DocService
from server.settings import RetrievalSettings, ServerSettings

K = 10
DEFAULT_DEPTH = 30  # chunks; with at most 2 chunks per page this nearly always yields 10 pages
TOP_SHOWN = 3  # pages shown for a failed case

HEADLINE_RETRIEVAL = ("recall_at_10", "mrr_at_10", "ndcg_at_10", "hit_at_5")
HEADLINE_ANSWERS = ("answer_rate", "abstention_rate", "citation_precision")


class EvalDatasetError(ValueError):
    """A dataset file that cannot be read as eval cases."""


# ---------------------------------------------------------------------------------------------
# Cases


class EvalCase(BaseModel):
    id: str
    question: str = Field(min_length=1)
    expected_sources: list[str] = Field(default_factory=list)
    answerable: bool
    must_mention: list[str] = Field(default_factory=list)
    version: str | None = None
    notes: str = ""

    @property
    def expected_pages(self) -> set[str]:
        return {page_of(source) for source in self.expected_sources}


def load_cases(path: Path) -> list[EvalCase]:
    """The cases of a JSONL dataset; a malformed line fails with its line number."""
    cases: list[EvalCase] = []
    seen: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = EvalCase.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as error:
            first = str(error).splitlines()[0]
            raise EvalDatasetError(f"{path}:{number}: not an eval case ({first})") from error
        if case.id in seen:
            raise EvalDatasetError(f"{path}:{number}: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise EvalDatasetError(f"{path} holds no eval cases")
    return cases


def dataset_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Ranking metrics (pure)


def page_of(source: str) -> str:
    """A document path without its `#anchor`."""
    return source.split("#", 1)[0]


def distinct_pages(paths: Iterable[str]) -> list[str]:
    """Document paths in rank order, each once, at the rank of its best chunk."""
    return list(dict.fromkeys(page_of(p) for p in paths))


def first_relevant_rank(ranked: Sequence[str], relevant: set[str], k: int = K) -> int | None:
    for rank, page in enumerate(ranked[:k], start=1):
        if page in relevant:
            return rank
    return None


def hit_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return 1.0 if first_relevant_rank(ranked, relevant, k) is not None else 0.0


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    rank = first_relevant_rank(ranked, relevant, k)
    return 1.0 / rank if rank is not None else 0.0


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(rank + 1) for rank, page in enumerate(ranked[:k], 1) if page in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


class RetrievalMetrics(BaseModel):
    cases: int = Field(description="Answerable cases the metrics average over.")
    hit_at_1: float
    hit_at_5: float
    hit_at_10: float
    recall_at_10: float
    mrr_at_10: float
    ndcg_at_10: float
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0


def _mean(values: Sequence[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def retrieval_metrics(
    rankings: Sequence[tuple[Sequence[str], set[str]]], latencies_ms: Sequence[float] = ()
) -> RetrievalMetrics:
    """Mean metrics over (ranked distinct pages, relevant pages) pairs."""
    return RetrievalMetrics(
        cases=len(rankings),
        hit_at_1=_mean([hit_at(r, rel, 1) for r, rel in rankings]),
        hit_at_5=_mean([hit_at(r, rel, 5) for r, rel in rankings]),
        hit_at_10=_mean([hit_at(r, rel, K) for r, rel in rankings]),
        recall_at_10=_mean([recall_at(r, rel, K) for r, rel in rankings]),
        mrr_at_10=_mean([mrr_at(r, rel, K) for r, rel in rankings]),
        ndcg_at_10=_mean([ndcg_at(r, rel, K) for r, rel in rankings]),
        latency_p50_ms=round(percentile(latencies_ms, 50), 2),
        latency_p95_ms=round(percentile(latencies_ms, 95), 2),
    )


# ---------------------------------------------------------------------------------------------
# Answer metrics (pure)


@dataclass(frozen=True)
class AnswerOutcome:
    """One case's answer, reduced to what the metrics need."""

    case: EvalCase
    answer: str
    abstained: bool
    cited_pages: list[str]
    grounding_score: float
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    error: str | None = None

    @property
    def answered(self) -> bool:
        return not self.abstained and self.error is None

    def missing_terms(self) -> list[str]:
        text = self.answer.lower()
        return [term for term in self.case.must_mention if term.lower() not in text]


class AnswerMetrics(BaseModel):
    backend: str
    answerable_cases: int
    unanswerable_cases: int
    answer_rate: float = Field(description="Answerable cases answered (not abstained).")
    abstention_rate: float = Field(description="Unanswerable cases abstained on.")
    citation_precision: float | None = Field(
        description="Cited pages that are expected pages, over answered answerable cases (micro)."
    )
    must_mention_rate: float | None = Field(
        description="must_mention terms found in the answer, over answered answerable cases (micro)."
    )
    complete_answer_rate: float | None = Field(
        default=None,
        description="Answered answerable cases whose answer contains every must_mention term.",
    )
    expected_page_rate: float | None = Field(
        default=None,
        description="Answered answerable cases that cite at least one expected page.",
    )
    mean_grounding_score: float = Field(description="Over answered cases.")
    latency_p50_ms: float
    latency_p95_ms: float
    mean_input_tokens: float
    mean_output_tokens: float
    mean_cost_usd: float
    total_cost_usd: float
    errors: int
    cached_results: int


def answer_metrics(outcomes: Sequence[AnswerOutcome], backend: str) -> AnswerMetrics:
    answerable = [o for o in outcomes if o.case.answerable]
    unanswerable = [o for o in outcomes if not o.case.answerable]
    answered = [o for o in answerable if o.answered]
    cited = [page for o in answered for page in o.cited_pages]
    correct = sum(1 for o in answered for page in o.cited_pages if page in o.case.expected_pages)
    terms = sum(len(o.case.must_mention) for o in answered)
    found = sum(len(o.case.must_mention) - len(o.missing_terms()) for o in answered)
    with_terms = [o for o in answered if o.case.must_mention]
    complete = sum(1 for o in with_terms if not o.missing_terms())
    on_page = sum(1 for o in answered if o.case.expected_pages.intersection(o.cited_pages))
    count = max(len(outcomes), 1)
    return AnswerMetrics(
        backend=backend,
        answerable_cases=len(answerable),
        unanswerable_cases=len(unanswerable),
        answer_rate=_mean([1.0 if o.answered else 0.0 for o in answerable]),
        abstention_rate=_mean([1.0 if o.abstained else 0.0 for o in unanswerable]),
        citation_precision=round(correct / len(cited), 4) if cited else None,
        must_mention_rate=round(found / terms, 4) if terms else None,
        complete_answer_rate=round(complete / len(with_terms), 4) if with_terms else None,
        expected_page_rate=round(on_page / len(answered), 4) if answered else None,
        mean_grounding_score=_mean([o.grounding_score for o in outcomes if o.answered]),
        latency_p50_ms=round(percentile([o.latency_ms for o in outcomes], 50), 2),
        latency_p95_ms=round(percentile([o.latency_ms for o in outcomes], 95), 2),
        mean_input_tokens=round(sum(o.input_tokens for o in outcomes) / count, 1),
        mean_output_tokens=round(sum(o.output_tokens for o in outcomes) / count, 1),
        mean_cost_usd=round(sum(o.cost_usd for o in outcomes) / count, 8),
        total_cost_usd=round(sum(o.cost_usd for o in outcomes), 8),
        errors=sum(1 for o in outcomes if o.error is not None),
        cached_results=sum(1 for o in outcomes if o.cached),
    )


# ---------------------------------------------------------------------------------------------
# Report


class CaseMiss(BaseModel):
    id: str
    question: str
    expected: list[str]
    got: list[str] = Field(description=f"Top {TOP_SHOWN} pages returned.")
    first_relevant_rank: int | None = Field(description="Rank of the first expected page, within 10.")
    error: str | None = None


class ConfigReport(BaseModel):
    mode: Mode
    rewrites: bool
    overrides: dict[str, object] = Field(
        default_factory=dict, description="Retrieval settings this configuration replaces."
    )
    metrics: RetrievalMetrics
    ranks: dict[str, int | None] = Field(
        description="Per answerable case: rank of the first expected page within 10, else null."
    )
    failures: list[CaseMiss] = Field(description="Answerable cases with no expected page in the top 10.")


class AnswerFailure(BaseModel):
    id: str
    question: str
    answerable: bool
    abstained: bool
    expected: list[str]
    cited: list[str]
    missing_terms: list[str]
    grounding_score: float
    answer: str
    error: str | None = None


class CacheStats(BaseModel):
    hits: int
    misses: int
    entries: int


class AnswerReport(BaseModel):
    metrics: AnswerMetrics
    cache: CacheStats | None = None
    failures: list[AnswerFailure] = Field(
        description="Answerable cases abstained on or missing a term, unanswerable ones answered, errors."
    )


class EvalReport(BaseModel):
    dataset: str
    dataset_sha256: str
    cases: int
    answerable: int
    collection: str
    version: str | None
    depth: int
    created_at: str
    settings: dict[str, object] = Field(description="Retrieval settings and answer backend of the run.")
    configs: dict[str, ConfigReport]
    answers: AnswerReport | None = None
    agent: AgentReport | None = Field(
        default=None, description="search alone vs search + fetch_chunk vs search + read_page."
    )


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


# ---------------------------------------------------------------------------------------------
# Baseline comparison (pure)


class Regression(BaseModel):
    scope: str = Field(description="A retrieval configuration name, or `answers`.")
    metric: str
    baseline: float
    current: float

    @property
    def drop(self) -> float:
        return round(self.baseline - self.current, 4)


def compare(current: EvalReport, baseline: EvalReport, tolerance: float) -> list[Regression]:
    """Headline metrics that fell more than `tolerance` (absolute) below the baseline.

    Configurations or answer metrics missing on either side are not compared (an `--no-answers`
    run against a baseline with answers checks retrieval only).
    """
    out: list[Regression] = []
    for name, before in baseline.configs.items():
        after = current.configs.get(name)
        if after is None:
            continue
        for metric in HEADLINE_RETRIEVAL:
            old, new = getattr(before.metrics, metric), getattr(after.metrics, metric)
            if old - new > tolerance + 1e-9:
                out.append(Regression(scope=name, metric=metric, baseline=old, current=new))
    if baseline.answers is not None and current.answers is not None:
        for metric in HEADLINE_ANSWERS:
            old_value = getattr(baseline.answers.metrics, metric)
            new_value = getattr(current.answers.metrics, metric)
            if old_value is None:
                continue
            new_value = 0.0 if new_value is None else new_value
            if old_value - new_value > tolerance + 1e-9:
                out.append(Regression(scope="answers", metric=metric, baseline=old_value, current=new_value))
    return out


def load_report(path: Path) -> EvalReport:
    try:
        return EvalReport.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as error:
        first = str(error).splitlines()[0]
        raise EvalDatasetError(f"{path} is not a readable eval report ({first})") from error


# ---------------------------------------------------------------------------------------------
# Running


def _case_version(case: EvalCase, default: str | None) -> str | None:
    return case.version if case.version is not None else default


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
                service, access, case.question, collection, _case_version(case, version), config, depth
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
            version=_case_version(case, version),
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


def _answer_failures(outcomes: Sequence[AnswerOutcome]) -> list[AnswerFailure]:
    failures: list[AnswerFailure] = []
    for o in outcomes:
        missing = o.missing_terms() if o.answered and o.case.answerable else []
        wrong = o.case.answerable != o.answered if o.error is None else True
        if not (wrong or missing):
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
        metrics=answer_metrics(outcomes, backend), cache=stats, failures=_answer_failures(outcomes)
    )


def run_eval(
    settings: ServerSettings,
    service: DocService,
    answerer: Answerer | None,
    dataset: Path,
    *,
    collection: str,
    version: str | None = None,
    depth: int = DEFAULT_DEPTH,
    configs: Sequence[RetrievalConfig] = CONFIGS,
    progress: Callable[[str], None] | None = None,
    agent: bool = True,
) -> EvalReport:
    """Every retrieval configuration (and the answers, when an answerer is given) over a dataset."""
    cases = load_cases(dataset)
    # An operator's tool reading the local index: every collection is in reach.
    access = Access(tenant="eval", allowed=lambda _name: True)
    service.scope(access, [collection], version, service.catalog.view())  # fail early, with the message
    reports: dict[str, ConfigReport] = {}
    for config in configs:
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


# ---------------------------------------------------------------------------------------------
# Presentation


def render(report: EvalReport, console: Console, regressions: Sequence[Regression] = ()) -> None:
    retrieval = Table(
        title=f"Retrieval — {report.dataset} ({report.answerable} answerable of {report.cases} cases)"
    )
    retrieval.add_column("config")
    for column in ("hit@1", "hit@5", "hit@10", "recall@10", "MRR@10", "nDCG@10", "p50 ms", "p95 ms"):
        retrieval.add_column(column, justify="right")
    for name, config in report.configs.items():
        m = config.metrics
        retrieval.add_row(
            name,
            *(
                f"{v:.3f}"
                for v in (m.hit_at_1, m.hit_at_5, m.hit_at_10, m.recall_at_10, m.mrr_at_10, m.ndcg_at_10)
            ),
            f"{m.latency_p50_ms:.1f}",
            f"{m.latency_p95_ms:.1f}",
        )
    console.print(retrieval)
    if report.answers is not None:
        a = report.answers.metrics
        answers = Table(title=f"Answers — backend {a.backend}")
        answers.add_column("metric")
        answers.add_column("value", justify="right")
        rows: list[tuple[str, str]] = [
            ("answer rate (answerable)", f"{a.answer_rate:.3f} of {a.answerable_cases}"),
            ("abstention rate (unanswerable)", f"{a.abstention_rate:.3f} of {a.unanswerable_cases}"),
            ("citation precision", _maybe(a.citation_precision)),
            ("must-mention rate", _maybe(a.must_mention_rate)),
            ("answers with every must-mention term", _maybe(a.complete_answer_rate)),
            ("answers citing an expected page", _maybe(a.expected_page_rate)),
            ("mean grounding score", f"{a.mean_grounding_score:.3f}"),
            ("latency p50 / p95 ms", f"{a.latency_p50_ms:.0f} / {a.latency_p95_ms:.0f}"),
            ("tokens in / out per case", f"{a.mean_input_tokens:.0f} / {a.mean_output_tokens:.0f}"),
            ("cost per case / total USD", f"{a.mean_cost_usd:.6f} / {a.total_cost_usd:.6f}"),
            ("errors", str(a.errors)),
        ]
        if report.answers.cache is not None:
            c = report.answers.cache
            rows.append(("cache hits / misses", f"{c.hits} / {c.misses}"))
        for row in rows:
            answers.add_row(*row)
        console.print(answers)
    if report.agent is not None:
        reading = Table(title=f"Agent reading — must-mention terms found (top {report.agent.k} hits)")
        for column in ("strategy", "cases", "terms found", "all terms", "tokens / case"):
            reading.add_column(column, justify="left" if column == "strategy" else "right")
        for name, s in report.agent.strategies.items():
            reading.add_row(
                name, str(s.cases), f"{s.mention_rate:.3f}", f"{s.complete_rate:.3f}", f"{s.mean_tokens:.0f}"
            )
        console.print(reading)
    for regression in regressions:
        console.print(
            f"[bold red]regression[/] {regression.scope}.{regression.metric}: "
            f"{regression.baseline:.3f} → {regression.current:.3f} (−{regression.drop:.3f})"
        )


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
