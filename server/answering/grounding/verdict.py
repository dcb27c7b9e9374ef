"""The verdict: `check` scores every claim, gates on relevance, and decides whether to abstain.

Claim scores are weighted by claim length into one answer score. The answer is withheld
(``abstain``) when either the score or the question relevance is below its threshold; every
reason found (weak claims, invalid citations, off-topic sources) is reported either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field

from indexer.text.identifiers import source_numbers
from server.answering.grounding.claims import INVALID_CITATION, Claim, invalid_citations, plain, split_claims
from server.answering.grounding.evidence import Evidence
from server.answering.grounding.relevance import relevance as question_relevance
from server.answering.grounding.support import ClaimCheck, Source, check_claim, source_windows
from server.answering.grounding.terms import content_terms
from server.settings import GroundingSettings

EmbedFn = Callable[[list[str]], npt.NDArray[Any]]
"""Embeds texts into L2-normalised row vectors (one row per text)."""


class GroundingReport(BaseModel):
    score: float
    claims: list[ClaimCheck]
    relevance: float
    abstain: bool
    reasons: list[str] = Field(default_factory=list)
    invalid_citations: list[int] = Field(default_factory=list)


def check(
    question: str,
    answer: str,
    evidence: list[Evidence],
    embed: EmbedFn,
    settings: GroundingSettings | None = None,
) -> GroundingReport:
    """Check `answer` against `evidence` (numbered from 1 as cited) and decide whether to abstain."""
    settings = settings or GroundingSettings()
    claims = split_claims(answer)
    usable = [(i + 1, e) for i, e in enumerate(evidence) if e.usable]
    if not usable:
        return _abstained(claims, "no usable sources were retrieved")
    if not claims:
        return _abstained(claims, "the answer is empty")

    # One embedding call for everything: claims, question, source windows, sources lacking a cosine.
    texts: list[str] = [plain(c.text) for c in claims]
    question_row = len(texts)
    texts.append(question)
    sources: list[Source] = []
    for number, ev in usable:
        windows = source_windows(ev.text, settings.max_windows_per_source)
        rows = list(range(len(texts), len(texts) + len(windows)))
        texts.extend(windows)
        context = ev.context_text()
        sources.append(
            Source(number, ev, context, content_terms(context), source_numbers(context), rows, windows)
        )
    missing_dense: dict[int, int] = {}
    for src in sources:
        if src.evidence.dense_similarity is None:
            missing_dense[src.number] = len(texts)
            texts.append(src.text)
    vectors = _normalised(embed(texts))

    checks: list[ClaimCheck] = []
    for row, claim in enumerate(claims):
        checks.append(check_claim(claim, vectors[row], vectors, sources, settings))

    total_weight = sum(c.weight for c in checks)
    score = sum(c.score * c.weight for c in checks) / total_weight if total_weight else 0.0

    relevance, relevance_reasons = question_relevance(
        question, answer, sources, vectors[question_row], vectors, missing_dense, settings
    )
    bad = invalid_citations(answer, evidence)
    reasons: list[str] = []
    if not total_weight:
        reasons.append("the answer has no checkable claims")
    if bad:
        listed = ", ".join(f"[{n}]" for n in bad)
        reasons.append(f"{INVALID_CITATION}: {listed}")
    weak = [c for c in checks if c.weight and c.score < settings.threshold]
    if weak:
        reasons.append(f"{len(weak)} of {sum(1 for c in checks if c.weight)} claims are weakly supported")
    abstain = False
    if score < settings.threshold:
        abstain = True
        reasons.append(f"grounding score {score:.2f} is below the threshold {settings.threshold:.2f}")
    if relevance < settings.relevance_threshold:
        abstain = True
        reasons.append(
            f"question relevance {relevance:.2f} is below {settings.relevance_threshold:.2f}: "
            "the retrieved sources do not appear to address the question"
        )
        reasons.extend(relevance_reasons)
    return GroundingReport(
        score=round(score, 4),
        claims=checks,
        relevance=round(relevance, 4),
        abstain=abstain,
        reasons=reasons,
        invalid_citations=bad,
    )


def _abstained(claims: list[Claim], reason: str) -> GroundingReport:
    checks = [ClaimCheck(text=c.text, chunk_id=None, score=0.0, citations=c.citations) for c in claims]
    return GroundingReport(score=0.0, claims=checks, relevance=0.0, abstain=True, reasons=[reason])


def _normalised(matrix: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    # The embedder promises unit rows; normalising again is cheap and makes cosine a dot product.
    m = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = m / np.maximum(norms, 1e-12)
    return result
