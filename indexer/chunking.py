"""Sections → heading-aware chunks of about `target_tokens` model tokens.

Rules, in order of importance:
- a chunk never crosses a document boundary, and carries the heading path of where it starts;
- sizes count what is embedded: the title and heading path prepended to the body take their share
  of `target_tokens` and `max_tokens`, so no chunk is cut short by the model's length limit;
- blocks (paragraphs, lists, tables, code blocks) are packed whole; a block is split only when
  it alone exceeds `max_tokens` (prose at sentence boundaries, code at line boundaries);
- a section smaller than `min_tokens` merges into the next one (its heading kept inline as text),
  so tiny sections do not become chunks with no substance; each merged section keeps its own
  heading path and anchor as a `ChunkPart` (character offsets into the text), so a hit or a page
  labels the part it shows, not only the first section of the chunk;
- when a section spans several chunks, each continuation repeats the tail of the previous chunk
  (up to `overlap_tokens`) so a sentence cut at the boundary is still retrievable in context;
  `overlap_chars` records how much, so a page rebuilt from its chunks says it only once.

IDs come from (collection, path, heading path, ordinal within that heading path), so editing one
section leaves the IDs of every other section unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from indexer.models import Chunk, ChunkPart, Document, embedding_context, stable_chunk_id, text_hash
from indexer.settings import ChunkingSettings

CountTokens = Callable[[str], int]

# A body budget never shrinks below this, however long a page's heading path: such a chunk is
# better slightly truncated by the model than split into fragments with no substance.
MIN_BODY_TOKENS = 64
CHUNK_LABELS_VERSION = 2

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")
_FENCE_OPEN = re.compile(r"^(`{3,})([^`\s]*)", re.MULTILINE)
PIECE_SEPARATOR = "\n\n"


@dataclass
class _Piece:
    text: str
    tokens: int


@dataclass(frozen=True)
class _Label:
    heading_path: tuple[str, ...]
    anchor: str | None


@dataclass
class _Mark:
    """Where one section's pieces begin inside a pending chunk."""

    label: _Label
    index: int
    inline_heading: bool = False


@dataclass
class _Pending:
    heading_path: list[str]
    anchor: str | None
    pieces: list[_Piece] = field(default_factory=list)
    marks: list[_Mark] = field(default_factory=list)
    overlap: int = 0  # leading pieces repeated from the previous chunk

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)

    @property
    def last_label(self) -> _Label:
        return self.marks[-1].label if self.marks else _Label(tuple(self.heading_path), self.anchor)

    def mark(self, label: _Label, inline_heading: bool = False) -> None:
        """The pieces appended next belong to `label` (a no-op while the label stays the same)."""
        if not self.marks or self.marks[-1].label != label:
            self.marks.append(_Mark(label, len(self.pieces), inline_heading))


def code_languages(text: str) -> list[str]:
    """Languages of the fenced code blocks in `text`, in order of appearance, '' for unnamed ones."""
    found: list[str] = []
    inside: str | None = None
    for match in _FENCE_OPEN.finditer(text):
        fence_run, info = match.group(1), match.group(2)
        if inside is None:
            inside = fence_run
            if info.lower() not in found:
                found.append(info.lower())
        elif fence_run == inside and not info:
            inside = None
    return found


def _split_oversized(block: str, max_tokens: int, count: CountTokens) -> list[str]:
    """Split one block that alone exceeds the ceiling: code by lines, prose by sentences, then words."""
    is_code = block.startswith("```")
    if is_code:
        lines = block.splitlines()
        fence_open, body = lines[0], lines[1:]
        if body and body[-1].strip() == "```":
            body = body[:-1]
        units = body
        joiner = "\n"
    else:
        fence_open = ""
        units = _SENTENCE_END.split(block)
        joiner = " "
    parts: list[str] = []
    current: list[str] = []
    budget = max_tokens - (count(fence_open) + 4 if is_code else 0)
    for unit in units:
        unit_tokens = count(unit)
        if unit_tokens > budget:
            # A single enormous line or sentence: fall back to word windows.
            words = unit.split(" ")
            window: list[str] = []
            for word in words:
                if window and count(" ".join([*window, word])) > budget:
                    parts.append(" ".join(window))
                    window = []
                window.append(word)
            if window:
                parts.append(" ".join(window))
            continue
        if current and count(joiner.join([*current, unit])) > budget:
            parts.append(joiner.join(current))
            current = []
        current.append(unit)
    if current:
        parts.append(joiner.join(current))
    if is_code:
        return [f"{fence_open}\n{part}\n```" for part in parts if part.strip()]
    return [part for part in parts if part.strip()]


def _overlap_tail(pieces: list[_Piece], overlap_tokens: int, count: CountTokens) -> list[_Piece]:
    """The last sentences of the previous chunk's prose, up to `overlap_tokens` (never code)."""
    if overlap_tokens <= 0 or not pieces:
        return []
    last = pieces[-1]
    if last.text.startswith("```"):
        return []
    if last.tokens <= overlap_tokens:
        return [last]
    sentences = _SENTENCE_END.split(last.text)
    tail: list[str] = []
    for sentence in reversed(sentences):
        candidate = [sentence, *tail]
        if count(" ".join(candidate)) > overlap_tokens:
            break
        tail = candidate
    if not tail:
        return []
    text = " ".join(tail)
    return [_Piece(text, count(text))]


def chunk_document(
    document: Document,
    *,
    collection: str,
    version: str,
    settings: ChunkingSettings,
    count_tokens: CountTokens,
) -> list[Chunk]:
    """All chunks of one document, in reading order."""
    sections = [s for s in document.sections if any(b.strip() for b in s.blocks)]
    budgets: dict[tuple[str, ...], ChunkingSettings] = {}

    def body_limits(heading_path: list[str]) -> ChunkingSettings:
        """The settings with target and ceiling reduced by what the context prefix costs."""
        key = tuple(heading_path)
        if key not in budgets:
            context = embedding_context(document.title, heading_path)
            # +1: the blank line between context and body may cost a token in other tokenizers.
            prefix = count_tokens(context) + 1 if context else 0
            budgets[key] = settings.model_copy(
                update={
                    "target_tokens": max(MIN_BODY_TOKENS, settings.target_tokens - prefix),
                    "max_tokens": max(MIN_BODY_TOKENS, settings.max_tokens - prefix),
                }
            )
        return budgets[key]

    packed: list[_Pending] = []
    carry: _Pending | None = None  # a tiny section waiting to merge into the next one

    for index, section in enumerate(sections):
        limits = body_limits(section.heading_path)
        pieces: list[_Piece] = []
        for block in section.blocks:
            block = block.strip()
            if not block:
                continue
            tokens = count_tokens(block)
            if tokens > limits.max_tokens:
                pieces.extend(
                    _Piece(p, count_tokens(p))
                    for p in _split_oversized(block, limits.max_tokens, count_tokens)
                )
            else:
                pieces.append(_Piece(block, tokens))
        if not pieces:
            continue
        label = _Label(tuple(section.heading_path), section.anchor)
        inline = False
        if carry is not None:
            # Keep the merged section's own heading visible, as a line of text.
            heading = section.heading_path[-1] if section.heading_path else ""
            if heading and heading not in carry.heading_path:
                pieces.insert(0, _Piece(heading, count_tokens(heading)))
                inline = True
            current = carry
            carry = None
            # The merged chunk is embedded under the carried section's headings.
            limits = body_limits(current.heading_path)
        else:
            current = _Pending(list(section.heading_path), section.anchor)
        section_chunks = _pack(current, pieces, limits, count_tokens, label, inline)
        is_last = index == len(sections) - 1
        tail = section_chunks[-1]
        if tail.tokens < settings.min_tokens and len(section_chunks) == 1 and not is_last:
            carry = tail
        else:
            packed.extend(section_chunks)
    if carry is not None:
        # The document ended on a tiny section: append it to the previous chunk when it fits.
        if packed and packed[-1].tokens + carry.tokens <= body_limits(packed[-1].heading_path).max_tokens:
            heading = carry.heading_path[-1] if carry.heading_path else ""
            extra = ([_Piece(heading, count_tokens(heading))] if heading else []) + carry.pieces
            last = packed[-1]
            base = len(last.pieces)
            shift = 1 if heading else 0
            for mark in carry.marks or [_Mark(_Label(tuple(carry.heading_path), carry.anchor), 0)]:
                # The carried parts move with their pieces, after the heading line put before them.
                index = base if mark.index == 0 else base + shift + mark.index
                last.marks.append(
                    _Mark(mark.label, index, mark.inline_heading or (mark.index == 0 and bool(heading)))
                )
            last.pieces.extend(extra)
        else:
            packed.append(carry)

    chunks: list[Chunk] = []
    ordinals: dict[tuple[str, ...], int] = {}
    for position, pending in enumerate(packed):
        key = tuple(pending.heading_path)
        ordinal = ordinals.get(key, 0)
        ordinals[key] = ordinal + 1
        text = PIECE_SEPARATOR.join(p.text for p in pending.pieces)
        chunk = Chunk(
            chunk_id=stable_chunk_id(collection, document.path, pending.heading_path, ordinal),
            collection=collection,
            version=version,
            path=document.path,
            title=document.title,
            heading_path=pending.heading_path,
            anchor=pending.anchor,
            url=document.url,
            text=text,
            ordinal=ordinal,
            position=position,
            doc_hash=document.content_hash,
            text_hash="",
            tokens=pending.tokens,
            parts=_parts(pending),
            overlap_chars=_offsets(pending)[pending.overlap] if pending.overlap else 0,
            code_languages=code_languages(text),
        )
        # The hash covers what is embedded, so equal hashes mean an identical vector.
        chunks.append(chunk.model_copy(update={"text_hash": text_hash(chunk.embedding_text())}))
    return chunks


def _offsets(pending: _Pending) -> list[int]:
    """Character offset of each piece in the joined text (plus one past the end)."""
    out = [0]
    for piece in pending.pieces:
        out.append(out[-1] + len(piece.text) + len(PIECE_SEPARATOR))
    return out


def _parts(pending: _Pending) -> list[ChunkPart]:
    offsets = _offsets(pending)
    marks = pending.marks or [_Mark(_Label(tuple(pending.heading_path), pending.anchor), 0)]
    parts: list[ChunkPart] = []
    for mark in marks:
        if mark.index >= len(pending.pieces):
            continue  # a section whose first piece went to the next chunk
        start = offsets[mark.index]
        body = (
            min(offsets[mark.index + 1], offsets[-1] - len(PIECE_SEPARATOR)) if mark.inline_heading else start
        )
        parts.append(
            ChunkPart(
                heading_path=list(mark.label.heading_path),
                anchor=mark.label.anchor,
                start=start,
                body_start=body,
            )
        )
    return parts


def _pack(
    start: _Pending,
    pieces: list[_Piece],
    settings: ChunkingSettings,
    count: CountTokens,
    label: _Label,
    inline_heading: bool = False,
) -> list[_Pending]:
    """Greedy packing of one section's pieces into chunks near `target_tokens`.

    `start` may already hold a carried tiny section; the section's own pieces are marked with
    `label`, and a continuation chunk takes the label of the section it continues.
    """
    out: list[_Pending] = [start]
    first = True
    for piece in pieces:
        current = out[-1]
        fits_target = current.tokens + piece.tokens <= settings.target_tokens
        # A code block that would be split off from its lead-in prose may stretch to max_tokens.
        fits_max = current.tokens + piece.tokens <= settings.max_tokens and piece.text.startswith("```")
        if not current.pieces or fits_target or fits_max:
            current.mark(label, inline_heading and first)
            current.pieces.append(piece)
            first = False
            continue
        following = _Pending(list(label.heading_path), label.anchor)
        # Only a section cut in the middle repeats its tail; a chunk that starts a section does not.
        if current.last_label == label:
            overlap = _overlap_tail(current.pieces, settings.overlap_tokens, count)
            if sum(o.tokens for o in overlap) + piece.tokens <= settings.max_tokens:
                following.mark(label)
                following.pieces.extend(overlap)
                following.overlap = len(overlap)
        # A section's heading line that opens a fresh chunk is already said by its label.
        if inline_heading and first:
            first = False
            following.mark(label)
            out.append(following)
            continue
        following.mark(label)
        following.pieces.append(piece)
        first = False
        out.append(following)
    return out
