"""Whole pages rebuilt from their chunks: reading order, headings, code blocks intact, a table of
contents, one section on request, and signed cursors through the rest. No MCP in here.

A page is every chunk of one document, by position. Continuation chunks repeat the tail of the
previous chunk (`overlap_chars`), which is said once here; each chunk's parts give the heading path
of every stretch of text, so the page shows each heading once, where its section starts, at the
depth it has in the document. Pages are looked up only in collections the tenant may read; any
other page answers exactly like one that does not exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from indexer.chunking import code_languages
from indexer.models import Chunk
from server.retrieval import cursors, links
from server.retrieval.catalog import CatalogView
from server.retrieval.page_sources import Page, PageRequest, locate_page, parse_source
from server.security.guards import InvalidArgument, neutralize, screen

_BLOCK_BREAK = "\n\n"
_MARGIN = 8  # tokens kept for the separators the per-block estimate does not see

# Token counting comes from the embedder's tokenizer, passed in so this module stays engine-free.
TokenBatch = Callable[[list[str]], list[int]]
TokenCount = Callable[[str], int]
Truncate = Callable[[str, int], str]


class TocEntry(BaseModel):
    heading: str = Field(description="The heading text.")
    level: int = Field(description="Heading depth: 1 is the page title.")
    anchor: str | None = Field(
        description="Pass as `section` (or use the heading text) to read only this part."
    )
    # Kept out of the response (each entry would repeat its parents): `level` shows the nesting.
    heading_path: SkipJsonSchema[list[str]] = Field(default_factory=list, exclude=True)


class PageResult(BaseModel):
    collection: str
    version: str
    path: str = Field(description="The page's path in its collection (also its resource URI's tail).")
    uri: str = Field(description="The page as an MCP resource: docgate://{collection}/{version}/{path}.")
    title: str
    url: str | None = Field(
        description="Live page URL (with #anchor when a section was read); null when unknown."
    )
    section: list[str] | None = Field(
        description="Heading path of the section read; null for the whole page."
    )
    toc: list[TocEntry] = Field(description="The page's headings in order (first response of a page only).")
    text: str = Field(description="Markdown: headings, prose and fenced code blocks in reading order.")
    has_code: bool = Field(description="True when the text returned holds a code block.")
    code_languages: list[str]
    chunk_ids: list[str] = Field(description="Chunks the returned text comes from (for fetch_chunk).")
    next_cursor: str | None = Field(description="Pass as `cursor` (same source and section) for the rest.")
    truncated: bool = Field(description="True when max_tokens cut the text; next_cursor continues it.")
    generation: int
    indexed_at: str
    flags: list[str] = Field(default_factory=list, description="Prompt-injection screen results.")


@dataclass
class _Segment:
    heading_path: tuple[str, ...]
    anchor: str | None
    text: str
    chunk_id: str


def segments(chunks: Sequence[Chunk]) -> list[_Segment]:
    """The page's text as labelled stretches, overlap said once, inline merged headings dropped."""
    out: list[_Segment] = []
    for chunk in chunks:
        parts = chunk.labels()
        for index, part in enumerate(parts):
            end = parts[index + 1].start if index + 1 < len(parts) else len(chunk.text)
            start = max(part.body_start, chunk.overlap_chars if index == 0 else 0)
            text = chunk.text[start:end].strip()
            if text:
                out.append(_Segment(tuple(part.heading_path), part.anchor, text, chunk.chunk_id))
    return out


def _level(title: str, path: tuple[str, ...], depth: int) -> int:
    """Heading depth in the page: the title is 1; a path that repeats the title starts at it."""
    offset = 1 if path and path[0] == title else 2
    return min(6, depth + offset)


def _toc(page: Page, parts: list[_Segment]) -> list[TocEntry]:
    title = page.first.title
    entries: list[TocEntry] = []
    seen: set[tuple[str, ...]] = set()
    for segment in parts:
        for depth in range(len(segment.heading_path)):
            prefix = segment.heading_path[: depth + 1]
            if prefix in seen or (depth == 0 and prefix[0] == title):
                continue
            seen.add(prefix)
            anchor = segment.anchor if prefix == segment.heading_path else None
            entries.append(
                TocEntry(
                    heading=prefix[-1],
                    heading_path=list(prefix),
                    level=_level(title, segment.heading_path, depth),
                    anchor=anchor,
                )
            )
    return entries


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def _path_of(text: str) -> list[str]:
    """'A › B' or 'A > B' → ['a', 'b'] (case and spacing ignored)."""
    return [_words(part) for part in re.split(r"›|>", text) if part.strip()]


def select_section(toc: list[TocEntry], wanted: str) -> list[str]:
    """The heading path `wanted` names: an anchor, a heading's text, or the tail of a path 'A › B'."""
    anchor = wanted.strip().lower()
    asked = _path_of(wanted)

    def ends_with(entry: TocEntry) -> bool:
        path = [_words(h) for h in entry.heading_path]
        return bool(asked) and path[-len(asked) :] == asked

    for match in (lambda e: e.anchor is not None and e.anchor.lower() == anchor, ends_with):
        hits = [entry for entry in toc if match(entry)]
        if hits:
            return hits[0].heading_path
    headings = ", ".join(repr(e.anchor or e.heading) for e in toc[:20])
    raise InvalidArgument(
        f"section: {wanted[:120]!r} is not a heading of this page; its sections: {headings or 'none'}",
        argument="section",
    )


def render(
    page: Page, parts: list[_Segment], within: list[str] | None
) -> tuple[str, list[tuple[int, int, str]]]:
    """Markdown of the page (or of one section and its subsections), and where each chunk's text is."""
    title = page.first.title
    blocks: list[str] = [] if within else [f"# {title}"]
    spans: list[tuple[int, int, str]] = []
    length = len(blocks[0]) if blocks else 0
    previous: tuple[str, ...] = tuple(within[:-1]) if within else ()

    def add(block: str) -> int:
        nonlocal length
        start = length + (len(_BLOCK_BREAK) if blocks else 0)
        blocks.append(block)
        length = start + len(block)
        return start

    for segment in parts:
        path = segment.heading_path
        if within and tuple(path[: len(within)]) != tuple(within):
            continue
        common = 0
        while common < min(len(path), len(previous)) and path[common] == previous[common]:
            common += 1
        for depth in range(common, len(path)):
            if depth == 0 and path[0] == title and not within:
                continue
            add(f"{'#' * _level(title, path, depth)} {path[depth]}")
        previous = path
        start = add(segment.text)
        spans.append((start, start + len(segment.text), segment.chunk_id))
    return _BLOCK_BREAK.join(blocks), spans


def _chunks_between(spans: list[tuple[int, int, str]], start: int, end: int) -> list[str]:
    found: list[str] = []
    for span_start, span_end, chunk_id in spans:
        if span_start < end and span_end > start and chunk_id not in found:
            found.append(chunk_id)
    return found


def _section_asked(
    page: Page, parts: list[_Segment], toc: list[TocEntry], section: str | None, anchor: str | None
) -> list[str] | None:
    """The section to read: `section` must name one; a source's #anchor falls back to the whole page
    when it names the page itself (its title's anchor) or no heading (anchors of other elements)."""
    if section is not None:
        if _is_title(page, parts, section):
            return None
        return select_section(toc, section)
    if anchor is None or _is_title(page, parts, anchor):
        return None
    try:
        return select_section(toc, anchor)
    except InvalidArgument:
        return None


def _is_title(page: Page, parts: list[_Segment], wanted: str) -> bool:
    title = page.first.title
    key = wanted.strip().lower()
    return key == title.lower() or any(
        s.anchor is not None and s.anchor.lower() == key and s.heading_path in ((), (title,)) for s in parts
    )


def read_page(
    view: CatalogView,
    allowed: Sequence[str],
    request: PageRequest,
    *,
    tenant: str,
    secret: bytes,
    count_tokens_batch: TokenBatch,
    count_tokens: TokenCount,
    truncate: Truncate,
) -> tuple[PageResult, int]:
    """One response's worth of a page (or section), and its size in tokens."""
    ref = parse_source(request.source, request.collection)
    page = locate_page(view, allowed, ref)
    parts = segments(page.chunks)
    toc = _toc(page, parts)
    within = _section_asked(page, parts, toc, request.section, ref.anchor)
    text, spans = render(page, parts, within)
    snapshot = page.snapshot
    context = cursors.digest(
        tenant, snapshot.collection, page.first.path, within, snapshot.generation, "read_page"
    )
    offset = cursors.decode(secret, request.cursor, context) if request.cursor is not None else 0
    if offset > len(text):
        raise InvalidArgument("cursor: points past the end of the page; read it again without `cursor`")
    anchor = _anchor_of(toc, within)
    live = page.url
    shell = PageResult(
        collection=snapshot.collection,
        version=page.first.version,
        path=page.first.path,
        uri=page.uri,
        title=page.first.title,
        url=links.with_anchor(live, anchor) if live else None,
        section=within,
        toc=toc if offset == 0 else [],
        text="",
        # Sized for the largest response (every chunk, every language, a cursor), so the text's
        # budget is what is left whatever part of the page is shown.
        has_code=False,
        code_languages=[language for language in code_languages(text) if language],
        chunk_ids=_chunks_between(spans, offset, len(text)),
        next_cursor=cursors.encode(secret, len(text), context),
        truncated=True,
        generation=snapshot.generation,
        indexed_at=snapshot.indexed_at,
    )
    envelope = count_tokens(_json(shell))
    budget = request.max_tokens - envelope - _MARGIN
    if budget < 20:
        raise InvalidArgument(
            f"max_tokens: {request.max_tokens} is too small for this page's table of contents and "
            f"metadata; use at least {envelope + _MARGIN + 200}",
            argument="max_tokens",
        )
    end = _fit(text, offset, budget, count_tokens_batch, truncate)
    shown = text[offset:end].strip()
    flags = list(screen(shown))
    result = shell.model_copy(
        update={
            "text": neutralize(shown) if flags else shown,
            "flags": flags,
            "chunk_ids": _chunks_between(spans, offset, end),
            "truncated": end < len(text),
            "next_cursor": cursors.encode(secret, end, context) if end < len(text) else None,
        }
    )
    languages = code_languages(shown)
    result.has_code = bool(languages)
    result.code_languages = [language for language in languages if language]
    size = count_tokens(_json(result))
    while size > request.max_tokens and end > offset:
        # Rare: escaping cost more than estimated. Give back the last block (or a tenth) and re-measure.
        cut = text.rfind(_BLOCK_BREAK, offset, end - 1)
        end = (
            cut + len(_BLOCK_BREAK)
            if cut > offset
            else _at_word(text, offset, offset + int((end - offset) * 0.9))
        )
        shown = text[offset:end].strip()
        result.text = neutralize(shown) if flags else shown
        result.truncated = True
        result.next_cursor = cursors.encode(secret, end, context)
        result.chunk_ids = _chunks_between(spans, offset, end)
        size = count_tokens(_json(result))
    return result, size


def _anchor_of(toc: list[TocEntry], within: list[str] | None) -> str | None:
    if within is None:
        return None
    for entry in toc:
        if entry.heading_path == within:
            return entry.anchor
    return None


def _fit(text: str, offset: int, budget: int, count_batch: TokenBatch, truncate: Truncate) -> int:
    """The end offset of the longest run of whole blocks from `offset` that fits `budget` tokens."""
    rest = text[offset:]
    pieces = rest.split(_BLOCK_BREAK)
    costs = count_batch([json.dumps(p, ensure_ascii=False) + "nn" for p in pieces])
    used = 0
    end = offset
    for index, (piece, cost) in enumerate(zip(pieces, costs, strict=True)):
        if used + cost > budget:
            if index == 0:
                # One block larger than the budget (a long code listing): cut it by lines.
                return offset + _cut_block(piece, budget, count_batch, truncate)
            break
        used += cost
        end += len(piece) + (len(_BLOCK_BREAK) if index + 1 < len(pieces) else 0)
    return min(end, len(text))


def _cut_block(block: str, budget: int, count_batch: TokenBatch, truncate: Truncate) -> int:
    lines = block.split("\n")
    costs = count_batch([json.dumps(line, ensure_ascii=False) + "n" for line in lines])
    used = 0
    length = 0
    for line, cost in zip(lines, costs, strict=True):
        if used + cost > budget:
            break
        used += cost
        length += len(line) + 1
    if length == 0:
        length = _at_word(block, 0, len(truncate(lines[0], max(1, budget - 4))))
    return max(1, min(length, len(block)))


def _at_word(text: str, start: int, end: int) -> int:
    """`end` moved back to the start of the word it falls in, so a cut never splits a word from
    its punctuation ("pricing" | ", taxes"); unchanged where it falls on a space or the word
    began before `start` (one word longer than the budget is still cut)."""
    if end >= len(text) or text[end].isspace() or text[end - 1].isspace():
        return end
    space = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
    return space + 1 if space > start else end


def _json(model: BaseModel) -> str:
    return json.dumps(model.model_dump(mode="json"), ensure_ascii=False)
