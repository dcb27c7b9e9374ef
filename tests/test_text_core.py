"""The text core: folding, one analyzer for index and queries, identifiers kept whole, snippets in
character offsets, and multilingual pages found through BM25."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tantivy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import generations as gens
from indexer.build import BuildRequest, build_collection
from indexer.embedding import Embedder
from indexer.errors import FormatMismatch
from indexer.lexical import LexicalIndex, query_terms
from indexer.models import ChunkFilter
from indexer.text import (
    ANALYZER_NAME,
    build_analyzer,
    byte_to_char_offsets,
    content_terms,
    fold,
    fold_text,
    identifier_terms,
    identifiers,
    snippet,
    stem,
    terms,
    words,
)
from server.answering.cache import signature
from server.answering.grounding import terms as grounding
from server.retrieval.rewriting import keyword_form
from server.retrieval.service import Access
from tests.conftest import REPO, open_service, settings_for

MULTILINGUAL = REPO / "tests" / "fixtures" / "multilingual"
EVERYONE = Access(tenant="default", allowed=lambda _name: True)

# ----------------------------------------------------------------------------- folding and offsets


@pytest.mark.parametrize(
    ("written", "folded"),
    [
        ("Crème Brûlée", "creme brulee"),
        ("Straße", "strasse"),
        ("ΟΔΟΣ", "οδοσ"),
        ("οδός", "οδοσ"),
        ("ﬁle", "file"),
        ("ＡＢＣ", "abc"),
        ("cafe\u0301", "cafe"),
        ("が", "が"),  # the kana voicing mark changes the word: it is not an accent
    ],
)
def test_folding_removes_case_accents_and_compatibility_forms(written: str, folded: str):
    assert fold_text(written) == folded
    assert terms(written) == terms(folded)


def test_lone_surrogates_separate_words_instead_of_failing():
    assert terms("session\ud800cookie") == ["session", "cooki"]
    assert query_terms("crème\udfffbrûlée").groups == (("creme",), ("brule",))


def test_folded_spans_map_back_to_whole_original_characters():
    source = "Die Straße, cafe\u0301 und Crème"
    folded = fold(source)
    for word in ("strasse", "cafe", "creme"):
        start = folded.text.index(word)
        begin, end = folded.source_span(start, start + len(word))
        assert fold_text(source[begin:end]) == word, source[begin:end]
    # The accent that folded away after `cafe` belongs to the word, not to the text after it.
    start = folded.text.index("cafe")
    assert source[slice(*folded.source_span(start, start + 4))] == "cafe\u0301"


def test_byte_offsets_become_character_offsets():
    text = "é♥x東"
    byte_positions = [0, 2, 5, 6, 9]
    assert byte_to_char_offsets(text, byte_positions) == [0, 1, 2, 3, 4]
    assert byte_to_char_offsets(text, [1, 3]) == [0, 1]  # inside a character: its start


def _fold_one_by_one(text: str) -> tuple[str, list[int]]:
    """The definition folding must keep: every character folded on its own, its origin repeated."""
    from indexer.text.folding import fold_char

    pieces, origin = [], []
    for index, char in enumerate(text):
        piece = fold_char(char)
        pieces.append(piece)
        origin += [index] * len(piece)
    return "".join(pieces), origin


def _byte_offsets_one_by_one(text: str, offsets: list[int]) -> list[int]:
    ends, total = [], 0
    for char in text:
        total += len(char.encode("utf-8"))
        ends.append(total)
    import bisect

    return [bisect.bisect_right(ends, offset) for offset in offsets]


# ASCII runs, accents, ligatures, `ß`, CJK, combining marks and emoji: the run-at-a-time fast paths
# must give exactly what folding one character at a time gives.
_MIXED_TEXT = st.text(
    alphabet=st.sampled_from(list("aZ09 _.(/-\n") + list("éÉßﬁ東ς\u0301\u3099か♥😀Ωк")), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(_MIXED_TEXT)
def test_run_at_a_time_folding_equals_folding_each_character(text: str):
    folded = fold(text)
    expected_text, expected_origin = _fold_one_by_one(text)
    assert folded.text == expected_text == fold_text(text)
    assert list(folded.origin) == expected_origin
    encoded = len(folded.text.encode("utf-8"))
    offsets = list(range(encoded + 1))
    assert byte_to_char_offsets(folded.text, offsets) == _byte_offsets_one_by_one(folded.text, offsets)


# ----------------------------------------------------------------------------- terms and identifiers


@pytest.mark.parametrize(
    ("text", "identifier", "index_term"),
    [
        ("Call select_related on the queryset.", "select_related", "select_related"),
        ("Override __init__ in the subclass.", "__init__", "__init__"),
        ("Set DEFAULT_AUTO_FIELD in settings.", "DEFAULT_AUTO_FIELD", "default_auto_field"),
        ("The client sends tools/call with arguments.", "tools/call", "tools/call"),
        ("Session.delete() removes the row.", "Session.delete()", "session.delete"),
        ("Run it with --dry-run first.", "--dry-run", "--dry-run"),
    ],
)
def test_identifiers_survive_tokenisation_whole(text: str, identifier: str, index_term: str):
    assert identifier in identifiers(text)
    assert index_term in identifier_terms(text)  # what the `idents` field holds
    assert index_term in query_terms(text).identifiers  # what a BM25 query looks up
    assert identifier in keyword_form(text).split()  # the rewrite keeps it verbatim
    assert identifier in signature(text)  # the cache tells questions about it apart
    assert identifier in grounding.identifiers(text)  # grounding checks it against sources


def test_words_split_identifiers_so_prose_still_matches():
    assert terms("select_related") == terms("select related")
    # An identifier's words are one phrase in a query, not two loose words.
    assert ("select", "relat") in query_terms("use select_related").groups


def test_grounding_and_bm25_stem_by_the_same_function():
    text = "Routing the configured routes, Straße und Größe: 4.2.1 crème"
    assert grounding.term_of("Routing") == stem("routing") == terms("routes")[0]
    assert grounding.content_terms(text) == content_terms(text)
    assert content_terms(text) <= set(terms(text))
    assert terms(text) == [stem(word) for word in words(text)]
    assert stem("routing") == stem("routes") == "rout"


@given(st.text(max_size=80))
@settings(max_examples=150, deadline=None)
def test_terms_are_the_stems_of_the_words_on_any_text(text: str):
    assert terms(text) == [stem(word) for word in words(text)]


def test_stopwords_come_from_the_package_data_file():
    shipped = (REPO / "indexer" / "text" / "stopwords_en.txt").read_text(encoding="utf-8").split()
    assert "the" in shipped
    assert content_terms("the of and with") == set()
    assert content_terms("the configuration") == {stem("configuration")}


def test_japanese_text_is_split_into_terms():
    assert terms("東京の天気") == ["東", "京", "の", "天", "気"]
    groups = query_terms("東京の天気").groups
    assert ("東", "京") in groups and ("天", "気") in groups  # adjacent pairs as phrases


# ----------------------------------------------------------------------------- rewrites keep every script


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("How do I make crème brûlée?", ["crème", "brûlée"]),
        ("What is über-config?", ["über", "config"]),
        ("東京の天気は？", ["東京の天気は"]),
        ("Πώς γίνεται η εγκατάσταση;", ["πώς", "γίνεται", "εγκατάσταση"]),
    ],
)
def test_keyword_rewrite_keeps_non_ascii_words(query: str, kept: list[str]):
    assert keyword_form(query).split() == kept


def test_keyword_rewrite_drops_redaction_placeholders():
    assert keyword_form("why is [REDACTED:email] locked out of the admin") == "locked admin"


# ----------------------------------------------------------------------------- snippets

_WORDS = [
    "crème",
    "brûlée",
    "Straße",
    "ΟΔΟΣ",
    "οδός",
    "東京",
    "天気",
    "session",
    "cookie",
    "über",
    "ﬁle",
    "3",
]


@pytest.fixture(scope="module")
def vocabulary_index(tmp_path_factory: pytest.TempPathFactory) -> tantivy.Index:
    """A real index with the analyzer registered; it holds every word, as snippets only highlight
    terms the index knows."""
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body", stored=False, tokenizer_name=ANALYZER_NAME)
    index = tantivy.Index(builder.build(), path=str(tmp_path_factory.mktemp("vocabulary")))
    index.register_tokenizer(ANALYZER_NAME, build_analyzer())
    writer = index.writer(15_000_000, 1)
    writer.add_document(tantivy.Document(body=[fold_text(" ".join(_WORDS))]))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


def _generator(index: tantivy.Index, query_words: list[str]) -> tuple[tantivy.SnippetGenerator, set[str]]:
    wanted = {term for word in query_words for term in terms(word)}
    query = tantivy.Query.boolean_query(
        [(tantivy.Occur.Should, tantivy.Query.term_query(index.schema, "body", t)) for t in sorted(wanted)]
    )
    return tantivy.SnippetGenerator.create(index.searcher(), query, index.schema, "body"), wanted


def test_snippets_of_non_ascii_text_are_not_garbled(vocabulary_index: tantivy.Index):
    generator, wanted = _generator(vocabulary_index, ["session", "cookie", "crème"])
    source = "The user’s session cookie ♥♥ lives next to the crème."
    found = snippet(generator, "body", source, wanted)
    assert found is not None
    # Tantivy ends a fragment at its last term, so the full stop is not part of it.
    assert found.render() == "The user’s **session** **cookie** ♥♥ lives next to the **crème**"


def test_touching_cjk_highlights_render_as_one_emphasis(vocabulary_index: tantivy.Index):
    generator, wanted = _generator(vocabulary_index, ["東京"])
    found = snippet(generator, "body", "明日の東京は雨", wanted)
    assert found is not None
    assert found.render() == "明日の**東京**は雨"


@given(
    pieces=st.lists(st.tuples(st.text(max_size=12), st.sampled_from(_WORDS)), min_size=1, max_size=8),
    tail=st.text(max_size=12),
    query_words=st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4),
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_highlight_is_a_query_term_and_the_snippet_is_the_source(
    vocabulary_index: tantivy.Index, pieces: list[tuple[str, str]], tail: str, query_words: list[str]
):
    source = "".join(noise + word for noise, word in pieces) + tail
    generator, wanted = _generator(vocabulary_index, query_words)
    found = snippet(generator, "body", source, wanted)
    if found is None:
        return
    assert source[found.start : found.start + len(found.text)] == found.text
    previous_end = 0
    for begin, end in found.highlights:
        assert previous_end <= begin < end <= len(found.text)
        assert terms(found.text[begin:end]) in ([t] for t in wanted), found.text[begin:end]
        previous_end = end


# ----------------------------------------------------------------------------- multilingual pages via BM25


@pytest.fixture(scope="module")
def multilingual_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, embedder: Embedder) -> Path:
    data_dir = tmp_path_factory.mktemp("multilingual-data")
    request = BuildRequest(collection="world", source=MULTILINGUAL, version="1")
    build_collection(settings_for(data_dir, model_dir), request, embedder=embedder)
    return data_dir


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("crème brûlée", "desserts-fr.md"),
        ("creme brulee", "desserts-fr.md"),
        ("CRÈME BRÛLÉE caramélisée", "desserts-fr.md"),
        ("über-config Größe", "konfiguration-de.md"),
        ("uber-config grosse", "konfiguration-de.md"),
        ("οδηγός εγκατάστασης", "odigos-el.md"),
        ("ΟΔΗΓΟΣ ΕΓΚΑΤΑΣΤΑΣΗΣ", "odigos-el.md"),
        ("οδηγος εγκαταστασης", "odigos-el.md"),
        ("東京の天気", "tenki-ja.md"),
        ("天気予報はいつ更新されますか", "tenki-ja.md"),
    ],
)
def test_accented_and_japanese_pages_are_found_through_bm25(
    multilingual_dir: Path, model_dir: Path, embedder: Embedder, query: str, page: str
):
    service = open_service(multilingual_dir, model_dir, embedder)
    result = service.search(EVERYONE, query, k=5).result
    ranks = {hit.source.split("#")[0]: hit.bm25_rank for hit in result.hits}
    assert ranks.get(page) == 1, (query, ranks)

    lexical = service.catalog.view().snapshots["world"].lexical
    top = lexical.search(query, ChunkFilter(collections=("world",)), 1)
    assert top and lexical.get(top[0].chunk_id).path == page  # type: ignore[union-attr]


def test_the_snippet_of_an_accented_page_shows_its_own_spelling(
    multilingual_dir: Path, model_dir: Path, embedder: Embedder
):
    service = open_service(multilingual_dir, model_dir, embedder)
    hits = service.search(EVERYONE, "creme brulee", k=1).result.hits
    assert "**crème** **brûlée**" in hits[0].snippet.lower(), hits[0].snippet


def test_grounding_terms_are_the_terms_the_index_holds(multilingual_dir: Path, model_dir: Path):
    collections = settings_for(multilingual_dir, model_dir).collections_dir
    snapshot_dir = gens.generation_dir(collections, "world", 1)
    lexical = LexicalIndex(snapshot_dir / "tantivy")
    searcher = lexical._index.searcher()  # reading raw terms is the point here
    schema = lexical._index.schema
    for word in ("caramélise", "Größe", "εγκατάσταση", "天気"):
        for term in grounding.content_terms(word):
            hits = searcher.search(tantivy.Query.term_query(schema, "body", term), 1).hits
            assert hits, (word, term)


# ----------------------------------------------------------------------------- format version


def test_an_older_index_format_is_refused_and_a_build_replaces_it(
    tmp_path: Path, model_dir: Path, embedder: Embedder, multilingual_dir: Path
):
    data_dir = tmp_path / "data"
    shutil.copytree(multilingual_dir, data_dir)
    settings = settings_for(data_dir, model_dir)
    gen_dir = gens.generation_dir(settings.collections_dir, "world", 1)
    manifest_path = gen_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(FormatMismatch, match=r"index format 1.*docgate-index build"):
        gens.read_manifest(gen_dir)
    refused = open_service(data_dir, model_dir, embedder).catalog.view()
    assert "world" not in refused.snapshots
    assert "index format 1" in refused.unavailable["world"]

    request = BuildRequest(collection="world", source=MULTILINGUAL, version="1", incremental=True)
    summary = build_collection(settings, request, embedder=embedder)
    assert summary.generation == 2
    assert gens.read_manifest(gens.generation_dir(settings.collections_dir, "world", 2)).format_version == (
        gens.FORMAT_VERSION
    )
