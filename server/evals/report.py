"""The eval report: what a run found per configuration and for the answers, and its comparison with a baseline.

A report compared with a baseline report lists every headline metric that dropped by more than
the tolerance; improvements never fail.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from server.evals.agent import AgentReport
from server.evals.dataset import EvalDatasetError
from server.evals.metrics import AnswerMetrics, RetrievalMetrics
from server.retrieval.hybrid import Mode

TOP_SHOWN = 3  # pages shown for a failed case

HEADLINE_RETRIEVAL = ("recall_at_10", "mrr_at_10", "ndcg_at_10", "hit_at_5")
HEADLINE_ANSWERS = ("answer_rate", "abstention_rate", "citation_precision")


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
        description=(
            "Answerable cases abstained on, citing no expected page or missing a term; unanswerable"
            " ones answered; errors."
        )
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


# ---------------------------------------------------------------------------------------------
# Baseline comparison


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
