"""Terms: the one Tantivy analyzer behind BM25, grounding overlap and snippet highlights.

Text is folded first (`indexer.text.folding`), then this analyzer splits and stems it. The index
registers it for its BM25 fields and every query is analyzed by the very same analyzer, so a word
matches exactly when both sides produce the same term.

Pipeline: regex tokenizer → lowercase → ascii_fold → remove_long(40) → English Snowball stemmer.
The tokenizer emits, leftmost first:

* dotted numbers whole (`4.2.1`), so a version is one term;
* one term per CJK character (Han, Hiragana, Katakana);
* runs of other letters, digits and marks (`creme`, `uber`, `config`).

CJK: one term per character (unigrams), not character bigrams. A Tantivy regex tokenizer cannot
emit overlapping matches, tantivy-py bundles no dictionary-based Japanese or Chinese tokenizer, and
its n-gram tokenizer would cut Latin words into n-grams too. Unigrams are what Lucene's standard
tokenizer does with ideographs; they find every page that shares the query's characters. The
query side recovers bigram precision with phrase clauses over touching characters (see
`indexer.lexical`), which needs no extra index field because positions are indexed.

Identifiers are split here (`select_related` → `select`, `relat`) so prose words match; the exact
identifier is kept whole by `indexer.text.identifiers` for its own field.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

import tantivy

from indexer.text.folding import fold_text

ANALYZER_NAME = "docgate_text_v2"
"""Name the index registers the analyzer under; a new name whenever its terms change."""

MAX_TERM_CHARS = 40
_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
TOKEN_PATTERN = rf"\p{{N}}+(?:\.\p{{N}}+)+|[{_CJK}]|[[\p{{L}}\p{{N}}\p{{M}}]--[{_CJK}]]+"


def _builder() -> tantivy.TextAnalyzerBuilder:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(TOKEN_PATTERN))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.remove_long(MAX_TERM_CHARS))
    )


def build_analyzer() -> tantivy.TextAnalyzer:
    """The BM25 analyzer, to register on an index under `ANALYZER_NAME`."""
    return _builder().filter(tantivy.Filter.stemmer("english")).build()


def _build_word_analyzer() -> tantivy.TextAnalyzer:
    """The same pipeline without its last step, the stemmer: words before stemming."""
    return _builder().build()


def _build_stemmer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.raw()).filter(tantivy.Filter.stemmer("english")).build()
    )


# Analyzers are native objects borrowed mutably while they run: one set per thread.
_local = threading.local()


def _analyzers() -> tuple[tantivy.TextAnalyzer, tantivy.TextAnalyzer, tantivy.TextAnalyzer]:
    cached: tuple[tantivy.TextAnalyzer, tantivy.TextAnalyzer, tantivy.TextAnalyzer] | None = getattr(
        _local, "analyzers", None
    )
    if cached is None:
        cached = (build_analyzer(), _build_word_analyzer(), _build_stemmer())
        _local.analyzers = cached
    return cached


def analyze_folded(folded: str) -> list[str]:
    """BM25 terms of text that is already folded."""
    terms: list[str] = _analyzers()[0].analyze(folded)
    return terms


def terms(text: str) -> list[str]:
    """BM25 terms of `text`, in order, repeats kept: exactly what the index holds for it."""
    return analyze_folded(fold_text(text))


def words(text: str) -> list[str]:
    """Folded words of `text` before stemming, in order (for stopword decisions)."""
    found: list[str] = _analyzers()[1].analyze(fold_text(text))
    return found


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The stemmer of the BM25 analyzer applied to one folded word (`routing` → `rout`)."""
    stemmed: list[str] = _analyzers()[2].analyze(word)
    return stemmed[0] if stemmed else word


def _word_list(name: str) -> frozenset[str]:
    text = resources.files("indexer.text").joinpath(name).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


STOPWORDS = _word_list("stopwords_en.txt")
QUESTION_WORDS = _word_list("question_words_en.txt")


def is_content_word(word: str, extra_stopwords: Iterable[str] = ()) -> bool:
    """A folded word that says something: not a stopword, and longer than one letter (CJK and
    digits excepted, where one character is a whole word)."""
    if word in STOPWORDS or word in extra_stopwords:
        return False
    return len(word) > 1 or word.isdigit() or is_cjk(word)


def content_terms(text: str, extra_stopwords: frozenset[str] = frozenset()) -> set[str]:
    """Stemmed content terms of `text`: the BM25 terms of its non-stopwords."""
    return {stem(w) for w in words(text) if is_content_word(w, extra_stopwords)}


def is_cjk(text: str) -> bool:
    """Is the first character Han, Hiragana or Katakana (the scripts split per character)?"""
    if not text:
        return False
    code = ord(text[0])
    return (
        0x3040 <= code <= 0x30FF  # Hiragana, Katakana
        or 0x3400 <= code <= 0x4DBF  # CJK Extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK Unified Ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK Compatibility Ideographs
        or 0x31F0 <= code <= 0x31FF  # Katakana phonetic extensions
        or 0x20000 <= code <= 0x3FFFF  # CJK Extensions B and later
    )


def tokens(folded: str) -> list[tuple[str, int, int]]:
    """(term, start, end) of each BM25 term of already folded text, offsets in characters."""
    return [
        (t.text, t.char_offset_from, t.char_offset_to) for t in _analyzers()[0].pre_tokenize(folded).tokens
    ]
