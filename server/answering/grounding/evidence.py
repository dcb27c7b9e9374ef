"""`Evidence`: one retrieved chunk as the answering and grounding steps see it, numbered from 1 as cited."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Evidence(BaseModel):
    """One retrieved chunk as the answering and grounding steps see it."""

    chunk_id: str
    title: str
    heading_path: list[str] = Field(default_factory=list)
    source: str
    text: str
    retrieval_score: float = Field(description="Fused retrieval score (higher is better).")
    dense_similarity: float | None = Field(default=None, description="cosine(question, chunk) when known.")
    flags: list[str] = Field(
        default_factory=list,
        description="Prompt-injection screen flags; flagged evidence is never sent to a model or cited.",
    )

    @property
    def usable(self) -> bool:
        return not self.flags

    def context_text(self) -> str:
        """Title, headings and body: what a reader of this source sees."""
        return "\n".join([self.title, *self.heading_path, self.text])


def evidence_for(n: int, evidence: list[Evidence]) -> Evidence | None:
    """The usable source a citation ``[n]`` points at, or None."""
    if n < 1 or n > len(evidence) or not evidence[n - 1].usable:
        return None
    return evidence[n - 1]
