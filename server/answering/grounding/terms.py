"""Terms, identifiers and numbers of claims, questions and sources, as grounding compares them.

Stopwords, question words, the analyzer and the identifier extractor are the text core's, so a
claim's terms are the very terms BM25 matched.
"""

from __future__ import annotations

import re

from indexer.text import QUESTION_WORDS, STOPWORDS, fold_text
from indexer.text import content_terms as _content_terms
from indexer.text import identifiers as identifiers  # the text core's, re-exported for answering
from indexer.text import numbers as numbers
from indexer.text import terms as bm25_terms
from indexer.text.identifiers import CITATION_MARKER, code_names
from server.answering.grounding.claims import FENCE_OPEN

# A capitalised word or acronym that does not start a sentence: a product or API name (Rails, REST).
_ENTITY = re.compile(r"(?<=[\w,;:\"'()]\s)[A-Z][A-Za-z0-9]+")


def term_of(word: str) -> str:
    """The BM25 term of one word; a word the analyzer splits (an identifier) stays whole, folded."""
    found = bm25_terms(word)
    return found[0] if len(found) == 1 else fold_text(word)


def content_terms(text: str, extra_stopwords: frozenset[str] = frozenset()) -> set[str]:
    """Stemmed content words of `text` (stopwords and citation markers removed)."""
    return _content_terms(CITATION_MARKER.sub(" ", text), extra_stopwords)


def identifier_in(ident: str, source: str) -> bool:
    """Is `ident` in the source text? Exact for code, with a few forgiving equivalences."""
    if ident in source:
        return True
    if ident.endswith("()") and re.search(rf"(?<![\w]){re.escape(ident[:-2])}(?![\w])", source):
        return True  # "save()" vs "the save method"
    normalised = " ".join(ident.split())
    if " " in normalised:
        if normalised in " ".join(source.split()):
            return True
        # A backticked snippet (`pip install foo`): every code-looking word must be in the source.
        words = [w for w in re.findall(r"[\w.\-/]+", normalised) if len(w) > 1]
        return all(identifier_in(w, source) for w in words)
    return False


def code_block_names(block: str) -> list[str]:
    """API-looking names in a code block: dotted names, calls, UPPER_CASE and snake_case."""
    body = "\n".join(line for line in block.splitlines() if not FENCE_OPEN.match(line))
    return code_names(body)


def question_terms(question: str) -> tuple[set[str], list[str]]:
    """Stemmed key terms of a question (question words dropped) and its identifiers/entities."""
    terms = content_terms(question, QUESTION_WORDS)
    entities = identifiers(question) + [e for e in _ENTITY.findall(question) if fold_text(e) not in STOPWORDS]
    return terms, list(dict.fromkeys(entities))
