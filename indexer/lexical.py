"""Tantivy: the chunk store and the BM25 index of one generation.

Fields: `title` and `headings` are boosted over `body` (all `en_stem`); `idents` holds code
identifiers (`select_related`, `DEFAULT_AUTO_FIELD`, `QuerySet.filter`) lowercased but unsplit,
because the stemming tokenizer breaks them into common words and loses the exact match agents
search for. `payload` stores the whole chunk as JSON for fetches; `path`, `path_prefix`,
`collection` and `version` are raw terms for filters and neighbour lookups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import tantivy

from indexer.errors import CorruptGeneration
from indexer.models import Chunk, ChunkFilter

FIELD_BOOSTS = {"title": 2.5, "headings": 2.0, "body": 1.0}
IDENT_BOOST = 3.0
WRITER_HEAP_BYTES = 128 * 1024 * 1024

_IDENTIFIER = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+|[A-Za-z0-9]*_[A-Za-z0-9_]+|[a-z]+[A-Z][A-Za-z0-9]*|[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*"
)
# Anything the query parser treats as syntax; user text must never reach it as syntax.
_QUERY_SYNTAX = re.compile(r"[^\w\s]|_(?=\W|$)", re.UNICODE)


def identifiers(text: str) -> list[str]:
    """Code-like tokens: dotted names, snake_case, camelCase/CamelCase, lowercased."""
    found = []
    for match in _IDENTIFIER.finditer(text):
        token = match.group(0).strip("._").lower()
        if len(token) > 2:
            found.append(token)
            # `QuerySet.filter` should also match a bare `filter` mention of the same identifier tail.
            if "." in token:
                found.extend(part for part in token.split(".") if "_" in part)
    return found


def build_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("chunk_id", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("collection", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("version", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("path", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("path_prefix", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("has_code", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("title", stored=False, tokenizer_name="en_stem")
    builder.add_text_field("headings", stored=False, tokenizer_name="en_stem")
    builder.add_text_field("body", stored=True, tokenizer_name="en_stem")
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
        doc.add_text("title", chunk.title)
        doc.add_text("headings", " ".join(chunk.heading_path))
        doc.add_text("body", chunk.text)
        idents = identifiers(" ".join([chunk.title, *chunk.heading_path, chunk.text]))
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
        self._schema = self._index.schema
        self._searcher = self._index.searcher()

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
        cleaned = " ".join(_QUERY_SYNTAX.sub(" ", text).split()).lower()
        clauses: list[tuple[tantivy.Occur, tantivy.Query]] = []
        if cleaned:
            parsed = self._index.parse_query(
                cleaned, ["title", "headings", "body"], field_boosts=FIELD_BOOSTS
            )
            clauses.append((tantivy.Occur.Should, parsed))
        for ident in dict.fromkeys(identifiers(text)):
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
        hits = []
        for score, address in result.hits:
            doc = self._searcher.doc(address)
            hits.append(LexicalHit(chunk_id=doc["chunk_id"][0], score=float(score)))
        return hits

    def snippets(self, text: str, chunk_ids: Iterable[str], max_chars: int = 240) -> dict[str, str]:
        """Best fragment of each chunk's body for `text`, query terms wrapped in ** **."""
        ids = list(dict.fromkeys(chunk_ids))
        query = self.text_query(text)
        if query is None or not ids:
            return {}
        generator = tantivy.SnippetGenerator.create(self._searcher, query, self._schema, "body")
        generator.set_max_num_chars(max_chars)
        hits = self._searcher.search(
            tantivy.Query.term_set_query(self._schema, "chunk_id", ids), len(ids), count=False
        ).hits
        out: dict[str, str] = {}
        for _, address in hits:
            doc = self._searcher.doc(address)
            snippet = generator.snippet_from_doc(doc)
            fragment: str = snippet.fragment()
            if not fragment or not snippet.highlighted():
                continue
            parts, cursor = [], 0
            for span in snippet.highlighted():
                parts.append(fragment[cursor : span.start])
                parts.append(f"**{fragment[span.start : span.end]}**")
                cursor = span.end
            parts.append(fragment[cursor:])
            out[doc["chunk_id"][0]] = "".join(parts)
        return out

    def get(self, chunk_id: str) -> Chunk | None:
        hits = self._searcher.search(
            tantivy.Query.term_query(self._schema, "chunk_id", chunk_id), 1, count=False
        ).hits
        if not hits:
            return None
        return self._payload(hits[0][1])

    def get_many(self, chunk_ids: Iterable[str]) -> dict[str, Chunk]:
        ids = list(dict.fromkeys(chunk_ids))
        if not ids:
            return {}
        query = tantivy.Query.term_set_query(self._schema, "chunk_id", ids)
        hits = self._searcher.search(query, len(ids), count=False).hits
        chunks = [self._payload(address) for _, address in hits]
        return {c.chunk_id: c for c in chunks}

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
