"""Tantivy: the chunk store and the BM25 index of one generation.

Fields: `title` and `headings` are boosted over `body`; all three hold folded text analysed by the
text core's analyzer (`indexer.text.analysis`, registered on the index), and queries are analysed
by the same analyzer and built from its terms directly, so user text never reaches Tantivy's query
parser. `idents` holds code identifiers (`select_related`, `DEFAULT_AUTO_FIELD`, `tools/call`)
folded but unsplit, because the word analyzer breaks them into common words and loses the exact
match agents search for. `payload` stores the whole chunk as JSON for fetches and snippets;
`path`, `path_prefix`, `collection` and `version` are raw terms for filters and neighbour lookups.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tantivy

from indexer.errors import CorruptGeneration
from indexer.models import Chunk, ChunkFilter
from indexer.text import ANALYZER_NAME, PLACEHOLDER, build_analyzer, fold_text, identifier_terms, snippet
from indexer.text.analysis import is_cjk, tokens

FIELD_BOOSTS = {"title": 2.5, "headings": 2.0, "body": 1.0}
IDENT_BOOST = 3.0
WRITER_HEAP_BYTES = 128 * 1024 * 1024
# A generation never changes, so what was read from it is kept: parsed chunks (payload lookups were
# a fifth of a search's CPU under load) and the chunk ID behind each document address a search hit.
CHUNK_CACHE_SIZE = 8192
ADDRESS_CACHE_SIZE = 65536


def build_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("collection", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("version", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("path", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("path_prefix", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("has_code", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=False, tokenizer_name=ANALYZER_NAME)
    builder.add_text_field("headings", stored=False, tokenizer_name=ANALYZER_NAME)
    builder.add_text_field("body", stored=False, tokenizer_name=ANALYZER_NAME)
    builder.add_text_field("idents", stored=False, tokenizer_name="whitespace", index_option="freq")
    builder.add_integer_field("position", stored=False, indexed=True, fast=True)
    builder.add_bytes_field("payload", stored=True, indexed=False)
    return builder.build()


def path_prefixes(path: str) -> list[str]:
    """`a/b/c.html` → `a`, `a/b`, `a/b/c.html`: a prefix filter becomes one term lookup."""
    parts = path.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def write_index(directory: Path, chunks: Iterable[Chunk]) -> int:
    """Write a fresh index of `chunks` into an empty directory; returns the count. Committed on return."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = build_schema()
    index = tantivy.Index(schema, path=str(directory))
    index.register_tokenizer(ANALYZER_NAME, build_analyzer())
    writer = index.writer(WRITER_HEAP_BYTES, 1)
    count = 0
    for chunk in chunks:
        doc = tantivy.Document()
        doc.add_text("chunk_id", chunk.chunk_id)
        doc.add_text("collection", chunk.collection)
        doc.add_text("version", chunk.version)
        doc.add_text("path", chunk.path)
        for prefix in path_prefixes(chunk.path):
            doc.add_text("path_prefix", prefix)
        doc.add_text("has_code", "1" if chunk.has_code else "0")
        doc.add_text("title", fold_text(chunk.title))
        doc.add_text("headings", fold_text(" ".join(chunk.heading_path)))
        doc.add_text("body", fold_text(chunk.text))
        idents = identifier_terms("\n".join([chunk.title, *chunk.heading_path, chunk.text]))
        if idents:
            doc.add_text("idents", " ".join(idents))
        doc.add_integer("position", chunk.position)
        doc.add_bytes("payload", chunk.model_dump_json().encode("utf-8"))
        writer.add_document(doc)
        count += 1
    writer.commit()
    writer.wait_merging_threads()
    return count


@dataclass(frozen=True)
class LexicalHit:
    chunk_id: str
    score: float


class LexicalIndex:
    """Read side of one generation's Tantivy index."""

    def __init__(self, directory: Path) -> None:
        if not (directory / "meta.json").is_file():
            raise CorruptGeneration(f"Tantivy index missing at {directory}")
        try:
            self._index = tantivy.Index.open(str(directory))
        except ValueError as error:
            raise CorruptGeneration(f"Tantivy index at {directory} will not open: {error}") from error
        self._index.register_tokenizer(ANALYZER_NAME, build_analyzer())
        self._schema = self._index.schema
        self._searcher = self._index.searcher()
        # Bounded by starting afresh when full; dict reads and writes are atomic across threads.
        self._chunks: dict[str, Chunk] = {}
        self._ids_at: dict[tuple[int, int], str] = {}

    @property
    def num_chunks(self) -> int:
        return int(self._searcher.num_docs)

    def _filter_queries(self, flt: ChunkFilter) -> list[tantivy.Query]:
        must: list[tantivy.Query] = []
        if flt.collections:
            must.append(
                tantivy.Query.boolean_query(
                    [
                        (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, "collection", c))
                        for c in flt.collections
                    ]
                )
            )
        if flt.version is not None:
            must.append(tantivy.Query.term_query(self._schema, "version", flt.version))
        if flt.versions:
            must.append(tantivy.Query.term_set_query(self._schema, "version", list(flt.versions)))
        if flt.code_only:
            must.append(tantivy.Query.term_query(self._schema, "has_code", "1"))
        if flt.path_prefix:
            must.append(tantivy.Query.term_query(self._schema, "path_prefix", flt.path_prefix.strip("/")))
        return must

    def text_query(self, text: str) -> tantivy.Query | None:
        """BM25 over boosted title/headings/body plus exact identifier terms; None when nothing is searchable."""
        query = query_terms(text)
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for group in query.groups:
            for field, boost in FIELD_BOOSTS.items():
                if len(group) == 1:
                    clause = tantivy.Query.term_query(self._schema, field, group[0])
                else:
                    clause = tantivy.Query.phrase_query(self._schema, field, list(group))
                clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(clause, boost)))
        for ident in query.identifiers:
            term = tantivy.Query.term_query(self._schema, "idents", ident)
            clauses.append((tantivy.Occur.Should, tantivy.Query.boost_query(term, IDENT_BOOST)))
        if not clauses:
            return None
        return tantivy.Query.boolean_query(clauses)

    def search(self, text: str, flt: ChunkFilter, limit: int) -> list[LexicalHit]:
        query = self.text_query(text)
        if query is None:
            return []
        filters = self._filter_queries(flt)
        if filters:
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query), *[(tantivy.Occur.Must, f) for f in filters]]
            )
        result = self._searcher.search(query, limit, count=False)
        return [
            LexicalHit(chunk_id=self._chunk_id_at(address), score=float(score))
            for score, address in result.hits
        ]

    def _chunk_id_at(self, address: tantivy.DocAddress) -> str:
        key = (address.segment_ord, address.doc)
        chunk_id = self._ids_at.get(key)
        if chunk_id is None:
            chunk_id = str(self._searcher.doc(address)["chunk_id"][0])
            if len(self._ids_at) >= ADDRESS_CACHE_SIZE:
                self._ids_at.clear()
            self._ids_at[key] = chunk_id
        return chunk_id

    def _remember(self, chunk: Chunk) -> Chunk:
        if len(self._chunks) >= CHUNK_CACHE_SIZE:
            self._chunks.clear()
        self._chunks[chunk.chunk_id] = chunk
        return chunk

    def snippets(self, text: str, chunk_ids: Iterable[str], max_chars: int = 240) -> dict[str, str]:
        """Best fragment of each chunk's body for `text`, query terms wrapped in ** **."""
        ids = list(dict.fromkeys(chunk_ids))
        query = self.text_query(text)
        if query is None or not ids:
            return {}
        wanted = {term for group in query_terms(text).groups for term in group}
        generator = tantivy.SnippetGenerator.create(self._searcher, query, self._schema, "body")
        generator.set_max_num_chars(max_chars)
        out: dict[str, str] = {}
        for chunk_id, chunk in self.get_many(ids).items():
            found = snippet(generator, "body", chunk.text, wanted)
            if found is not None:
                out[chunk_id] = found.render()
        return out

    def get(self, chunk_id: str) -> Chunk | None:
        return self.get_many([chunk_id]).get(chunk_id)

    def get_many(self, chunk_ids: Iterable[str]) -> dict[str, Chunk]:
        """The stored chunks of these IDs that exist, in the order asked."""
        ids = list(dict.fromkeys(chunk_ids))
        known = {i: c for i in ids if (c := self._chunks.get(i)) is not None}
        missing = [i for i in ids if i not in known]
        if missing:
            query = tantivy.Query.term_set_query(self._schema, "chunk_id", missing)
            for _, address in self._searcher.search(query, len(missing), count=False).hits:
                chunk = self._remember(self._payload(address))
                known[chunk.chunk_id] = chunk
        return {i: known[i] for i in ids if i in known}

    def document_chunks(self, path: str) -> list[Chunk]:
        """Every chunk of one document, in reading order."""
        query = tantivy.Query.term_query(self._schema, "path", path)
        hits = self._searcher.search(query, 100_000, count=False).hits
        return sorted((self._payload(address) for _, address in hits), key=lambda c: c.position)

    def neighbors(self, chunk: Chunk, before: int, after: int) -> list[Chunk]:
        """Chunks of the same document with positions in [pos-before, pos+after], ordered."""
        query = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, tantivy.Query.term_query(self._schema, "path", chunk.path)),
                (
                    tantivy.Occur.Must,
                    tantivy.Query.range_query(
                        self._schema,
                        "position",
                        tantivy.FieldType.Integer,
                        max(0, chunk.position - before),
                        chunk.position + after,
                    ),
                ),
            ]
        )
        hits = self._searcher.search(query, before + after + 1, count=False).hits
        return sorted((self._payload(address) for _, address in hits), key=lambda c: c.position)

    def iter_chunks(self) -> Iterator[Chunk]:
        total = self.num_chunks
        if total == 0:
            return
        hits = self._searcher.search(tantivy.Query.all_query(), total, count=False).hits
        for _, address in hits:
            yield self._payload(address)

    def chunk_ids(self) -> set[str]:
        total = self.num_chunks
        if total == 0:
            return set()
        hits = self._searcher.search(tantivy.Query.all_query(), total, count=False).hits
        return {self._searcher.doc(address)["chunk_id"][0] for _, address in hits}

    def _payload(self, address: tantivy.DocAddress) -> Chunk:
        doc = self._searcher.doc(address)
        return Chunk.model_validate_json(bytes(doc["payload"][0]))


@dataclass(frozen=True)
class QueryTerms:
    """What a query searches: groups of analyzer terms (one term, or a phrase) and identifiers."""

    groups: tuple[tuple[str, ...], ...]
    identifiers: tuple[str, ...]


@lru_cache(maxsize=4096)  # a search analyses its query for BM25, its rewrites and its snippets
def query_terms(text: str) -> QueryTerms:
    """The BM25 terms of a query, grouped the way the index must match them.

    Terms joined by underscores (`select_related` → `select`, `relat`) form a phrase, as the words
    of an identifier stay in order. Touching CJK characters are single terms plus each adjacent
    pair as a phrase: the pairs score pages that hold the word, the singles still find pages that
    write it differently. Redaction placeholders are not search terms.
    """
    text = PLACEHOLDER.sub(" ", text)
    folded = fold_text(text)
    groups: list[tuple[str, ...]] = []
    run: list[tuple[str, int, int]] = []

    def flush() -> None:
        if not run:
            return
        if is_cjk(run[0][0]):
            groups.extend((term,) for term, _, _ in run)
            groups.extend((a[0], b[0]) for a, b in itertools.pairwise(run))
        else:
            groups.append(tuple(term for term, _, _ in run))
        run.clear()

    for token in tokens(folded):
        if run and not _joined(run[-1], token, folded):
            flush()
        run.append(token)
    flush()
    return QueryTerms(groups=tuple(dict.fromkeys(groups)), identifiers=tuple(identifier_terms(text)))


def _joined(before: tuple[str, int, int], after: tuple[str, int, int], folded: str) -> bool:
    """Do two neighbouring query terms belong to one group (CJK characters touching, or words
    joined by underscores only)?"""
    gap = folded[before[2] : after[1]]
    if is_cjk(before[0]) and is_cjk(after[0]):
        return gap == ""
    if is_cjk(before[0]) or is_cjk(after[0]):
        return False
    return bool(gap) and set(gap) == {"_"}
