"""Offline, deterministic query rewrites.

Published results (and our evals) say rewriting helps the weak retriever, BM25 on natural-language
questions, and tends to hurt a strong dense retriever. So the original question always goes to
both retrievers, and the rewrites are shaped for BM25:

1. keyword form: the question without question words, filler and stopwords, identifiers kept
   verbatim (`select_related`, `DEFAULT_AUTO_FIELD`, `__init__`);
2. feedback form: the keyword form plus terms mined from the collection itself: the most
   frequent content words of the headings of the top BM25 hits for the keyword form
   (pseudo-relevance feedback on the docs' own vocabulary, which is what users lack).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from indexer.text import PLACEHOLDER, QUESTION_WORDS, fold_text, identifiers
from indexer.text.analysis import is_content_word
from indexer.text.identifiers import ABBREVIATIONS

# Stopwords and the words that shape a question; both lists live in the text core.
FILLER = QUESTION_WORDS
QUESTION_LEAD = re.compile(
    r"^\s*(how (do|can|should|would) (i|we|you)|how to|what is the (best|right|correct) way to|"
    r"is (it|there) (possible|a way) to|can (i|we|you)|what('s| is| are| does)|why (does|is|do)|where (do|is|can)|"
    r"when (should|do|does)|which)\b",
    re.IGNORECASE,
)
# A word in any script (`crème`, `über`, `東京`), a dotted number, or a backticked span.
_TOKEN = re.compile(r"`[^`]+`|\d+(?:\.\d+)+|\w+", re.UNICODE)


@lru_cache(maxsize=4096)
def keyword_form(query: str) -> str:
    """`How do I make a field optional in a model?` → `field optional model`.

    Cached: a search asks for it twice (its own rewrite, then the rewrite with feedback terms),
    and agents page through and repeat their queries.

    Identifiers stay verbatim (`select_related`, `__init__`, `tools/call`); other words are kept
    in their original spelling, lowercased, unless they are stopwords or question words by the
    text core's lists (compared folded, so `Über` and `uber` are decided alike). The query is
    already redacted; redaction placeholders are dropped.
    """
    text = QUESTION_LEAD.sub(" ", PLACEHOLDER.sub(" ", query))
    code = [ident for ident in identifiers(text) if " " not in ident]
    kept: list[tuple[int, str]] = [(text.find(ident), ident) for ident in code]
    for match in _TOKEN.finditer(_mask(text, code)):
        token = match.group(0).strip("`").strip()
        if not token or token in code or token.lower() in ABBREVIATIONS:
            continue
        if token.isdigit() or "." in token or is_content_word(fold_text(token), FILLER):
            kept.append((match.start(), token.lower()))
    return " ".join(dict.fromkeys(token for _, token in sorted(kept)))


def _mask(text: str, code: list[str]) -> str:
    """`text` with each identifier blanked (same length, so offsets still order the words), so
    the parts of an identifier are not kept a second time as words."""
    for ident in sorted(code, key=len, reverse=True):
        text = text.replace(ident, " " * len(ident))
    return text


def feedback_terms(
    query_terms: Sequence[str], feedback_headings: Sequence[Sequence[str]], limit: int = 3
) -> list[str]:
    """Content words that recur in the headings of the top hits but are absent from the query."""
    present = {t.lower() for t in query_terms}
    counts: Counter[str] = Counter()
    for headings in feedback_headings:
        words = {
            w.lower()
            for heading in headings
            for w in re.findall(r"\w+", heading)
            if is_content_word(fold_text(w), FILLER) and len(w) > 2
        }
        counts.update(words - present)
    # A term must recur in at least two of the feedback hits to count as the collection's vocabulary.
    return [term for term, count in counts.most_common() if count >= 2][:limit]


def rewrite(query: str, feedback_headings: Sequence[Sequence[str]] | None = None) -> list[str]:
    """Up to two alternative phrasings, distinct from the original and from each other."""
    variants: list[str] = []
    keywords = keyword_form(query)
    if keywords and keywords.lower() != query.strip().lower():
        variants.append(keywords)
    if feedback_headings:
        extra = feedback_terms(keywords.split() or query.split(), feedback_headings)
        if extra:
            variants.append(" ".join([keywords or query.strip(), *extra]))
    return list(dict.fromkeys(v for v in variants if v))
