"""Question relevance: do the retrieved sources address the question at all?

An extractive answer copies source sentences, so its claims always look supported; only this
gate tells that the sources never addressed the question. It blends the best question–source
cosine, how many of the question's key terms (identifiers and named entities weigh more) the
cited sources contain, and the retrieval margin of the top source over the rest.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from server.answering.grounding.claims import FENCE_OPEN, answer_citations
from server.answering.grounding.support import Source, clip, scale
from server.answering.grounding.terms import (
    content_terms,
    identifier_in,
    identifiers,
    question_terms,
    term_of,
)
from server.settings import GroundingSettings


def prose(text: str) -> str:
    """`text` without its fenced code blocks."""
    lines: list[str] = []
    in_code = False
    for line in text.splitlines():
        if FENCE_OPEN.match(line):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return "\n".join(lines)


def relevance(
    question: str,
    answer: str,
    sources: list[Source],
    question_vector: npt.NDArray[np.float32],
    vectors: npt.NDArray[np.float32],
    missing_dense: dict[int, int],
    settings: GroundingSettings,
) -> tuple[float, list[str]]:
    reasons: list[str] = []
    dense_values = [
        float(vectors[missing_dense[s.number]] @ question_vector)
        if s.evidence.dense_similarity is None
        else s.evidence.dense_similarity
        for s in sources
    ]
    dense = scale(max(dense_values), settings.dense_floor, settings.dense_ceiling)

    cited = set(answer_citations(answer))
    scope = [s for s in sources if s.number in cited] or sources
    scope_terms = set().union(*(s.terms for s in scope))
    scope_text = "\n".join(s.text for s in scope)
    # A product named only inside an example ("kubernetes-manager-mcp" in a JSON manifest) is not
    # documented by that source: entities are looked for in prose, outside fenced code.
    prose_text = "\n".join(prose(s.text) for s in scope)
    prose_terms = content_terms(prose_text)
    terms, entities = question_terms(question)
    entity_stems = {term_of(e) for e in entities}
    total = found = 0.0
    for term in terms:
        entity = term in entity_stems
        w = settings.entity_weight if entity else 1.0
        total += w
        found += w if term in (prose_terms if entity else scope_terms) else 0.0
    code_ids = identifiers(question)
    for ident in code_ids:
        if term_of(ident) not in terms:  # multi-word spans are not among the single-word terms
            total += settings.entity_weight
            found += settings.entity_weight if identifier_in(ident, scope_text) else 0.0
    coverage = found / total if total else 1.0
    missing_entities = [
        e for e in entities if not identifier_in(e, prose_text) and term_of(e) not in prose_terms
    ]
    if missing_entities:
        reasons.append("the sources never mention " + ", ".join(missing_entities[:5]))

    scores = sorted((s.evidence.retrieval_score for s in sources), reverse=True)
    if len(scores) > 1 and scores[0] > 0:
        rest = sum(scores[1:]) / (len(scores) - 1)
        margin = scale((scores[0] - rest) / scores[0], 0.0, settings.margin_full)
    else:
        margin = 0.5  # one source: retrieval says nothing about its own confidence

    relevance = (
        settings.dense_weight * dense + settings.coverage_weight * coverage + settings.margin_weight * margin
    ) / (settings.dense_weight + settings.coverage_weight + settings.margin_weight)
    all_text = "\n".join(s.text for s in sources)
    if code_ids and not any(identifier_in(i, all_text) for i in code_ids):
        relevance = min(relevance, settings.missing_identifier_relevance_cap)
    return clip(relevance), reasons
