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

STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "can't",
        "cannot",
        "could",
        "couldn't",
        "did",
        "didn't",
        "do",
        "does",
        "doesn't",
        "doing",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "hadn't",
        "has",
        "hasn't",
        "have",
        "haven't",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "i'd",
        "i'll",
        "i'm",
        "i've",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "let's",
        "me",
        "more",
        "most",
        "mustn't",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "shan't",
        "she",
        "should",
        "shouldn't",
        "so",
        "some",
        "such",
        "than",
        "that",
        "that's",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "there's",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "wasn't",
        "we",
        "were",
        "weren't",
        "what",
        "what's",
        "when",
        "when's",
        "where",
        "where's",
        "which",
        "while",
        "who",
        "who's",
        "whom",
        "why",
        "why's",
        "with",
        "won't",
        "would",
        "wouldn't",
        "you",
        "you'd",
        "you'll",
        "you're",
        "you've",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "please",
        "possible",
        "way",
        "ways",
        "want",
        "wanted",
        "need",
        "needs",
        "use",
        "using",
        "used",
        "get",
        "make",
        "made",
        "best",
        "thing",
        "things",
        "just",
        "also",
        "really",
        "like",
        "tell",
        "show",
        "explain",
        "example",
        "examples",
        "e.g",
        "i.e",
    ]
)
QUESTION_LEAD = re.compile(
    r"^\s*(how (do|can|should|would) (i|we|you)|how to|what is the (best|right|correct) way to|"
    r"is (it|there) (possible|a way) to|can (i|we|you)|what('s| is| are| does)|why (does|is|do)|where (do|is|can)|"
    r"when (should|do|does)|which)\b",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"`[^`]+`|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?|\d+(?:\.\d+)*")


def _is_identifier(token: str) -> bool:
    return "_" in token or "." in token or token.endswith("()") or any(c.isupper() for c in token[1:])


def keyword_form(query: str) -> str:
    """`How do I make a field optional in a model?` → `field optional model`."""
    text = QUESTION_LEAD.sub(" ", query)
    kept: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match.group(0).strip("`")
        if _is_identifier(token) or token.isdigit():
            kept.append(token)
        elif token.lower() not in STOPWORDS and len(token) > 1:
            kept.append(token.lower())
    return " ".join(dict.fromkeys(kept))


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
            for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]+", heading)
            if w.lower() not in STOPWORDS and len(w) > 2
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
