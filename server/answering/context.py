"""Context selection: which retrieved chunks the answer writer sees, numbered from 1.

Whole chunks in rank order within a token budget. Chunks flagged by the injection screen stay in
the numbered list (so the numbers match retrieval) but are never sent to a model, quoted or cited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from server.answering.grounding.evidence import Evidence
from server.retrieval.hybrid import Candidate
from server.security import guards


@dataclass
class Retrieved:
    """Retrieval candidates and the context selected from them."""

    candidates: list[Candidate]
    evidence: list[Evidence]  # the context: what the writer sees, numbered from 1
    context_tokens: int
    flagged: list[str]
    timings_ms: dict[str, float]


def select_context(
    candidates: Sequence[Candidate],
    budget: int,
    count_tokens: Callable[[str], int],
    truncate_to_tokens: Callable[[str, int], str],
) -> tuple[list[Evidence], int, list[str]]:
    """The numbered evidence, the tokens it uses and the IDs of flagged chunks."""
    evidence: list[Evidence] = []
    flagged: list[str] = []
    used = 0
    for candidate in candidates:
        chunk = candidate.chunk
        flags = guards.screen(chunk.text)
        if flags:
            flagged.append(chunk.chunk_id)
        else:
            cost = count_tokens(chunk.text)
            if used + cost > budget:
                if evidence:
                    continue  # a smaller chunk further down may still fit; keep rank order
                # Even the best chunk alone is over budget: take its opening.
                chunk = chunk.model_copy(update={"text": truncate_to_tokens(chunk.text, budget)})
                cost = budget
            used += cost
        evidence.append(
            Evidence(
                chunk_id=chunk.chunk_id,
                title=chunk.title,
                heading_path=chunk.heading_path,
                source=chunk.source,
                text=chunk.text,
                retrieval_score=candidate.score,
                dense_similarity=candidate.dense_score,
                flags=flags,
            )
        )
    return evidence, used, flagged
