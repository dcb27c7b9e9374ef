"""What `grounded_answer` returns (the tool's output schema) and what its audit record is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

ABSTENTION = "I could not find a confident answer in the documentation."
ABSTENTION_SOURCES = 3


class AnswerCitation(BaseModel):
    n: int = Field(description="The number used in the answer's [n] markers.")
    chunk_id: str = Field(description="Pass to fetch_chunk to read the passage in full.")
    title: str
    heading_path: list[str]
    source: str = Field(description="Page URL or path, with #anchor when known.")
    quote: str = Field(description="The passage of the source that supports the cited sentences.")


class ClaimReport(BaseModel):
    text: str
    chunk_id: str | None = Field(description="The source that supports the claim best; null if none.")
    score: float = Field(description="Support from 0 (none) to 1 (stated by the source).")


class GroundingSummary(BaseModel):
    score: float = Field(description="Length-weighted support of all claims, 0-1.")
    relevance: float = Field(description="How well the sources address the question, 0-1.")
    claims: list[ClaimReport]
    reasons: list[str] = Field(default_factory=list, description="Why the check passed or abstained.")


class AnswerUsage(BaseModel):
    input_tokens: int = Field(description="Tokens the answer writer read (prompt or local sources).")
    output_tokens: int
    estimated_cost_usd: float


class TermCoverage(BaseModel):
    term: str = Field(description="A key term or identifier of the question, as the question spells it.")
    covered: bool = Field(description="True when the answer contains it (or a word of the same stem).")


class AnswerResult(BaseModel):
    answer: str = Field(description="The answer with [n] citation markers, or the abstention text.")
    citations: list[AnswerCitation]
    grounding: GroundingSummary
    abstained: bool = Field(description="True when no answer was confident enough to give.")
    backend: str = Field(description="Who wrote the answer: extractive, openai, anthropic, sampling.")
    fallback_reason: str | None = Field(
        default=None, description="Why the configured model did not answer and extractive did."
    )
    usage: AnswerUsage
    trace_id: str = Field(description="Request id in the server's logs and audit trail.")
    cached: bool = Field(
        description="True when this is a stored answer to the same or a near-identical question."
    )
    question_terms: list[TermCoverage] = Field(
        default_factory=list,
        description="The question's key terms and whether the answer covers each (none when abstained).",
    )


@dataclass
class AnswerTrace:
    """What the tool handler copies into the audit record and the trace event."""

    chunk_ids: list[str] = field(default_factory=list)
    generations: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    trace: dict[str, Any] = field(default_factory=dict)
