"""Quotable units of a source chunk: whole statements a reader can use without the page.

A chunk's text is Markdown-like (every reader renders lists as `-`/`1.` lines and code as fenced
blocks, blocks separated by blank lines). An answer that quotes it sentence by sentence reads as
fragments: a list item without the sentence that introduces it ("Not send a response for the
cancelled request."), a sentence ending in "by:" without what follows. So the extractive backend
quotes units:

    sentence    a prose sentence that stands on its own
    list        a short list with its lead-in sentence, whole
    item        one item of a long list (with its nested items) and the list's lead-in sentence
    + code      a sentence, or a list, directly followed by a code block may bring it along; a
                sentence ending in ":" before a code block is only quoted with it

A sentence ending in ":" is never quoted alone, and neither is one that starts in lower case
(the tail of a sentence the chunk boundary cut) or a type declaration flattened into prose. A
sentence opening with "This", "It", "These"… comes with the sentence before it, or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from server.answering.grounding.claims import split_claims
from server.answering.grounding.terms import identifiers

UnitKind = Literal["sentence", "list", "item"]

_FENCE = re.compile(r"^\s*(```+|~~~+)")
_LIST_MARKER = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+")
_TABLE_ROW = re.compile(r"^\s*\|?[^|\n]+(?:\s\|\s[^|\n]*)+\|?\s*$")
# Footnote markers already in the docs ("[1]") would read as our citations.
_TRAILING_MARKERS = re.compile(r"(?:\s*\[\d+(?:\s*,\s*\d+)*\])+\s*$")
_TERMINAL = (".", "!", "?")
# A sentence opening with a pronoun or demonstrative refers to the one before it.
_ANAPHOR = re.compile(r"^(?:This|That|These|Those|It|They|Such|Its|Their)\b")
# `name: type` pairs ("params: { uri: string }"): a type declaration flattened into prose, as
# generated API references are; two of them make a sentence code, not a statement.
_TYPE_PAIR = re.compile(r"\b\w+\??: (?:[\"{\[]|(?:string|number|boolean|unknown|object|integer|null)\b)")
# A paragraph this short without a full stop is a label ("Error handling", "Example"), not a claim.
_LABEL_WORDS = 6
# "Subscribe request:" above an example names the example; a longer line is a sentence of its own.
_EXAMPLE_LABEL_WORDS = 3


@dataclass(frozen=True)
class Block:
    kind: Literal["paragraph", "list", "code", "row"]
    text: str


@dataclass(frozen=True)
class Unit:
    """One quotable statement of one source chunk."""

    kind: UnitKind
    position: int  # reading order inside the chunk
    body: str  # the sentence, the list item (may span lines) or the whole list
    lead: str | None = None  # the sentence that introduces the list, or that "this" refers to
    lead_position: int | None = None  # its position, so a chosen lead is not quoted twice
    group: int | None = None  # the list the item belongs to (block index)
    code: str | None = None  # the code block right after the unit
    code_required: bool = False  # the unit introduces the code (ends in ":") and is void without it

    @property
    def scoring_text(self) -> str:
        """What the unit says, as compared with the question: lead-in and body, no code."""
        return " ".join(part for part in (self.lead, _plain_list(self.body)) if part)


def blocks(text: str) -> list[Block]:
    """Paragraphs, lists (with nested lines and indented code) and fenced code blocks."""
    out: list[Block] = []
    lines, rows = _rows_as_paragraphs(text)
    current: list[str] = []
    kind: Literal["paragraph", "list"] = "paragraph"

    def flush() -> None:
        if current and any(line.strip() for line in current):
            out.append(Block(kind, "\n".join(current).strip("\n")))
        current.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        in_list = kind == "list" and bool(current)
        if i in rows:
            flush()
            out.append(Block("row", line))
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence and not (in_list and line.startswith(" ")):
            flush()
            end = _fence_end(lines, i, fence.group(1))
            out.append(Block("code", "\n".join(lines[i : end + 1])))
            i = end + 1
            continue
        if fence:  # a fence indented inside a list item belongs to the item
            end = _fence_end(lines, i, fence.group(1))
            current.extend(lines[i : end + 1])
            i = end + 1
            continue
        if not line.strip():
            following = next((x for x in lines[i + 1 :] if x.strip()), "")
            if in_list and following.startswith(" "):
                current.append(line)  # a blank line inside an item: the list goes on
            else:
                flush()
            i += 1
            continue
        if _LIST_MARKER.match(line) and not in_list:
            flush()
            kind = "list"
        elif not current:
            kind = "paragraph"
        elif in_list and not line.startswith(" ") and not _LIST_MARKER.match(line):
            flush()
            kind = "paragraph"
        current.append(line)
        i += 1
    flush()
    return out


def units(
    text: str,
    count_tokens: Callable[[str], int],
    *,
    max_list_tokens: int = 160,
    max_code_tokens: int = 120,
) -> list[Unit]:
    """The quotable units of a chunk, in reading order."""
    found: list[Unit] = []
    parts = blocks(text)
    position = 0
    for index, block in enumerate(parts):
        code = _attachment(parts, index)
        if code is not None and count_tokens(code) > max_code_tokens:
            code = None  # too long to come along; a unit that needs it is not quoted
        if block.kind == "paragraph":
            sentences = _sentences(block.text)
            quotable: list[bool] = []
            for offset, sentence in enumerate(sentences):
                last = offset == len(sentences) - 1
                introduces = sentence.endswith(":")
                ok = not (
                    _is_continuation(sentence)
                    or (last and _is_label(sentence, len(sentences)))
                    or len(_TYPE_PAIR.findall(sentence)) >= 2
                )
                quotable.append(ok and not introduces)
                if not ok or (introduces and not (last and code is not None)):
                    # Introduces a list (quoted with it) or something absent from the chunk.
                    position += 1
                    continue
                lead, lead_position = None, None
                if _ANAPHOR.match(sentence):
                    # "This might be a sub-resource…": only with the sentence "this" refers to.
                    if offset == 0 or not quotable[offset - 1]:
                        position += 1
                        continue
                    lead, lead_position = sentences[offset - 1], position - 1
                found.append(
                    Unit(
                        "sentence",
                        position,
                        sentence,
                        lead,
                        lead_position,
                        code=code if last else None,
                        code_required=introduces,
                    )
                )
                position += 1
        elif block.kind == "list":
            lead, lead_position = None, None
            previous = parts[index - 1] if index > 0 else None
            if previous is not None and previous.kind == "paragraph":
                sentences = _sentences(previous.text)
                if sentences and not _is_label(sentences[-1], len(sentences)):
                    lead, lead_position = sentences[-1], position - 1
            whole = block.text
            if count_tokens(" ".join(filter(None, (lead, whole)))) <= max_list_tokens:
                found.append(Unit("list", position, whole, lead, lead_position, index, code=code))
            else:
                for item in _items(block.text):
                    found.append(Unit("item", position, item, lead, lead_position, index))
                    position += 1
            position += 1
        elif block.kind == "row":
            found.append(Unit("sentence", position, block.text))
            position += 1
        else:
            position += 1
    return found


def render(
    unit_list: list[Unit], number: int, *, with_code: Callable[[Unit], bool] = lambda u: True
) -> list[str]:
    """The answer blocks quoting `unit_list` (one chunk's chosen units, reading order), cited [number].

    Items of one list share their lead-in, written once; a lead-in that was also chosen as a
    sentence is not repeated; a list keeps its own markers, chosen items of a long list become
    bullets (their original numbers would skip).
    """
    out: list[str] = []
    paragraph: list[str] = []
    leads = {u.lead_position for u in unit_list if u.kind != "sentence" and u.lead is not None}
    written: set[int] = set()
    i = 0
    while i < len(unit_list):
        unit = unit_list[i]
        if unit.kind == "sentence":
            if unit.lead is not None and unit.lead_position not in written | leads:
                paragraph.append(cite(unit.lead, number))
            if unit.position not in leads:
                paragraph.append(cite(unit.body, number))
            written.add(unit.position)
            if unit.code is not None and (unit.code_required or with_code(unit)):
                out.append(" ".join(paragraph))
                paragraph = []
                out.append(unit.code)
            i += 1
            continue
        if paragraph:
            out.append(" ".join(paragraph))
            paragraph = []
        group = [unit]
        while (
            i + len(group) < len(unit_list)
            and unit_list[i + len(group)].kind == "item"
            and (unit_list[i + len(group)].group == unit.group and unit.kind == "item")
        ):
            group.append(unit_list[i + len(group)])
        i += len(group)
        lines: list[str] = []
        if unit.lead is not None:
            lines.append(cite(unit.lead, number))
        if unit.kind == "list":
            lines.append(unit.body if unit.lead is not None else _cite_items(unit.body, number))
        else:
            for item in group:
                bullet = _LIST_MARKER.sub("- ", item.body, count=1)
                lines.append(bullet if unit.lead is not None else _cite_items(bullet, number))
        out.append("\n".join(lines))
        if unit.kind == "list" and unit.code is not None and with_code(unit):
            out.append(unit.code)
    if paragraph:
        out.append(" ".join(paragraph))
    return [block for block in out if block.strip()]


def rows_as_statements(text: str) -> str:
    """`text` with table rows as statements ("a: b; c"), each its own paragraph."""
    lines, rows = _rows_as_paragraphs(text)
    return "\n".join(f"\n{line}\n" if i in rows else line for i, line in enumerate(lines))


def _attachment(parts: list[Block], index: int) -> str | None:
    """The code block right after block `index`, with its label when one sits between them.

    "Clients can subscribe and receive notifications:" is often followed by "Subscribe request:"
    and an example: the label belongs to the example.
    """
    following = parts[index + 1 : index + 3]
    if following and following[0].kind == "code":
        return following[0].text
    if (
        len(following) == 2
        and following[0].kind == "paragraph"
        and following[0].text.endswith(":")
        and len(following[0].text.split()) <= _EXAMPLE_LABEL_WORDS
        and following[1].kind == "code"
    ):
        return f"{following[0].text}\n\n{following[1].text}"
    return None


def cite(text: str, number: int) -> str:
    """`text` with its citation marker: before a closing colon, after a full stop (added if none)."""
    text = text.rstrip()
    if text.endswith(":"):
        return f"{text[:-1].rstrip()} [{number}]:"
    if not text.endswith(_TERMINAL):
        text += "."
    return f"{text} [{number}]"


def _cite_items(list_text: str, number: int) -> str:
    """A list without a lead-in: each top-level item carries the marker on its first line."""
    lines = list_text.splitlines()
    base = _indent(lines[0]) if lines else 0
    out: list[str] = []
    for line in lines:
        if _LIST_MARKER.match(line) and _indent(line) == base:
            body = line.rstrip()
            out.append(f"{body[:-1].rstrip()} [{number}]:" if body.endswith(":") else f"{body} [{number}]")
        else:
            out.append(line)
    return "\n".join(out)


def _items(list_text: str) -> list[str]:
    """Top-level items of a list, each with its nested lines (indentation kept relative)."""
    lines = list_text.splitlines()
    base = _indent(lines[0])
    items: list[list[str]] = []
    for line in lines:
        if _LIST_MARKER.match(line) and _indent(line) == base:
            items.append([line[base:]])
        elif items:
            items[-1].append(line[base:] if line[:base].strip() == "" else line)
    return ["\n".join(item).rstrip() for item in items]


def _sentences(paragraph: str) -> list[str]:
    out: list[str] = []
    for claim in split_claims(paragraph):
        if claim.kind == "sentence":
            text = _TRAILING_MARKERS.sub("", claim.text).strip()
            if text:
                out.append(text)
    return out


def _is_continuation(sentence: str) -> bool:
    """Starts in lower case and not with a code name: the tail of a sentence cut before it."""
    first = sentence.split(None, 1)[0] if sentence.split() else ""
    if not first or not first[0].isalpha() or not first[0].islower():
        return False
    return not identifiers(first.strip(",;:.()"))


def _is_label(sentence: str, sentences_in_paragraph: int) -> bool:
    return (
        sentences_in_paragraph == 1
        and not sentence.endswith((*_TERMINAL, ":"))
        and len(sentence.split()) <= _LABEL_WORDS
    )


def _plain_list(text: str) -> str:
    """List text as one line of prose, markers dropped, for scoring."""
    return " ".join(_LIST_MARKER.sub("", line).strip() for line in text.splitlines() if line.strip())


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _fence_end(lines: list[str], start: int, marker: str) -> int:
    for j in range(start + 1, len(lines)):
        if lines[j].strip().startswith(marker):
            return j
    return len(lines) - 1


def _rows_as_paragraphs(text: str) -> tuple[list[str], set[int]]:
    """The lines of `text` with table rows ("a | b | c") as statements ("a: b; c"), and their indexes.

    A row states one fact; run together as one paragraph the rows would read as one sentence.
    Header rows name columns and are dropped.
    """
    out: list[str] = []
    rows: set[int] = set()
    in_table = False
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        if not in_code and _TABLE_ROW.match(line) and line.count("|") >= 2:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not in_table:
                in_table = True  # the header row names columns, it states nothing
                continue
            if all(set(c) <= set("-: ") for c in cells):
                continue  # a Markdown rule row
            head, rest = cells[0], [c for c in cells[1:] if c]
            rows.add(len(out))
            out.append(f"{head}: {'; '.join(rest)}".rstrip(": "))
        else:
            in_table = False
            out.append(line)
    return out, rows
