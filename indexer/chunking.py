"""Sections → heading-aware chunks of about `target_tokens` model tokens.

Rules, in order of importance:
- a chunk never crosses a document boundary, and carries the heading path of where it starts;
- sizes count what is embedded: the title and heading path prepended to the body take their share
  of `target_tokens` and `max_tokens`, so no chunk is cut short by the model's length limit;
- blocks (paragraphs, lists, tables, code blocks) are packed whole; a block is split only when
  it alone exceeds `max_tokens` (prose at sentence boundaries, code at line boundaries);
- a section smaller than `min_tokens` merges into the next one (its heading kept inline as text),
  so tiny sections do not become chunks with no substance;
- when a section spans several chunks, each continuation repeats the tail of the previous chunk
  (up to `overlap_tokens`) so a sentence cut at the boundary is still retrievable in context.

IDs come from (collection, path, heading path, ordinal within that heading path), so editing one
section leaves the IDs of every other section unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from indexer.models import Chunk, Document, embedding_context, stable_chunk_id, text_hash
from indexer.settings import ChunkingSettings

CountTokens = Callable[[str], int]

# A body budget never shrinks below this, however long a page's heading path: such a chunk is
# better slightly truncated by the model than split into fragments with no substance.
MIN_BODY_TOKENS = 64

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(\[])")


@dataclass
class _Piece:
    text: str
    tokens: int


@dataclass
class _Pending:
    heading_path: list[str]
    anchor: str | None
    pieces: list[_Piece] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.pieces)


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
        if carry is not None:
            # Keep the merged section's own heading visible, as a line of text.
            heading = section.heading_path[-1] if section.heading_path else ""
            if heading and heading not in carry.heading_path:
                pieces.insert(0, _Piece(heading, count_tokens(heading)))
            current = carry
            carry = None
            # The merged chunk is embedded under the carried section's headings.
            limits = body_limits(current.heading_path)
        else:
            current = _Pending(list(section.heading_path), section.anchor)
        section_chunks = _pack(current, pieces, limits, count_tokens)
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
            packed[-1].pieces.extend(extra)
        else:
            packed.append(carry)

    chunks: list[Chunk] = []
    ordinals: dict[tuple[str, ...], int] = {}
    for position, pending in enumerate(packed):
        key = tuple(pending.heading_path)
        ordinal = ordinals.get(key, 0)
        ordinals[key] = ordinal + 1
        text = "\n\n".join(p.text for p in pending.pieces)
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
        )
        # The hash covers what is embedded, so equal hashes mean an identical vector.
        chunks.append(chunk.model_copy(update={"text_hash": text_hash(chunk.embedding_text())}))
    return chunks


def _pack(
    start: _Pending, pieces: list[_Piece], settings: ChunkingSettings, count: CountTokens
) -> list[_Pending]:
    """Greedy packing of one section's pieces into chunks near `target_tokens`."""
    out: list[_Pending] = [start]
    for piece in pieces:
        current = out[-1]
        fits_target = current.tokens + piece.tokens <= settings.target_tokens
        # A code block that would be split off from its lead-in prose may stretch to max_tokens.
        fits_max = current.tokens + piece.tokens <= settings.max_tokens and piece.text.startswith("```")
        if not current.pieces or fits_target or fits_max:
            current.pieces.append(piece)
            continue
        following = _Pending(list(current.heading_path), current.anchor)
        overlap = _overlap_tail(current.pieces, settings.overlap_tokens, count)
        if sum(o.tokens for o in overlap) + piece.tokens <= settings.max_tokens:
            following.pieces.extend(overlap)
        following.pieces.append(piece)
        out.append(following)
    return out
