"""The text core: every text-analysis rule, in one place.

Indexing, BM25 queries, query rewrites, snippets, grounding, the answer cache's identifier check
and PII redaction all analyse text by these rules, so that a word, a term, an identifier or an
offset means the same thing everywhere:

* `folding`: NFKC, case and accent folding for matching, with a map back to original offsets,
  and the one conversion of Tantivy's byte offsets to character offsets;
* `analysis`: the Tantivy analyzer of the BM25 fields (the one tokenizer and stemmer), stopwords
  and content terms;
* `identifiers`: code identifiers kept whole, and numbers;
* `snippets`: highlighted passages shown in the original text;
* `pii`: redaction of personal data and secrets.
"""

from indexer.text.analysis import (
    ANALYZER_NAME,
    QUESTION_WORDS,
    STOPWORDS,
    build_analyzer,
    content_terms,
    stem,
    terms,
    words,
)
from indexer.text.folding import byte_to_char_offsets, fold, fold_text
from indexer.text.identifiers import identifier_terms, identifiers, numbers
from indexer.text.pii import PLACEHOLDER, find_pii, redact
from indexer.text.snippets import Snippet, snippet

__all__ = [
    "ANALYZER_NAME",
    "PLACEHOLDER",
    "QUESTION_WORDS",
    "STOPWORDS",
    "Snippet",
    "build_analyzer",
    "byte_to_char_offsets",
    "content_terms",
    "find_pii",
    "fold",
    "fold_text",
    "identifier_terms",
    "identifiers",
    "numbers",
    "redact",
    "snippet",
    "stem",
    "terms",
    "words",
]
