"""Token counts from cached word counts equal the tokenizer's own count of the whole text."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from indexer.embedding import Embedder
from indexer.embedding.offline import bundled_tokenizer_path
from tests.conftest import FIXTURE_CORPUS


def _reference() -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(bundled_tokenizer_path()))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


REFERENCE = _reference()


def whole_count(text: str) -> int:
    return len(REFERENCE.encode(text, add_special_tokens=False).ids)


# Words shared between examples (so later texts hit the cache), punctuation, JSON escapes, spaces
# in runs, tabs and newlines, accents, CJK, combining marks, control and zero-width characters.
_PIECES = st.sampled_from(
    [
        "select_related",
        "QuerySet.filter()",
        "cache",
        "the",
        "don't",
        "\\n",
        '\\"',
        "  ",
        " ",
        "\t",
        "\n",
        "é",
        "e\u0301",
        "東京",
        "Straße",
        "\u200b",
        "\x1c",
        "\x00",
        "ﬁle",
        "😀",
        "x" * 120,
        "(a,b)",
        "**",
    ]
)
_TEXTS = st.lists(_PIECES, max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(_TEXTS, min_size=1, max_size=5))
def test_counts_from_cached_words_equal_whole_text_counts(embedder: Embedder, texts: list[str]) -> None:
    assert embedder.splits_at_punctuation
    for text in texts:
        assert embedder.count_tokens(text) == whole_count(text), repr(text)
    assert embedder.count_tokens_batch(texts) == [whole_count(t) for t in texts]


def test_counts_of_real_hit_json_equal_whole_text_counts(embedder: Embedder) -> None:
    texts = [
        json.dumps(
            {"snippet": path.read_text(encoding="utf-8", errors="replace")[:3000], "page": path.name},
            ensure_ascii=False,
        )
        for path in sorted(FIXTURE_CORPUS.rglob("*"))
        if path.is_file()
    ]
    assert len(texts) > 3
    for _round in range(2):  # first from the tokenizer (learning the words), then from the cache
        assert [embedder.count_tokens(t) for t in texts] == [whole_count(t) for t in texts]
