"""Which of the question's key terms an answer covers, reported with every `grounded_answer` result.

A reader (or the calling model) sees at a glance whether the answer speaks to the whole question
or only to part of it: "cancel" covered but "task" not means the answer is about something else.
Terms are the question's own words (first spelling), identifiers as written; a word counts as
covered when the answer has it or a word of the same stem family ("cancel" / "cancellation").
"""

from __future__ import annotations

import re

from server.answering.grounding.terms import content_terms, identifiers, question_terms
from server.answering.pages import related
from server.answering.results import TermCoverage

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def term_coverage(question: str, answer: str) -> list[TermCoverage]:
    stems, _ = question_terms(question)
    answer_terms = content_terms(answer)
    lowered = answer.lower()
    out: list[TermCoverage] = []
    seen: set[str] = set()
    idents = identifiers(question)
    inside: set[str] = set()
    for ident in idents:
        out.append(TermCoverage(term=ident, covered=ident.lower() in lowered))
        inside.update(content_terms(ident))
    for word in _WORD.findall(question):
        stem = next(iter(content_terms(word)), None)
        if stem is None or stem not in stems or stem in seen or stem in inside:
            continue
        seen.add(stem)
        covered = any(related(stem, t) for t in answer_terms)
        out.append(TermCoverage(term=word, covered=covered))
    return out
