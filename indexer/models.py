"""The records that flow through the indexer: raw bytes → parsed document → chunks.

Every stage hands the next a pydantic model, so the shapes are checked at the seams
and the server can read the same shapes back from an index generation.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

HEADING_SEPARATOR = " › "


class RawDocument(BaseModel):
    """One file or fetched page before parsing."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(
        description="Source-relative POSIX path (or URL path for crawled pages); the document key."
    )
    data: bytes
    url: str | None = Field(default=None, description="Public URL of the page when known (crawled sites).")
    content_type: str | None = Field(default=None, description="MIME type when a server announced one.")
    mtime: float | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


class Section(BaseModel):
    """A run of content under one heading path.

    `blocks` are the atomic units the chunker packs: paragraphs, lists, tables rendered as text,
    and fenced code blocks (which start with ```). A block is only split when it alone exceeds
    the chunk size.
    """

    heading_path: list[str] = Field(default_factory=list)
    anchor: str | None = None
    blocks: list[str] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(self.blocks)


class Document(BaseModel):
    """A parsed document: a title and its sections in reading order."""

    path: str
    title: str
    sections: list[Section]
    url: str | None = None
    content_hash: str = ""


class ChunkPart(BaseModel):
    """One section's share of a chunk: a chunk that merges small sections labels each part itself."""

    model_config = ConfigDict(frozen=True)

    heading_path: list[str]
    anchor: str | None = None
    start: int = Field(ge=0, description="Character offset in the chunk text where this part begins.")
    body_start: int = Field(
        ge=0, description="Offset after the part's own heading line (equal to `start` when it has none)."
    )


class Chunk(BaseModel):
    """The unit of retrieval: stored in Tantivy (text + metadata) and the vector store (embedding).

    Frozen: a generation never changes, so a read chunk is shared between searches (the lexical
    index caches them); a changed copy comes from `model_copy(update=...)`.
    """

    model_config = ConfigDict(frozen=True)

    chunk_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    collection: str
    version: str
    path: str
    title: str
    heading_path: list[str]
    anchor: str | None = None
    url: str | None = None
    text: str
    ordinal: int = Field(
        ge=0, description="Position of the chunk within its section (part of the stable ID)."
    )
    position: int = Field(ge=0, description="Position of the chunk within its document (for neighbours).")
    doc_hash: str
    text_hash: str
    tokens: int = 0
    parts: list[ChunkPart] = Field(
        default_factory=list,
        description="Per-section labels in text order; empty in indexes built before parts existed.",
    )
    overlap_chars: int = Field(
        default=0, ge=0, description="Leading characters repeated from the previous chunk's tail."
    )
    code_languages: list[str] = Field(
        default_factory=list, description="Languages of the fenced code blocks ('' when unnamed)."
    )

    @property
    def has_code(self) -> bool:
        return bool(self.code_languages)

    def labels(self) -> list[ChunkPart]:
        """The chunk's parts, or one part spanning it all for chunks indexed without parts."""
        if self.parts:
            return self.parts
        return [ChunkPart(heading_path=self.heading_path, anchor=self.anchor, start=0, body_start=0)]

    def part_at(self, offset: int) -> ChunkPart:
        """The part that holds the character at `offset`."""
        found = self.labels()[0]
        for part in self.labels():
            if part.start <= offset:
                found = part
        return found

    @property
    def source(self) -> str:
        """Where a reader goes to see this chunk: a URL with anchor when known, else the path."""
        base = self.url or self.path
        return f"{base}#{self.anchor}" if self.anchor else base

    def embedding_text(self) -> str:
        """What gets embedded: title and heading path give the chunk its page context."""
        context = embedding_context(self.title, self.heading_path)
        return f"{context}\n\n{self.text}" if context else self.text


class ChunkFilter(BaseModel):
    """Restrictions applied inside each engine's query (never by dropping hits afterwards)."""

    model_config = ConfigDict(frozen=True)

    collections: tuple[str, ...] = ()
    version: str | None = None
    path_prefix: str | None = None
    # Any of these labels (resolved per collection by the server); empty means no restriction.
    versions: tuple[str, ...] = ()
    code_only: bool = False


def embedding_context(title: str, heading_path: list[str]) -> str:
    """The line embedded before a chunk's body: "Title › Heading › Subheading"."""
    return HEADING_SEPARATOR.join([title, *[h for h in heading_path if h != title]])


def section_label(title: str, heading_path: list[str]) -> str:
    """A chunk's short label: the page title and the chunk's own section ("QuerySet API reference › OR (|)")."""
    headings = [h for h in heading_path if h != title]
    return HEADING_SEPARATOR.join([title, *headings[-1:]])


def stable_chunk_id(collection: str, path: str, heading_path: list[str], ordinal: int) -> str:
    """128-bit hex ID from (collection, path, heading path, ordinal): survives re-indexing."""
    key = "\x1f".join([collection, path, "\x1e".join(heading_path), str(ordinal)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
