"""Plain text."""

from __future__ import annotations

import re
import textwrap

from indexer.models import Section
from indexer.parsing.outline import LIST_START, Outline, fence, norm

_UNDERLINE = re.compile(r"^[ \t]*([=\-~^*#+])\1{2,}[ \t]*$")


def _underline_char(line: str, text: str) -> str | None:
    """The adornment character when `line` underlines `text` (covering at least half of it)."""
    match = _UNDERLINE.match(line)
    if match is None or not text.strip() or _UNDERLINE.match(text):
        return None
    if len(line.strip()) < max(3, len(text.strip()) // 2):
        return None
    return match.group(1)


def _split_heading(lines: list[str]) -> tuple[list[str], str, str] | None:
    """(lines before, heading text, adornment) when a paragraph ends in an underlined heading."""
    if len(lines) < 2 or (char := _underline_char(lines[-1], lines[-2])) is None:
        return None
    before = lines[:-2]
    if before and before[-1].strip() == lines[-1].strip():
        before = before[:-1]  # overline and underline, as rST allows
    return before, norm(lines[-2]), char


def _looks_like_title(line: str) -> bool:
    line = line.strip()
    return 0 < len(line) <= 80 and not line.endswith((".", ",", ";", ":"))


def _paragraphs(text: str) -> list[list[str]]:
    paragraphs: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            paragraphs.append(current)
            current = []
    if current:
        paragraphs.append(current)
    return paragraphs


def read_text(text: str, stem: str) -> tuple[str, list[Section]]:
    paragraphs = _paragraphs(text)
    title = stem
    levels: dict[str, int] = {}
    if paragraphs:
        first = paragraphs[0]
        heading = _split_heading(first)
        if heading is not None and not heading[0]:
            title, levels[heading[2]] = heading[1], 1
            paragraphs = paragraphs[1:]
        elif len(first) == 1 and _looks_like_title(first[0]):
            title = norm(first[0])
            paragraphs = paragraphs[1:]
    outline = Outline(title)
    for lines in paragraphs:
        heading = _split_heading(lines)
        if heading is None:
            outline.block(_text_block(lines))
            continue
        before, text_, char = heading
        if before:
            outline.block(_text_block(before))
        # Like rST, adornment styles rank by first appearance.
        level = levels.setdefault(char, max(levels.values(), default=1) + 1)
        outline.heading(level, text_, None)
    return title, outline.sections()


def _text_block(lines: list[str]) -> str:
    if all(line.startswith(("    ", "\t")) for line in lines):
        return fence(textwrap.dedent("\n".join(lines)))
    if len(lines) > 1 and LIST_START.match(lines[0].strip()):
        return "\n".join(norm(line) for line in lines)
    return norm(" ".join(lines))
