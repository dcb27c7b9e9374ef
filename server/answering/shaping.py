"""The answer step: turn a checked answer (or an abstention) into the result within `max_tokens`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import BaseModel

from indexer.models import section_label
from server.answering.context import Retrieved
from server.answering.coverage import term_coverage
from server.answering.grounding.evidence import Evidence
from server.answering.grounding.verdict import GroundingReport
from server.answering.results import (
    ABSTENTION,
    ABSTENTION_SOURCES,
    AnswerCitation,
    AnswerResult,
    AnswerUsage,
    ClaimReport,
    GroundingSummary,
)
from server.answering.writing import Written
from server.retrieval.hybrid import Candidate
from server.security import guards

_QUOTE_TOKENS = 80


class Shaper:
    """Measures and clips with the server's tokenizer: `tokens` sizes a whole result."""

    def __init__(
        self, tokens: Callable[[BaseModel], int], truncate_to_tokens: Callable[[str, int], str]
    ) -> None:
        self.tokens = tokens
        self.truncate_to_tokens = truncate_to_tokens

    def shape(
        self,
        question: str,
        retrieved: Retrieved,
        written: Written,
        report: GroundingReport,
        extra: list[str],
        abstained: bool,
        trace_id: str,
        max_tokens: int,
    ) -> AnswerResult:
        evidence = retrieved.evidence
        grounding = GroundingSummary(
            score=report.score,
            relevance=report.relevance,
            claims=[ClaimReport(text=c.text, chunk_id=c.chunk_id, score=c.score) for c in report.claims],
            reasons=[*report.reasons, *extra],
        )
        usage = AnswerUsage(
            input_tokens=written.usage.input_tokens,
            output_tokens=written.usage.output_tokens,
            estimated_cost_usd=round(written.cost, 8),
        )
        if abstained:
            answer = ABSTENTION + sources_to_read(retrieved.candidates)
            citations: list[AnswerCitation] = []
        else:
            answer = written.answer
            citations = self._citations(written, report, evidence)
        terms = [] if abstained else term_coverage(question, written.answer)
        result = AnswerResult(
            answer=answer,
            citations=citations,
            grounding=grounding,
            abstained=abstained,
            backend=written.backend,
            fallback_reason=written.fallback_reason,
            usage=usage,
            trace_id=trace_id,
            cached=False,
            question_terms=terms,
        )
        return self.fit(result, max_tokens)

    def _citations(
        self, written: Written, report: GroundingReport, evidence: list[Evidence]
    ) -> list[AnswerCitation]:
        numbers = list(dict.fromkeys(n for c in report.claims for n in c.citations))
        numbers += [c.n for c in written.citations if c.n not in numbers]
        out: list[AnswerCitation] = []
        for n in numbers:
            if not 1 <= n <= len(evidence) or not evidence[n - 1].usable:
                continue
            ev = evidence[n - 1]
            quotes = written.quotes.get(n) or [
                c.quote for c in report.claims if n in c.citations and c.chunk_id == ev.chunk_id and c.quote
            ]
            quote = " … ".join(dict.fromkeys(quotes)) if quotes else ev.text
            out.append(
                AnswerCitation(
                    n=n,
                    chunk_id=ev.chunk_id,
                    title=ev.title,
                    heading_path=ev.heading_path,
                    source=ev.source,
                    quote=self._clip(quote, _QUOTE_TOKENS),
                )
            )
        return out

    def _clip(self, text: str, tokens: int) -> str:
        clipped = self.truncate_to_tokens(text, tokens)
        return clipped if clipped == text else clipped.rstrip() + " …"

    def fit(self, result: AnswerResult, max_tokens: int) -> AnswerResult:
        """Shrink the supporting detail until the response fits `max_tokens`; the answer stays whole.

        Order: shorter quotes and claim texts, then claim texts dropped (their scores stay), then the
        per-claim list, the reasons, the quotes. Citations keep their chunk IDs so every [n] stays
        resolvable with fetch_chunk. The extractive writer already keeps to a fifth of the budget.
        """
        for limit in (40, 16, 8):
            if self.tokens(result) <= max_tokens:
                return result
            result.citations = [
                c.model_copy(update={"quote": self._clip(c.quote, limit)}) for c in result.citations
            ]
            result.grounding.claims = [
                c.model_copy(update={"text": self._clip(c.text, limit)}) for c in result.grounding.claims
            ]
        if self.tokens(result) > max_tokens:
            result.grounding.claims = [c.model_copy(update={"text": ""}) for c in result.grounding.claims]
        if self.tokens(result) > max_tokens:
            result.grounding.claims = []
        if self.tokens(result) > max_tokens:
            result.grounding.reasons = result.grounding.reasons[:1]
        if self.tokens(result) > max_tokens:
            result.citations = [c.model_copy(update={"quote": "…"}) for c in result.citations]
        return result


def abstention_reasons(written: Written, report: GroundingReport, evidence: list[Evidence]) -> list[str]:
    """Abstention reasons beyond the score thresholds: never show a fabricated or mis-cited claim."""
    reasons: list[str] = []
    if written.insufficient:
        reasons.append("the model reported that the sources do not answer the question")
    for citation in written.citations:
        valid = 1 <= citation.n <= len(evidence) and evidence[citation.n - 1].usable
        if not valid or (bool(citation.chunk_id) and evidence[citation.n - 1].chunk_id != citation.chunk_id):
            reasons.append(f"citation [{citation.n}] does not match a retrieved source")
    if report.invalid_citations:
        reasons.append("the answer cites sources that were not retrieved")
    fabricated = sorted({m for c in report.claims if c.weight for m in c.missing})
    if fabricated:
        reasons.append("not in the cited sources: " + ", ".join(fabricated[:5]))
    return reasons


def sources_to_read(candidates: Sequence[Candidate]) -> str:
    lines: list[str] = []
    for candidate in candidates:
        chunk = candidate.chunk
        if guards.screen(chunk.text):
            continue
        line = f"- {section_label(chunk.title, chunk.heading_path)} ({chunk.source})"
        if line not in lines:
            lines.append(line)
        if len(lines) >= ABSTENTION_SOURCES:
            break
    return "\n\nSources that may help:\n" + "\n".join(lines) if lines else ""
