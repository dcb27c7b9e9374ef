"""Eval metrics (pure): page rankings and answers scored against a case's labels.

Relevance is judged per page: a ranked list of chunks becomes a ranked list of distinct document
paths (first occurrence wins), and a page is relevant when it is one of the case's
`expected_sources` (compared without `#anchor`). Binary relevance, cut at 10 pages:

    hit@k       1 when a relevant page is in the top k
    recall@10   share of the expected pages in the top 10
    MRR@10      1 / rank of the first relevant page (0 beyond 10)
    nDCG@10     DCG of the top 10 over the DCG of a perfect ranking of the expected pages

Retrieval metrics use answerable cases only (an unanswerable case has no relevant page).

Answer metrics: answer rate (answerable, not abstained), abstention rate (unanswerable,
abstained), citation precision (cited pages that are expected pages, on answered answerable
cases), must-mention rate (terms found in the answer over terms asked for, same cases), and per
answer: answers that contain every must-mention term, answers that cite an expected page;
grounding score, latency, tokens and cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from server.evals.dataset import EvalCase, page_of
from server.observability.traces import percentile

K = 10

# ---------------------------------------------------------------------------------------------
# Ranking metrics


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
# Answer metrics


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
