"""Snippets: Tantivy picks the best fragment, and its spans are shown in the original text.

Tantivy analyses and highlights the folded text the index was built from and reports byte
offsets into it. Both facts would garble a snippet of non-ASCII text if used as they come
(`se**ssion c**ookie`), so the spans are converted once to character offsets in the folded text
and then mapped back to the original characters, which is what a reader gets to see.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import lru_cache

import tantivy

from indexer.text.analysis import terms
from indexer.text.folding import byte_to_char_offsets, fold


@dataclass(frozen=True)
class Snippet:
    """A passage of the source (`source[start:start + len(text)] == text`) and its matched terms."""

    text: str
    start: int
    highlights: tuple[tuple[int, int], ...]  # character spans within `text`, ascending, disjoint

    def render(self, mark: str = "**") -> str:
        """The passage with highlights wrapped in `mark`; touching highlights (the characters of
        a CJK word) share one pair of marks, since `**東****京**` is not Markdown emphasis."""
        runs: list[tuple[int, int]] = []
        for begin, end in self.highlights:
            if runs and runs[-1][1] == begin:
                runs[-1] = (runs[-1][0], end)
            else:
                runs.append((begin, end))
        parts: list[str] = []
        cursor = 0
        for begin, end in runs:
            parts.append(self.text[cursor:begin])
            parts.append(f"{mark}{self.text[begin:end]}{mark}")
            cursor = end
        parts.append(self.text[cursor:])
        return "".join(parts)


@lru_cache(maxsize=16384)
def span_terms(text: str) -> tuple[str, ...]:
    """`terms` of one highlighted span: a few words, the same ones search after search (a
    profile of the Django questions ran the analyser 66 times per search for them)."""
    return tuple(terms(text))


def snippet(
    generator: tantivy.SnippetGenerator, field: str, source: str, wanted: Collection[str]
) -> Snippet | None:
    """The best fragment of `source` for the generator's query, or None without a match.

    `wanted` is the query's terms for `field`: a span is highlighted only when the original text
    under it analyses to exactly one of them (a single character that folds into several words,
    such as `⅗`, is shown but not highlighted).
    """
    folded = fold(source)
    found = generator.snippet_from_doc(tantivy.Document(**{field: [folded.text]}))
    spans = found.highlighted()
    if not found.fragment() or not spans:
        return None
    window = found.fragment_range()
    byte_offsets = [window.start, window.end]
    for span in spans:
        byte_offsets += [window.start + span.start, window.start + span.end]
    chars = byte_to_char_offsets(folded.text, byte_offsets)
    start, end = folded.source_span(chars[0], chars[1])
    highlights: list[tuple[int, int]] = []
    for i in range(2, len(chars), 2):
        begin, finish = folded.source_span(chars[i], chars[i + 1])
        begin, finish = max(begin, start), min(finish, end)
        if begin >= finish or (highlights and begin < highlights[-1][1]):
            continue
        matched = span_terms(source[begin:finish])
        if len(matched) == 1 and matched[0] in wanted:
            highlights.append((begin, finish))
    if not highlights:
        return None
    return Snippet(
        text=source[start:end],
        start=start,
        highlights=tuple((b - start, f - start) for b, f in highlights),
    )
