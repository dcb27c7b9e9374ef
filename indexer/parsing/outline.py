"""Shared text helpers and the outline that turns headings + blocks into sections."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from indexer.models import Section

# Shared by the HTML and rST readers: the longest heading label made from an API signature, and
# code-block classes that name no language.
MAX_LABEL = 120
NO_LANGUAGE = frozenset({"default", "none", "text", "plain", "nohighlight", "plaintext"})

_PERMALINK_GLYPHS = re.compile(r"[¶§🔗⚓]")
_TRAILING_HASH = re.compile(r"\s+#$")
LIST_START = re.compile(r"^(?:[-*+•] |\d+[.)] )")


def words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def norm(text: str) -> str:
    """Collapse runs of whitespace (including newlines and NBSP) into single spaces."""
    return " ".join(text.split())


def clean_heading(text: str) -> str:
    text = norm(_PERMALINK_GLYPHS.sub("", text))
    return _TRAILING_HASH.sub("", text).strip()


def fence(code: str, language: str = "") -> str:
    """A fenced code block; the fence grows when the code itself contains ```."""
    code = code.rstrip()
    while code.startswith("\n"):
        code = code[1:]
    fence = "```"
    while fence in code:
        fence += "`"
    return f"{fence}{language}\n{code}\n{fence}"


def _led_by(prefix: str | None, text: str) -> list[str]:
    """The blocks that `text` becomes when a pending label `prefix` leads it.

    A label before code stays a block of its own (a fence must open its block); before prose or
    a list it joins the text.
    """
    if prefix is None:
        return [text]
    if text.startswith("```"):
        return [prefix, text]
    return [_join_prefix(prefix, text)]


def _join_prefix(prefix: str, text: str) -> str:
    if LIST_START.match(text):
        return f"{prefix}\n{text}"
    if prefix.endswith((":", ".", "!", "?")):
        return f"{prefix} {text}"
    return f"{prefix}: {text}"


def format_list(items: Iterable[list[str]], ordered: bool, start: int = 1) -> str:
    """Render list items (each a list of blocks) as one block with markers and indentation."""
    lines: list[str] = []
    number = start
    for blocks in items:
        if not blocks:
            continue
        marker = f"{number}." if ordered else "-"
        number += 1
        pad = " " * (len(marker) + 1)
        first, *rest = "\n".join(blocks).split("\n")
        lines.append(f"{marker} {first}")
        lines.extend(pad + line if line.strip() else "" for line in rest)
    return "\n".join(lines)


class Sink(Protocol):
    """Where readers send what they find; the outline for a document, a collector for a list item."""

    def heading(self, level: int, text: str, anchor: str | None) -> None: ...
    def block(self, text: str) -> None: ...
    def prefix(self, text: str) -> None: ...


class Outline:
    """Builds sections from a stream of headings and blocks.

    The stack starts with the title as an implicit level-1 heading, so every path begins with the
    page's top heading; a real h1 replaces it. Sections are keyed by heading path and content that
    returns to an earlier path (after an API entry, in another tab) joins that section: heading
    paths stay unique within a document, which keeps chunk IDs stable and distinct.
    """

    def __init__(self, title: str) -> None:
        self._stack: list[tuple[int, str, str | None]] = [(1, title, None)]
        self._sections: dict[tuple[str, ...], Section] = {}
        self._current: Section | None = None
        self._prefix: str | None = None

    @property
    def depth(self) -> int:
        return len(self._stack)

    @property
    def level(self) -> int:
        return self._stack[-1][0]

    @property
    def last_heading(self) -> str:
        return self._stack[-1][1]

    def heading(self, level: int, text: str, anchor: str | None) -> None:
        self._flush_prefix()
        text = clean_heading(text)
        if not text:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text, anchor or None))
        self._current = None

    def truncate(self, depth: int) -> None:
        """Return to an outer heading (the end of an API entry's description)."""
        self._flush_prefix()
        if len(self._stack) > depth >= 1:
            del self._stack[depth:]
            self._current = None

    def prefix(self, text: str) -> None:
        """A label (admonition title, definition term) that leads the next block."""
        self._flush_prefix()
        text = norm(text)
        self._prefix = text or None

    def block(self, text: str) -> None:
        if not text.strip():
            return
        prefix, self._prefix = self._prefix, None
        for part in _led_by(prefix, text):
            self._append(part)

    def sections(self) -> list[Section]:
        self._flush_prefix()
        return list(self._sections.values())

    def _flush_prefix(self) -> None:
        if self._prefix is not None:
            prefix, self._prefix = self._prefix, None
            self._append(prefix)

    def _append(self, text: str) -> None:
        if self._current is None:
            path = tuple(entry[1] for entry in self._stack)
            section = self._sections.get(path)
            if section is None:
                section = Section(heading_path=list(path), anchor=self._stack[-1][2])
                self._sections[path] = section
            self._current = section
        self._current.blocks.append(text)


class Collector:
    """Gathers the blocks of one list item; headings inside it become plain text."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self._prefix: str | None = None

    def heading(self, level: int, text: str, anchor: str | None) -> None:
        self.block(clean_heading(text))

    def prefix(self, text: str) -> None:
        self._prefix = norm(text) or None

    def block(self, text: str) -> None:
        if not text.strip():
            return
        prefix, self._prefix = self._prefix, None
        self.blocks.extend(_led_by(prefix, text))

    def done(self) -> list[str]:
        if self._prefix is not None:
            self.blocks.append(self._prefix)
            self._prefix = None
        return self.blocks
